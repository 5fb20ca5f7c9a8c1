"""The three function apps index with azure-functions; host.json profiles; the adapters."""

from __future__ import annotations

import importlib
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
import uamqp
from azurefunctions.extensions.bindings.servicebus import ServiceBusReceivedMessage
from uamqp.message import MessageProperties
from workers_fakes import T0, FakeOutbox, ScriptedHandler, job_body

from workers.common.clock import RemoteOffsetClock, SystemClock
from workers.common.contracts import JobStatus, JobType, parse_job_message
from workers.common.messaging import (
    MAX_DEADLETTER_DESCRIPTION,
    MessageActionsSettler,
    ServiceBusOutbox,
    received_job_from_sdk,
)
from workers.common.processor import JobProcessor, Outcome
from workers.common.repository import JobRepository
from workers.common.runtime import HostProfile, JobWorkerRuntime, parse_timespan
from workers.common.settings import SettingsError

WORKERS = Path(__file__).resolve().parents[2] / "workers"
APPS = ("video", "jobs", "notify")

ENV = {
    "SERVICEBUS_CONNECTION": "Endpoint=sb://localhost/;SharedAccessKeyName=a;SharedAccessKey=b",
    "TOPIC_JOBS": "huntaze-jobs",
    "TOPIC_EVENTS": "huntaze-events",
    "DATABASE_URL": "sqlite://",
    "REDIS_URL": "memory://",
    "AZURE_DEEPSEEK_V3_ENDPOINT": "https://deepseek.example/models",
    "AZURE_PHI4_MULTIMODAL_ENDPOINT": "https://phi4.example/models",
}


