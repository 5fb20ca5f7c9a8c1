"""`harness dlq reproduce`: run dead letters, one at a time, through the real handler on a
local stack, to see why each died before touching the namespace it came from.

Each dead letter is sent as `replay` would send it (its body, properties and message id, the
replay marker added) to the local emulator's queue or topic, where the app whose function
reads its subscription runs under the local Functions host. What that run did is recorded:
the settlement, the exception with its traceback, the warnings and errors logged, and the AI
calls made. A run that schedules a retry is followed: the emulator's clock (the one clock the
apps read) moves to the retry's time and the next attempt is recorded, up to `follow`
attempts, so a whole ladder shows in a few seconds. What the dead letter ends as is its
*result*: completed, dead-lettered (with the reason), retried (a retry was left scheduled,
not followed) or abandoned (redelivery left).

The AI stand-in answers normally, or with a fault on every call or the first N calls of each
dead letter (`AIFaultPlan`), so a failure can be reproduced and then a fix shown.

This module is the engine (no argparse, no printing); the command wiring is in `cli.py`.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from .errors import DlqError
from .records import DeadLetterRecord

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusClient

    from emulator.servicebus.admin.control_client import ControlClient
    from harness.host import FunctionsHost, Invocation
    from harness.stack import ProviderName
    from standins.ai import AIBehaviour, Fault, FaultProfile

Result = Literal["completed", "dead-lettered", "retried", "abandoned", "no-run", "not-sent"]

AI_TIMEOUT_SECONDS = 2.0
"""The apps' AI timeout under `--ai timeout` (their default is 60 s): the stand-in answers a
second later than this, so a client-side timeout is reproduced in seconds, not minutes."""

AI_FAULT_KINDS = ("ok", "429", "500", "503", "timeout", "malformed")


@dataclass(frozen=True)
class AIFaultPlan:
    """How the AI stand-in answers while a dead letter is reproduced: ``kind`` on every call,
    or on the first ``calls`` calls of each dead letter (then normally)."""

    kind: str = "ok"
    calls: int | None = None

    @classmethod
    def parse(cls, text: str) -> AIFaultPlan:
        """``ok``, ``429``, ``500``, ``503``, ``timeout`` or ``malformed``, optionally
        ``:N`` for only the first N calls (``429:2``)."""
        kind, _, count = text.partition(":")
        if kind not in AI_FAULT_KINDS:
            raise DlqError(f"--ai {text!r}: choose from {', '.join(AI_FAULT_KINDS)} (with :N)")
        if not count:
            return cls(kind)
        if kind == "ok" or not count.isdigit() or int(count) < 1:
            raise DlqError(f"--ai {text!r}: :N takes a fault kind and a whole number >= 1")
        return cls(kind, int(count))

    def describe(self) -> str:
        if self.kind == "ok":
            return "AI answers normally"
        calls = "every call" if self.calls is None else f"the first {self.calls} call(s)"
        return f"AI answers {self.kind} on {calls} of each dead letter"

    def app_settings(self) -> dict[str, str]:
        """Settings the apps need for this plan (a short AI timeout for ``timeout``)."""
        if self.kind == "timeout":
            return {"AZURE_AI_TIMEOUT_SECONDS": str(AI_TIMEOUT_SECONDS)}
        return {}

    def _fault(self) -> Fault:
        from standins.ai import Fault

        if self.kind == "429":
            return Fault.rate_limit(retry_after=1.0)
        if self.kind in ("500", "503"):
            return Fault.server_error(int(self.kind))
        if self.kind == "timeout":
            return Fault.slow(AI_TIMEOUT_SECONDS + 1.0)
        return Fault.malformed()

    def _profile(self) -> FaultProfile:
        from standins.ai import FaultProfile

        if self.kind == "429":
            return FaultProfile(rate_limit=1.0, retry_after=1.0)
        if self.kind in ("500", "503"):
            return FaultProfile(server_error=1.0, server_error_statuses=(int(self.kind),))
        if self.kind == "timeout":
            return FaultProfile(slow=1.0, slow_seconds=AI_TIMEOUT_SECONDS + 1.0)
        return FaultProfile(malformed=1.0)

    def apply(self, ai: AIBehaviour) -> None:
        """Arm the stand-in for one dead letter (and forget the previous one's calls)."""
        from standins.ai import FaultProfile

        ai.reset()
        ai.set_faults(FaultProfile())
        if self.kind == "ok":
            return
        if self.calls is None:
            ai.set_faults(self._profile())
        else:
            ai.enqueue(*[self._fault()] * self.calls)


@dataclass
class Attempt:
    """One run of the function on one delivery."""

    message_id: str | None
    delivery_count: int | None
    outcome: str
    settlement: str | None
    dead_letter_reason: str | None
    error: str | None
    traceback: str | None
    duration: float | None
    broker_time: str
    """The emulator's clock when the run ended (retries are followed by moving it)."""
    ai_calls: list[dict[str, Any]] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    """Warnings and errors logged during the run, with tracebacks of handled errors."""

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class Reproduction:
    """What one dead letter did on the local stack."""

    record: DeadLetterRecord
    function: str | None
    result: Result
    reason: str | None = None
    """The dead-letter reason when it died again; what went wrong for no-run / not-sent."""
    attempts: list[Attempt] = field(default_factory=list)
    also_ran: list[str] = field(default_factory=list)
    """Other functions the copy reached (a topic fans out to every matching subscription)."""

    @property
    def original_reason(self) -> str | None:
        return self.record.dead_letter_reason

    def headline(self) -> str:
        record = self.record
        text = f"seq={record.sequence_number} id={record.message_id}: {self.result}"
        if self.reason:
            text += f" ({self.reason})"
        if self.attempts:
            text += f" after {len(self.attempts)} attempt(s)"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "sequence_number": self.record.sequence_number,
            "message_id": self.record.message_id,
            "entity_path": self.record.entity_path,
            "original_reason": self.original_reason,
            "function": self.function,
            "result": self.result,
            "reason": self.reason,
            "attempts": [a.to_json() for a in self.attempts],
            "also_ran": self.also_ran,
        }


