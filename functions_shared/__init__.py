"""What a Functions host and the apps it runs both read, importing neither.

The local host (`harness/host`) is generic and may not import this project's apps
(`workers/`); the apps run on Azure, where the harness does not exist. What both sides must
read the same way lives here, and ships with the apps:

- `hostjson`: host.json with its `AzureFunctionsJobHost__` app-setting overrides, the values
  the host applies and the apps size their runs by;
- `offset_clock`: a clock that follows a clock service's offset (under the harness, the
  emulator's movable clock), so host and apps agree on now.
"""