def _import_app(name: str, env: dict[str, str]) -> ModuleType:
    module = f"workers.{name}.function_app"
    sys.modules.pop(module, None)
    with pytest.MonkeyPatch.context() as mp:
        for key in ENV:
            mp.delenv(key, raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        return importlib.import_module(module)


@pytest.fixture(scope="module")
def indexed() -> Iterator[dict[str, tuple[ModuleType, dict[str, Any]]]]:
    """Each app imported once and indexed once (get_functions may not be called twice)."""
    out = {}
    for name in ("video", "jobs", "notify"):
        module = _import_app(name, ENV)
        functions = {f.get_function_name(): f for f in module.app.get_functions()}
        out[name] = (module, functions)
    yield out


def _trigger(function: Any) -> dict[str, Any]:
    return function.get_trigger().get_dict_repr()


@pytest.mark.parametrize(
    ("app", "expected"),
    [
        ("video", {"VideoAnalysisWorker": "video-analysis"}),
        (
            "jobs",
            {
                "ChatSuggestionsWorker": "chat-suggestions",
                "ContentSuggestionsWorker": "content-suggestions",
                "ContentAnalysisWorker": "content-analysis",
            },
        ),
    ],
)
def test_workers_job_apps_index_explicit_settlement_triggers(
    indexed: dict[str, tuple[ModuleType, dict[str, Any]]], app: str, expected: dict[str, str]
) -> None:
    _, functions = indexed[app]
    sweepers = {name.replace("Worker", "DeadLetterSweeper") for name in expected}
    assert set(functions) == {*expected, *sweepers}
    for name, subscription in expected.items():
        trigger = _trigger(functions[name])
        assert trigger["type"] == "serviceBusTrigger"
        assert trigger["topicName"] == "%TOPIC_JOBS%"
        assert trigger["subscriptionName"] == subscription
        assert trigger["connection"] == "SERVICEBUS_CONNECTION"
        assert trigger["autoCompleteMessages"] is False
        annotations = functions[name].get_user_function().__annotations__
        assert "ServiceBusReceivedMessage" in str(annotations["message"])
        assert "ServiceBusMessageActions" in str(annotations["message_actions"])


@pytest.mark.parametrize(
    ("app", "runtime", "function", "subscription"),
    [
        ("video", "VIDEO", "VideoAnalysisDeadLetterSweeper", "video-analysis"),
        ("jobs", "CHAT", "ChatSuggestionsDeadLetterSweeper", "chat-suggestions"),
        ("jobs", "CONTENT_SUGGEST", "ContentSuggestionsDeadLetterSweeper", "content-suggestions"),
        ("jobs", "CONTENT_ANALYZE", "ContentAnalysisDeadLetterSweeper", "content-analysis"),
    ],
)
def test_workers_each_job_subscription_has_a_dead_letter_sweeper_timer(
    indexed: dict[str, tuple[ModuleType, dict[str, Any]]],
    app: str,
    runtime: str,
    function: str,
    subscription: str,
) -> None:
    module, functions = indexed[app]
    timer = _trigger(functions[function])
    assert (timer["type"], timer["schedule"]) == ("timerTrigger", "0 */1 * * * *")
    assert timer.get("runOnStartup") in (None, False)
    sweeper = getattr(module, runtime).sweeper
    assert sweeper.subscription == subscription
    assert (sweeper.peeker.topic, sweeper.peeker.subscription) == ("huntaze-jobs", subscription)
    assert sweeper.guard is getattr(module, runtime).processor.guard
    assert sweeper.clock is getattr(module, runtime).processor.clock


def test_workers_notify_app_indexes_auto_complete_subscribers_and_timer(
    indexed: dict[str, tuple[ModuleType, dict[str, Any]]],
) -> None:
    _, functions = indexed["notify"]
    subscribers = {
        "NotifySignalRWorker": "notify-signalr",
        "NotifyEmailWorker": "notify-email",
        "NotifyWebhookWorker": "notify-webhook",
        "MetricsWorker": "metrics",
    }
    assert set(functions) == {*subscribers, "DlqTriageMonitor"}
    for name, subscription in subscribers.items():
        trigger = _trigger(functions[name])
        assert (trigger["topicName"], trigger["subscriptionName"]) == (
            "%TOPIC_EVENTS%",
            subscription,
        )
        assert trigger.get("autoCompleteMessages", True) is True
    signalr = [
        b.get_dict_repr()
        for b in functions["NotifySignalRWorker"].get_bindings()
        if b.get_dict_repr()["type"] == "signalR"
    ]
    assert len(signalr) == 1
    assert signalr[0]["hubName"] == "huntaze"
    assert signalr[0]["connectionStringSetting"] == "AzureSignalRConnectionString"
    assert signalr[0]["direction"].name == "OUT"
    timer = _trigger(functions["DlqTriageMonitor"])
    assert (timer["type"], timer["schedule"]) == ("timerTrigger", "0 */15 * * * *")


@pytest.mark.parametrize(
    ("app", "timeout", "prefetch", "auto_complete", "renewal", "calls"),
    [
        ("video", "00:10:00", 0, False, "00:05:00", 2),
        ("jobs", "00:01:30", 20, False, "00:02:00", 8),
        ("notify", "00:00:30", 200, True, None, 50),
    ],
)
def test_workers_host_json_carries_the_seed_profile(
    app: str,
    timeout: str,
    prefetch: int,
    auto_complete: bool,
    renewal: str | None,
    calls: int,
) -> None:
    host = json.loads((WORKERS / app / "host.json").read_text())
    sb = host["extensions"]["serviceBus"]
    assert host["version"] == "2.0"
    assert host["functionTimeout"] == timeout
    assert sb["prefetchCount"] == prefetch
    assert sb["autoCompleteMessages"] is auto_complete
    assert sb.get("maxAutoLockRenewalDuration") == renewal
    assert sb["maxConcurrentCalls"] == calls


@pytest.mark.parametrize("app", ["video", "jobs", "notify"])
def test_workers_app_folders_are_deployable(app: str) -> None:
    folder = WORKERS / app
    for name in ("function_app.py", "host.json", "requirements.txt", "local.settings.json"):
        path = folder / (name if name != "local.settings.json" else name + ".example")
        assert path.is_file(), path
    values = json.loads((folder / "local.settings.json.example").read_text())["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert {"SERVICEBUS_CONNECTION", "TOPIC_JOBS", "TOPIC_EVENTS"} <= set(values)
    requirements = (folder / "requirements.txt").read_text()
    assert "azurefunctions-extensions-bindings-servicebus" in requirements


def test_workers_video_runs_stay_inside_the_lock_renewal_window(
    indexed: dict[str, tuple[ModuleType, dict[str, Any]]],
) -> None:
    """Seed: lock renewal 5 min, timeout 10 min → runs over ~7 min are processed twice."""
    module, _ = indexed["video"]
    profile: HostProfile = module.PROFILE
    assert profile.lock_renewal == 300 and profile.function_timeout == 600
    processor: JobProcessor = module.VIDEO.processor
    assert processor.run_budget_seconds is not None
    assert processor.run_budget_seconds < profile.lock_renewal
    # The run lease outlives anything the host lets run, so a redelivery cannot overlap.
    assert processor.lease_ttl_seconds >= profile.function_timeout


def test_workers_run_budget_follows_host_json_overrides_from_app_settings() -> None:
    """An `AzureFunctionsJobHost__` app setting changes what the host renews; the app's run
    budget must shrink with it, or runs outlive the renewal window again."""
    host_json = WORKERS / "video" / "host.json"
    assert HostProfile.load(host_json, {}).run_budget == 270
    renewal = "AzureFunctionsJobHost__extensions__serviceBus__maxAutoLockRenewalDuration"
    profile = HostProfile.load(
        host_json,
        {
            renewal: "00:02:00",
            "azurefunctionsjobhost__extensions__servicebus__autocompletemessages": "true",
        },
    )
    assert profile.lock_renewal == 120 and profile.run_budget == 90
    assert profile.auto_complete is True
    timeout = HostProfile.load(host_json, {"AzureFunctionsJobHost__functionTimeout": "00:01:00"})
    assert timeout.run_budget == 30 and timeout.lease_ttl == 90


def test_workers_jobs_budget_fits_the_function_timeout(
    indexed: dict[str, tuple[ModuleType, dict[str, Any]]],
) -> None:
    module, _ = indexed["jobs"]
    for runtime in (module.CHAT, module.CONTENT_SUGGEST, module.CONTENT_ANALYZE):
        budget = runtime.processor.run_budget_seconds
        assert budget is not None and budget < module.PROFILE.function_timeout
    assert set(module.CHAT.processor.handlers) == {JobType.CHAT_SUGGEST}


@pytest.mark.parametrize("app", ["video", "jobs", "notify"])
def test_workers_app_import_fails_with_the_missing_settings_named(app: str) -> None:
    env = {k: v for k, v in ENV.items() if k not in ("SERVICEBUS_CONNECTION", "DATABASE_URL")}
    with pytest.raises(SettingsError) as info:
        _import_app(app, env)
    assert "SERVICEBUS_CONNECTION" in str(info.value)
    assert "DATABASE_URL" in str(info.value)
    sys.modules.pop(f"workers.{app}.function_app", None)


def test_workers_apps_read_time_from_workers_clock_url_when_set(
    indexed: dict[str, tuple[ModuleType, dict[str, Any]]],
) -> None:
    """One clock per app, shared by every processor, store and notifier it builds."""
    url = "http://127.0.0.1:9/control/clock"  # never read here: clients connect lazily
    video, jobs, notify = (_import_app(a, {**ENV, "WORKERS_CLOCK_URL": url}) for a in APPS)
    try:
        clocks = [
            video.VIDEO.processor.clock,
            video.DEPS.store.clock,
            *(r.processor.clock for r in (jobs.CHAT, jobs.CONTENT_SUGGEST, jobs.CONTENT_ANALYZE)),
        ]
        assert all(isinstance(c, RemoteOffsetClock) and c.url == url for c in clocks)
        assert clocks[0] is clocks[1] and len({id(c) for c in clocks[2:]}) == 1
        assert notify.WEBHOOK.clock is notify.DLQ.clock is notify.CLOCK
        assert isinstance(notify.CLOCK, RemoteOffsetClock)
    finally:
        for app in APPS:
            sys.modules.pop(f"workers.{app}.function_app", None)
    module, _ = indexed["jobs"]  # without the setting: wall time, as against Azure
    assert isinstance(module.CHAT.processor.clock, SystemClock)


def test_workers_timespans() -> None:
    assert parse_timespan("00:10:00") == 600
    assert parse_timespan("00:00:00.80") == 0.8
    assert parse_timespan("1.02:00:00") == 93600


def test_workers_workers_never_import_emulator_or_harness() -> None:
    for path in WORKERS.rglob("*.py"):
        text = path.read_text()
        for forbidden in ("import emulator", "from emulator", "import harness", "from harness"):
            assert forbidden not in text, f"{path} mentions {forbidden}"


# --- adapters: the SDK-type binding message and its settlement actions -----------------


def binding_message(body: dict[str, Any], props: dict[bytes, bytes]) -> Any:
    """A delivery as the host feeds it: lock token + x-opt-lock-token + AMQP message."""
    amqp = uamqp.Message(
        body=json.dumps(body).encode(),
        application_properties=props,
        properties=MessageProperties(message_id=b"msg-1", content_type=b"application/json"),
    )
    content = uuid.uuid4().bytes_le + b"x-opt-lock-token" + amqp.encode_message()
    datum = SimpleNamespace(
        version="1.0", source="AzureServiceBus", content_type="application/json", content=content
    )
    return ServiceBusReceivedMessage(data=datum).get_sdk_type()


class FakeMessageActions:
    """Stands in for the gRPC-backed `ServiceBusMessageActions` singleton."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []

    def complete(self, message: Any) -> None:
        self.calls.append(("complete", message.lock_token, {}))

    def abandon(self, message: Any) -> None:
        self.calls.append(("abandon", message.lock_token, {}))

    def deadletter(self, message: Any, **kwargs: Any) -> None:
        self.calls.append(("deadletter", message.lock_token, kwargs))

    def defer(self, message: Any) -> None:
        self.calls.append(("defer", message.lock_token, {}))


PROPS = {b"jobType": b"chat.suggest", b"jobId": b"job_1", b"creatorId": b"creator-1"}


def test_workers_sdk_message_is_adapted(tmp_path: Path) -> None:
    message = binding_message(job_body(), PROPS)
    received = received_job_from_sdk(message)
    assert json.loads(received.body)["jobId"] == "job_1"
    assert received.application_properties == {
        "jobType": "chat.suggest",
        "jobId": "job_1",
        "creatorId": "creator-1",
    }
    assert received.message_id == "msg-1"


async def test_workers_runtime_settles_through_message_actions(
    make_processor: Callable[..., JobProcessor], repo: JobRepository
) -> None:
    runtime = JobWorkerRuntime(make_processor(ScriptedHandler(JobType.CHAT_SUGGEST, ["hi"])))
    actions = FakeMessageActions()
    message = binding_message(job_body(), PROPS)
    assert await runtime.handle(message, actions) is Outcome.COMPLETED
    assert [(c[0], c[1]) for c in actions.calls] == [("complete", message.lock_token)]
    record = await repo.get("job_1")
    assert record is not None and record.status is JobStatus.COMPLETED

    bad = binding_message({"jobId": 1}, PROPS)
    assert await runtime.handle(bad, actions) is Outcome.DEAD_LETTERED
    kind, _, kwargs = actions.calls[-1]
    assert kind == "deadletter"
    assert kwargs["deadletter_reason"] == "INVALID_PAYLOAD"
    assert "jobType: Field required" in kwargs["deadletter_error_description"]

    assert await runtime.handle(None, actions) is None


async def test_workers_dead_letter_description_is_bounded() -> None:
    actions = FakeMessageActions()
    settler = MessageActionsSettler(actions, SimpleNamespace(lock_token="t"))
    await settler.dead_letter("X", "y" * 5000)
    await settler.defer()
    await settler.abandon()
    assert len(actions.calls[0][2]["deadletter_error_description"]) == MAX_DEADLETTER_DESCRIPTION
    assert [c[0] for c in actions.calls] == ["deadletter", "defer", "abandon"]


class RecordingSender:
    def __init__(self, topic: str, sink: list[tuple[str, Any]]) -> None:
        self.topic = topic
        self.sink = sink

    async def send_messages(self, message: Any) -> None:
        self.sink.append((self.topic, message))


async def test_workers_retry_copy_is_a_scheduled_sdk_message() -> None:
    sent: list[tuple[str, Any]] = []
    outbox = ServiceBusOutbox(lambda t: RecordingSender(t, sent), "huntaze-jobs", "huntaze-events")
    job = parse_job_message(json.dumps(job_body()))
    props = {"jobType": "chat.suggest", "jobId": "job_1", "creatorId": "creator-1"}
    when = T0 + timedelta(seconds=3)
    await outbox.schedule(job.next_attempt(), props, when)
    [(topic, message)] = sent
    assert topic == "huntaze-jobs"
    assert message.scheduled_enqueue_time_utc == when
    assert message.application_properties == props
    assert message.content_type == "application/json"
    assert json.loads(str(message))["attempt"] == 1
    assert message.message_id == "job_1:1"


async def test_workers_events_carry_the_seed_properties() -> None:
    sent: list[tuple[str, Any]] = []
    outbox = ServiceBusOutbox(lambda t: RecordingSender(t, sent), "huntaze-jobs", "huntaze-events")
    fake = FakeOutbox()
    processor_event = JobProcessor({}, repository=None, guard=None, publisher=fake, scheduler=fake)  # type: ignore[arg-type]
    job = parse_job_message(json.dumps(job_body()))
    await outbox.publish(processor_event.event(job, JobStatus.COMPLETED, progress=100))
    [(topic, message)] = sent
    assert topic == "huntaze-events"
    props = {
        (k.decode() if isinstance(k, bytes) else k): v
        for k, v in message.application_properties.items()
    }
    assert props == {
        "jobId": "job_1",
        "creatorId": "creator-1",
        "status": "completed",
        "eventType": "job.update",
    }
    body = json.loads(str(message))
    assert body["status"] == "completed" and body["progress"] == 100 and "updatedAt" in body
