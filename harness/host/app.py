"""Loading an app folder and indexing its functions, as the Python worker does.

The module is imported once and `app.get_functions()` is called once (a second call raises
in azure-functions). Parameters are classified by their annotations up front so a function
the host cannot feed fails at load time, not at its first message.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func
from azure.functions import _abc as func_abc
from azure.functions.decorators.function_app import FunctionRegister
from azurefunctions.extensions.bindings.servicebus import (
    ServiceBusMessageActions,
    ServiceBusReceivedMessage,
)

from .config import resolve_setting_refs

SB_TRIGGER = "serviceBusTrigger"
TIMER_TRIGGER = "timerTrigger"
SUPPORTED_TRIGGERS = (SB_TRIGGER, TIMER_TRIGGER)
DEFAULT_SB_CONNECTION = "AzureWebJobsServiceBus"
DEFAULT_SIGNALR_CONNECTION = "AzureSignalRConnectionString"
_NOT_RESOLVED = {"name", "type", "direction", "dataType", "cardinality"}


class AppLoadError(RuntimeError):
    """The app folder cannot be imported or indexed; the message says which and why."""


def _plain(binding: Mapping[str, Any]) -> dict[str, Any]:
    """A binding dict with the direction enum turned into its name."""
    out = dict(binding)
    direction = out.get("direction")
    if isinstance(direction, Enum):
        out["direction"] = direction.name.lower()
    return out


def _is_subclass(annotation: Any, base: type) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, base)


@dataclass
class FunctionSpec:
    """One indexed function: what triggers it and how to call it."""

    name: str
    user_function: Callable[..., Any]
    trigger: dict[str, Any]  # as declared (`%NAME%` kept)
    bindings: list[dict[str, Any]]
    trigger_param: str
    trigger_kind: str  # "sdk" | "classic" | "str" | "bytes" | "timer"
    trigger_annotation: Any = None
    actions_params: list[str] = field(default_factory=list)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # param (or $return)
    resolved_trigger: dict[str, Any] = field(default_factory=dict)
    resolved_outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing_settings: list[str] = field(default_factory=list)

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.user_function)

    @property
    def source(self) -> str:
        """`topic/subscription`, `queue` or the schedule, resolved where possible."""
        t = self.resolved_trigger or self.trigger
        if self.trigger_type == SB_TRIGGER:
            if t.get("topicName"):
                return f"{t['topicName']}/{t.get('subscriptionName')}"
            return str(t.get("queueName"))
        return str(t.get("schedule", ""))

    def describe(self) -> str:
        mode = "async" if self.is_async else "sync"
        outs = ", ".join(f"{n}→{b['type']}" for n, b in self.outputs.items())
        extra = f"; {outs}" if outs else ""
        return f"{self.name}: {self.trigger_type} {self.source} ({mode}{extra})"


def _hints(function: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(function)
    except Exception:
        return dict(getattr(function, "__annotations__", {}))


def _trigger_kind(trigger_type: str, annotation: Any, fn: str) -> str:
    if trigger_type == TIMER_TRIGGER:
        return "timer"
    if _is_subclass(annotation, ServiceBusReceivedMessage):
        return "sdk"
    origin = typing.get_origin(annotation)
    if origin is not None and any(
        _is_subclass(arg, ServiceBusReceivedMessage) for arg in typing.get_args(annotation)
    ):
        raise AppLoadError(f"{fn}: batched (cardinality many) triggers are not supported")
    if annotation is inspect.Parameter.empty or _is_subclass(
        annotation, func_abc.ServiceBusMessage
    ):
        return "classic"
    if annotation is str:
        return "str"
    if annotation is bytes:
        return "bytes"
    raise AppLoadError(f"{fn}: cannot bind a Service Bus message to {annotation!r}")


def index_function(function: Any) -> FunctionSpec:
    name = function.get_function_name()
    trigger = _plain(function.get_trigger().get_dict_repr())
    bindings = [_plain(b.get_dict_repr()) for b in function.get_bindings()]
    user_function = function.get_user_function()
    if trigger["type"] not in SUPPORTED_TRIGGERS:
        raise AppLoadError(f"{name}: trigger type {trigger['type']!r} is not supported")
    hints = _hints(user_function)
    params = inspect.signature(user_function).parameters
    trigger_param = trigger["name"]
    if trigger_param not in params:
        raise AppLoadError(f"{name}: trigger parameter {trigger_param!r} is not in the signature")
    annotation = hints.get(trigger_param, inspect.Parameter.empty)
    kind = _trigger_kind(trigger["type"], annotation, name)
    outputs = {b["name"]: b for b in bindings if b.get("direction") == "out" and b is not None}
    spec = FunctionSpec(name, user_function, trigger, bindings, trigger_param, kind, annotation)
    spec.outputs = outputs
    for param_name, param in params.items():
        if param_name == trigger_param or param_name in outputs:
            continue
        if _is_subclass(hints.get(param_name), ServiceBusMessageActions):
            spec.actions_params.append(param_name)
        elif param.default is inspect.Parameter.empty:
            raise AppLoadError(f"{name}: no binding for parameter {param_name!r}")
    for param_name in outputs:
        if param_name != "$return" and param_name not in params:
            raise AppLoadError(f"{name}: output binding {param_name!r} is not a parameter")
    return spec


def resolve_function(spec: FunctionSpec, settings: Mapping[str, str]) -> None:
    """Resolve `%NAME%` references and check the connection settings each binding names."""
    missing: list[str] = []

    def resolve(binding: dict[str, Any]) -> dict[str, Any]:
        out = dict(binding)
        for key, value in binding.items():
            if key not in _NOT_RESOLVED and isinstance(value, str):
                out[key], names = resolve_setting_refs(value, settings)
                missing.extend(names)
        return out

    spec.resolved_trigger = resolve(spec.trigger)
    spec.resolved_outputs = {n: resolve(b) for n, b in spec.outputs.items()}
    connections = []
    if spec.trigger_type == SB_TRIGGER:
        connections.append(spec.resolved_trigger.get("connection") or DEFAULT_SB_CONNECTION)
    for binding in spec.resolved_outputs.values():
        if binding["type"] == "serviceBus":
            connections.append(binding.get("connection") or DEFAULT_SB_CONNECTION)
    for setting in connections:
        if not connection_string(setting, settings):
            missing.append(setting)
    spec.missing_settings = list(dict.fromkeys(missing))


def connection_string(setting: str, settings: Mapping[str, str]) -> str:
    """A connection setting's value; like the host, also tries the AzureWebJobs prefix."""
    return settings.get(setting) or settings.get(f"AzureWebJobs{setting}") or ""