class _LogCapture(logging.Handler):
    """Warnings and errors from anywhere, and the apps' DEBUG tracebacks of handled errors
    (`workers.common.processor` logs them at DEBUG so production logs stay one line each)."""

    def __init__(self, app_loggers: Sequence[str]) -> None:
        super().__init__(logging.DEBUG)
        self.app_loggers = tuple(app_loggers)
        self.lines: list[str] = []
        self.host: str | None = None
        """The app whose run is being recorded: other apps' host threads are left out (a
        topic fans a copy out to them too; their lines are not this dead letter's story)."""
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.WARNING and not (
            record.exc_info and record.name.startswith(self.app_loggers)
        ):
            return
        thread = record.threadName or ""
        if self.host and thread.startswith("funchost-") and not thread.startswith(self.host):
            return
        with contextlib.suppress(Exception):
            self.lines.append(self.format(record))

    def take(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


@contextlib.contextmanager
def capturing_logs(app_loggers: Sequence[str] = ("workers",)) -> Iterator[_LogCapture]:
    """Collect log lines for the reports; the app loggers are opened to DEBUG meanwhile (only
    records with a traceback are kept from below WARNING)."""
    capture = _LogCapture(app_loggers)
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in app_loggers]
    levels = [lg.level for lg in loggers]
    root.addHandler(capture)
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


