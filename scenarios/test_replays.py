"""Dead letters kept as regression tests: each message of each export under
`scenarios/replays/` (and `--replays PATH`) runs through the real worker handler on the local
stack and must end as its `NAME.expected.json` says (see kept_replays.py).

The copy is sent as `harness dlq replay` sends it (same body, properties and message id, the
replay marker added), to the topic it died in, with the apps that read that topic running;
the run of the function behind its subscription is compared: settlement, and the reason when
it is dead-lettered again. A dead letter with no expectation fails and says how to record
one (`--replays-update`), so a new export is never silently passed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kept_replays import REPLAYS_DIR, KeptDeadLetter, kept_dead_letters
from scenario_apps import JobServiceBus

from harness.pytest_plugin import WorkerFactory
from harness.stack import Stack

TIMEOUT = 30.0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kept" not in metafunc.fixturenames:
        return
    paths = [REPLAYS_DIR, *(Path(p) for p in metafunc.config.getoption("--replays"))]
    cases = list(kept_dead_letters(paths))
    metafunc.parametrize("kept", cases, ids=[case.test_id for case in cases])


def _apps_for(stack: Stack, topic: str) -> tuple[str, ...]:
    apps = {stack.topic_jobs: ("video", "jobs"), stack.topic_events: ("notify",)}
    if topic not in apps:
        pytest.fail(f"no worker app reads {topic!r}; known: {sorted(apps)}", pytrace=False)
    return apps[topic]


def test_a_kept_dead_letter_ends_as_expected(
    kept: KeptDeadLetter,
    request: pytest.FixtureRequest,
    stack: Stack,
    workers: WorkerFactory,
    servicebus: JobServiceBus,
) -> None:
    source = kept.source
    running = workers(*_apps_for(stack, source.entity))
    wanted = f"{source.entity}/{source.subscription}".casefold()
    functions = [
        spec.name
        for host in running.hosts.values()
        for spec in host.functions.values()
        if spec.source.casefold() == wanted
    ]
    assert functions, f"no running function reads {wanted}"

    with servicebus.client.get_queue_sender(source.entity) as sender:
        sender.send_messages(kept.record.to_message())
    [run] = running.wait_for_invocation(
        functions[0], message_id=kept.record.message_id, timeout=TIMEOUT
    )
    seen: dict[str, str | None] = {"settlement": run.settlement}
    if run.settlement == "dead-lettered":
        seen["reason"] = run.dead_letter_reason

    if request.config.getoption("--replays-update"):
        kept.store(seen)
        return
    expected = kept.expected()
    if expected is None:
        pytest.fail(
            f"{kept.test_id}: no expectation in {kept.expectations_file.name}; this run saw "
            f"{seen} (run with --replays-update to record it, then review the diff)",
            pytrace=False,
        )
    assert seen == expected, f"{kept.test_id}: expected {expected}, saw {seen}: {run.summary()}"