def import_app_module(app_dir: Path) -> ModuleType:
    """Import `function_app.py` under a name unique to its folder (several apps per process)."""
    path = app_dir / "function_app.py"
    if not path.is_file():
        raise AppLoadError(f"{app_dir}: no function_app.py")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
    module_name = f"_funchost_{app_dir.name}_{digest}"
    sys.modules.pop(module_name, None)
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # The worker puts the script root first on sys.path so sibling modules import.
    if str(app_dir) not in sys.path:
        sys.path.insert(0, str(app_dir))
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise AppLoadError(
            f"{app_dir.name}: importing function_app.py failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def find_app(module: ModuleType, app_dir: Path) -> func.FunctionApp:
    apps = [v for v in vars(module).values() if isinstance(v, FunctionRegister)]
    if len(apps) != 1:
        raise AppLoadError(
            f"{app_dir.name}: function_app.py must define exactly one module-level "
            f"FunctionApp (found {len(apps)})"
        )
    return typing.cast(func.FunctionApp, apps[0])


def index_app(module: ModuleType, app_dir: Path) -> dict[str, FunctionSpec]:
    app = find_app(module, app_dir)
    try:
        functions = app.get_functions()
    except Exception as exc:
        raise AppLoadError(f"{app_dir.name}: indexing failed: {exc}") from exc
    return {f.get_function_name(): index_function(f) for f in functions}
