def test_packages_import() -> None:
    import emulator.servicebus  # noqa: F401