class Reproducer:
    """Runs dead letters through the hosts' functions, one at a time.

    ``control`` (the emulator's control API) is what follows retries and finds scheduled
    copies; without one (a stack whose Service Bus is not this emulator) a scheduled retry
    ends the reproduction as ``retried``."""

    def __init__(
        self,
        hosts: Iterable[FunctionsHost],
        client: ServiceBusClient,
        *,
        control: ControlClient | None,
        ai: AIBehaviour | None = None,
        ai_plan: AIFaultPlan = AIFaultPlan(),
        follow: int = 8,
        timeout: float = 60.0,
        capture: _LogCapture | None = None,
    ) -> None:
        self.hosts = list(hosts)
        self.client = client
        self.control = control
        self.ai = ai
        self.ai_plan = ai_plan
        self.follow = follow
        self.timeout = timeout
        self.capture = capture

    def functions_reading(self, source: str) -> list[tuple[FunctionsHost, str]]:
        """The functions whose trigger reads ``source`` (``queue`` or ``topic/subscription``,
        as function.json / the decorators name it)."""
        wanted = source.casefold()
        return [
            (host, spec.name)
            for host in self.hosts
            for spec in host.functions.values()
            if spec.source.casefold() == wanted
        ]

    def reproduce_all(
        self,
        records: Iterable[DeadLetterRecord],
        on_result: Callable[[Reproduction], None] | None = None,
    ) -> list[Reproduction]:
        results = []
        for record in records:
            result = self.reproduce(record)
            results.append(result)
            if on_result is not None:
                on_result(result)
        return results

    def reproduce(self, record: DeadLetterRecord) -> Reproduction:
        from .clients import DeadLetterSource

        try:
            source = DeadLetterSource.from_path(record.entity_path)
        except ValueError as exc:
            return Reproduction(record, None, "not-sent", str(exc))
        trigger_source = (
            source.entity
            if source.subscription is None
            else f"{source.entity}/{source.subscription}"
        )
        readers = self.functions_reading(trigger_source)
        if not readers:
            known = sorted(
                spec.source
                for h in self.hosts
                for spec in h.functions.values()
                if spec.trigger_type == "serviceBusTrigger"
            )
            return Reproduction(
                record, None, "no-run", f"no function reads {trigger_source}; known: {known}"
            )
        host, function = readers[0]
        if self.ai is not None:
            self.ai_plan.apply(self.ai)
        if self.capture is not None:
            self.capture.host = f"funchost-{host.name}-"
            self.capture.take()
        # runs from before this send (an earlier reproduction of the same message among them)
        # are neither followed nor reported; ids count per host
        earlier = {h: {i.id for i in h.invocations} for h in self.hosts}
        scheduled_before = self._scheduled(source.entity)
        try:
            message = record.to_message()
            with self.client.get_queue_sender(source.entity) as sender:
                sender.send_messages(message)
        except Exception as exc:  # the SDK's errors and what to_message refuses
            return Reproduction(record, function, "not-sent", f"{type(exc).__name__}: {exc}")
        reproduction = Reproduction(record, function, "no-run")
        self._follow(
            reproduction, host, source.entity, record.message_id, scheduled_before, earlier[host]
        )
        reproduction.also_ran = sorted(
            {
                i.function
                for h, before in earlier.items()
                for i in h.invocations
                if i.id not in before and i.function != function
            }
        )
        return reproduction

    def _follow(
        self,
        reproduction: Reproduction,
        host: FunctionsHost,
        entity: str,
        message_id: str | None,
        scheduled_before: set[int],
        runs_before: set[int],
    ) -> None:
        function = reproduction.function
        seen = set(runs_before)
        for _ in range(self.follow):
            run = self._next_run(host, function, message_id, seen)
            if run is None:
                reproduction.reason = (
                    f"no run of {function} on message {message_id} within {self.timeout:.0f} s"
                )
                return
            seen.add(run.id)
            reproduction.attempts.append(self._attempt(run))
            if run.settlement == "dead-lettered":
                reproduction.result, reproduction.reason = "dead-lettered", run.dead_letter_reason
                return
            if run.settlement != "completed":
                died = self._dead_lettered_by_broker(host, function, message_id)
                if died is not None:
                    reproduction.result, reproduction.reason = "dead-lettered", died
                    return
                reproduction.result = "abandoned"
                continue  # redelivered at once with its delivery count raised
            retries = [
                m for m in self._scheduled_messages(entity) if m["seq"] not in scheduled_before
            ]
            if not retries:
                reproduction.result, reproduction.reason = "completed", None
                return
            retry = min(retries, key=lambda m: m["seq"])
            reproduction.result = "retried"
            reproduction.reason = f"{retry['id']} scheduled for {retry['at']}"
            if len(reproduction.attempts) >= self.follow:
                break
            assert self.control is not None  # _scheduled_messages is empty without one
            self._advance_to(retry["at"])
            message_id = retry["id"]
        self._cancel_leftovers(entity, scheduled_before)

    def _next_run(
        self, host: FunctionsHost, function: str | None, message_id: str | None, seen: set[int]
    ) -> Invocation | None:
        def probe(items: list[Invocation]) -> Invocation | None:
            for item in items:
                if (
                    item.function == function
                    and item.message_id == message_id
                    and item.id not in seen
                    and item.finished
                ):
                    return item
            return None

        try:
            run: Invocation = host.wait_until(probe, self.timeout, f"a run of {function}")
        except TimeoutError:
            return None
        return run

    def _attempt(self, run: Invocation) -> Attempt:
        calls = [] if self.ai is None else [c.to_dict() for c in self.ai.calls]
        if self.ai is not None:
            self.ai.calls.clear()
        return Attempt(
            message_id=run.message_id,
            delivery_count=run.delivery_count,
            outcome=run.outcome,
            settlement=run.settlement,
            dead_letter_reason=run.dead_letter_reason,
            error=run.error or run.settlement_error,
            traceback=run.traceback,
            duration=run.duration,
            broker_time=self._broker_time(),
            ai_calls=calls,
            logs=[] if self.capture is None else self.capture.take(),
        )

    def _broker_time(self) -> str:
        if self.control is None:
            return datetime.now().astimezone().isoformat()
        return str(self.control.clock()["utc"])

    def _dead_lettered_by_broker(
        self, host: FunctionsHost, function: str | None, message_id: str | None
    ) -> str | None:
        """The reason, when the broker dead-lettered the message after this abandon (its
        delivery count reached the subscription's maximum)."""
        if self.control is None or function is None:
            return None
        spec = host.functions[function]
        for message in self.control.peek(f"{spec.source}/$DeadLetterQueue", max_count=1000):
            props = message.get("system_properties", {})
            if props.get("MessageId") == message_id:
                reason = message.get("dead_letter_reason")
                return str(reason) if reason else "dead-lettered by the broker"
        return None

    def _scheduled_messages(self, entity: str) -> list[dict[str, Any]]:
        if self.control is None:
            return []
        found = []
        for message in self.control.peek(entity, max_count=1000):
            if message.get("state") != "scheduled":
                continue
            found.append(
                {
                    "seq": int(message["sequence_number"]),
                    "id": message.get("system_properties", {}).get("MessageId"),
                    "at": str(message["scheduled_enqueue_time"]),
                }
            )
        return found

    def _scheduled(self, entity: str) -> set[int]:
        return {m["seq"] for m in self._scheduled_messages(entity)}

    def _advance_to(self, when: str) -> None:
        assert self.control is not None
        due = _parse_time(when)
        now = _parse_time(str(self.control.clock()["utc"]))
        self.control.advance(max(0.0, (due - now).total_seconds()) + 0.001)

    def _cancel_leftovers(self, entity: str, scheduled_before: set[int]) -> None:
        """A retry not followed must not fire under the next dead letter's reproduction."""
        leftovers = [m["seq"] for m in self._scheduled_messages(entity)]
        leftovers = [seq for seq in leftovers if seq not in scheduled_before]
        if leftovers:
            try:
                with self.client.get_queue_sender(entity) as sender:
                    sender.cancel_scheduled_messages(leftovers)
            except Exception:
                logging.getLogger(__name__).warning(
                    "could not cancel scheduled retries %s on %s:\n%s",
                    leftovers,
                    entity,
                    traceback.format_exc(),
                )


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def reproduce_locally(
    records: Sequence[DeadLetterRecord],
    *,
    provider: ProviderName = "auto",
    ai_plan: AIFaultPlan = AIFaultPlan(),
    follow: int = 8,
    timeout: float = 60.0,
    on_ready: Callable[[list[str]], None] | None = None,
    on_result: Callable[[Reproduction], None] | None = None,
) -> list[Reproduction]:
    """Start this project's local system (stack, stand-ins, every worker app in this process,
    timers off so only the dead letters run), reproduce ``records``, stop it again.

    ``on_ready`` gets the system's description lines once it runs."""
    from emulator.servicebus.admin.control_client import ControlClient
    from harness.system import LocalSystem, SystemPorts

    from .clients import client

    system = LocalSystem(
        provider=provider,
        ports=SystemPorts(servicebus=0, admin=0, api=0),
        run_timers=False,
        extra_settings=ai_plan.app_settings(),
    )
    with capturing_logs() as capture, system, contextlib.ExitStack() as stack:
        assert system.stack is not None and system.ai is not None
        if on_ready is not None:
            on_ready(system.describe())
        emulator = system.stack.emulator
        control = (
            None if emulator is None else stack.enter_context(ControlClient(emulator.control_url))
        )
        sb = stack.enter_context(client(system.stack.servicebus_connection))
        reproducer = Reproducer(
            system.hosts.values(),
            sb,
            control=control,
            ai=system.ai.behaviour,
            ai_plan=ai_plan,
            follow=follow,
            timeout=timeout,
            capture=capture,
        )
        return reproducer.reproduce_all(records, on_result=on_result)
