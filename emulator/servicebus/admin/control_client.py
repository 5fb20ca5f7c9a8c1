"""A small typed client for the emulator's JSON control API (``/control`` on the admin port).

Used by the harness and tests to move time, inspect entities and messages, reset state,
inject faults and read operation counters::

    control = ControlClient(emu.control_url)
    control.advance(120)
    dead = control.peek("jobs/Subscriptions/video/$DeadLetterQueue")

Errors are raised as :class:`ControlError` with the server's message.
"""

from __future__ import annotations

import ssl
from types import TracebackType
from typing import Any, Literal, TypedDict, cast

import httpx

Operation = Literal["connect", "put-token", "send", "receive", "settle", "renew-lock", "management"]
Effect = Literal["server-busy", "connection-drop", "lock-lost", "timeout", "latency"]


class ClockState(TypedDict):
    now: float
    utc: str
    offset_seconds: float


class FaultRuleJson(TypedDict):
    id: str
    operation: str
    entity: str
    effect: str
    probability: float | None
    next_n: int | None
    latency_ms: float
    fired: int


class ControlError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class ControlClient:
    """Synchronous client; ``base_url`` is ``emu.control_url`` (``http://host:port/control``)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0, verify: bool | str = True) -> None:
        self.base_url = base_url.rstrip("/")
        context = ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        self._http = httpx.Client(timeout=timeout, verify=context)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        response = self._http.request(method, self.base_url + path, json=json, params=params)
        try:
            data = response.json()
        except ValueError:
            data = {"error": response.text}
        if response.status_code >= 400:
            raise ControlError(response.status_code, str(data.get("error", data)))
        return data

    # -- clock ---------------------------------------------------------------------------------

    def clock(self) -> ClockState:
        return cast(ClockState, self._call("GET", "/clock"))

    def advance(self, seconds: float) -> ClockState:
        """Move the emulator's clock; everything that became due has happened on return."""
        return cast(ClockState, self._call("POST", "/clock/advance", json={"seconds": seconds}))

    # -- inspection ----------------------------------------------------------------------------

    def entities(self) -> dict[str, list[dict[str, Any]]]:
        """``{"queues": [...], "topics": [...]}`` with counts per entity and subscription."""
        return cast(dict[str, list[dict[str, Any]]], self._call("GET", "/entities"))

    def peek(
        self, entity: str, *, max_count: int = 100, from_sequence_number: int = 0
    ) -> list[dict[str, Any]]:
        """Messages of a queue, subscription, sub-queue or (scheduled) topic; never locks."""
        params = {"entity": entity, "max": max_count, "from": from_sequence_number}
        return cast(list[dict[str, Any]], self._call("GET", "/messages", params=params)["messages"])

    def counters(self) -> dict[str, Any]:
        return cast(dict[str, Any], self._call("GET", "/counters"))

    # -- reset ---------------------------------------------------------------------------------

    def reset(self, *, reload: bool = False) -> None:
        """Empty every entity (and counters); ``reload`` re-creates entities from the config."""
        self._call("POST", "/reset", json={"reload": reload})

    # -- faults --------------------------------------------------------------------------------

    def faults(self) -> list[FaultRuleJson]:
        return cast(list[FaultRuleJson], self._call("GET", "/faults")["rules"])

    def add_fault(
        self,
        operation: Operation,
        effect: Effect,
        *,
        entity: str = "*",
        probability: float | None = None,
        next_n: int | None = None,
        latency_ms: float = 0.0,
    ) -> FaultRuleJson:
        body: dict[str, Any] = {"operation": operation, "effect": effect, "entity": entity}
        if probability is not None:
            body["probability"] = probability
        if next_n is not None:
            body["next_n"] = next_n
        if latency_ms:
            body["latency_ms"] = latency_ms
        return cast(FaultRuleJson, self._call("POST", "/faults", json=body)["rule"])

    def remove_fault(self, rule_id: str) -> None:
        self._call("DELETE", f"/faults/{rule_id}")

    def clear_faults(self) -> int:
        return int(self._call("DELETE", "/faults")["removed"])
