"""Durable state without a socket: a broker, its SQLite journal, a "crash", a new broker.

Each test changes state through the broker core (as the AMQP adapter does), drops the journal
without any final write (what SIGKILL leaves) and rebuilds a broker from the same directory.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from emulator.servicebus.amqp.convert import SCHEDULED_ENQUEUE_TIME, to_broker_message
from emulator.servicebus.amqp.message import (
    Header,
    Properties,
    encode_application_properties,
    encode_data_section,
    encode_header,
    encode_message_annotations,
    encode_properties,
)
from emulator.servicebus.amqp.types import Int, Symbol
from emulator.servicebus.core.broker import Broker
from emulator.servicebus.core.clock import EmulatorClock
from emulator.servicebus.core.message import BrokerMessage, MessageState
from emulator.servicebus.core.rules import CompiledRule
from emulator.servicebus.core.store import MessageStore, ReceiveMode
from emulator.servicebus.persistence import (
    DATABASE_NAME,
    DataDirError,
    SqliteJournal,
    descriptions,
)
from emulator.servicebus.persistence.descriptions import DescriptionError
from emulator.servicebus.persistence.schema import unlock_directory
from emulator.servicebus.topology import (
    AccessRights,
    CorrelationFilterSpec,
    FalseFilterSpec,
    NamespaceTopology,
    QueueDescription,
    RuleDescription,
    SasPolicy,
    SqlFilterSpec,
    SubscriptionDescription,
    TopicDescription,
    TrueFilterSpec,
)

START = 1_800_000_000.0


class Wall:
    """The wall time an EmulatorClock reads, moved by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def topology() -> NamespaceTopology:
    return NamespaceTopology(
        queues=[
            QueueDescription("q", lock_duration=timedelta(seconds=30), max_delivery_count=3),
            QueueDescription(
                "ttl",
                default_message_time_to_live=timedelta(seconds=60),
                dead_lettering_on_message_expiration=True,
            ),
            QueueDescription("sessions", requires_session=True),
            QueueDescription(
                "dedup",
                requires_duplicate_detection=True,
                duplicate_detection_history_time_window=timedelta(minutes=10),
            ),
            QueueDescription("lost", forward_to="nowhere"),
        ],
        topics=[
            TopicDescription(
                "t",
                subscriptions=[
                    SubscriptionDescription("all"),
                    SubscriptionDescription(
                        "red", rules=[RuleDescription("red", SqlFilterSpec("color = 'red'"))]
                    ),
                ],
            )
        ],
    )


@dataclass
class Node:
    """One "process": a broker and its journal on a data dir."""

    broker: Broker
    journal: SqliteJournal
    clock: EmulatorClock
    topology: NamespaceTopology = field(repr=False)

    def store(self, path: str) -> MessageStore:
        return self.broker.receive_store(path)


class Durable:
    """Starts nodes on one directory; ``crash`` drops one as SIGKILL would."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.wall = Wall()
        self.nodes: list[Node] = []

    def start(self, config: NamespaceTopology | None = None) -> Node:
        config = config if config is not None else topology()
        clock = EmulatorClock(wall=self.wall)
        journal = SqliteJournal.open(self.directory)
        journal.restore_clock(clock)
        journal.merge_topology(config)
        broker = Broker(config, clock)
        journal.restore(broker)
        node = Node(broker, journal, clock, config)
        self.nodes.append(node)
        return node

    def crash(self, node: Node) -> None:
        """Lose the process: no last commit, no checkpoint; the lock goes as the fd closes."""
        journal = node.journal
        assert journal._db is not None and journal._lock is not None
        journal._db.close()
        journal._db = None
        unlock_directory(journal._lock)
        journal._lock = None

    def restart(self, node: Node, config: NamespaceTopology | None = None) -> Node:
        self.crash(node)
        return self.start(config)

    def close(self) -> None:
        for node in self.nodes:
            node.journal.close()


@pytest.fixture
def durable(tmp_path: Path) -> Iterator[Durable]:
    state = Durable(tmp_path / "state")
    yield state
    state.close()


def wire(
    body: bytes = b"hello",
    *,
    message_id: object = None,
    session_id: str | None = None,
    properties: dict[str, object] | None = None,
    ttl_ms: int | None = None,
    scheduled: datetime | None = None,
) -> BrokerMessage:
    """A message as the SDK would send it, decoded as the AMQP adapter decodes it."""
    parts = [encode_header(Header(durable=True, ttl=ttl_ms))]
    annotations: dict[object, object] = {Symbol("x-opt-partition-key"): "pk"}
    if scheduled is not None:
        annotations[SCHEDULED_ENQUEUE_TIME] = scheduled
    parts.append(encode_message_annotations(annotations))
    parts.append(
        encode_properties(
            Properties(
                message_id=message_id if message_id is not None else str(uuid.uuid4()),
                subject="label",
                group_id=session_id,
                content_type=Symbol("text/plain"),
                creation_time=datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC),
            )
        )
    )
    if properties:
        parts.append(encode_application_properties(properties))
    parts.append(encode_data_section(body))
    return to_broker_message(b"".join(parts))


def same_message(a: BrokerMessage, b: BrokerMessage) -> None:
    """Everything a receiver or the control API can see is equal."""
    for name in (
        "sequence_number",
        "enqueued_time",
        "expires_at",
        "delivery_count",
        "state",
        "size",
        "time_to_live",
        "scheduled_enqueue_time",
        "dead_letter_source",
        "hops",
        "system",
        "user",
        "annotations",
        "payload",
    ):
        assert getattr(a, name) == getattr(b, name), name


def snapshot(store: MessageStore) -> dict[int, BrokerMessage]:
    return {seq: message for seq, message in sorted(store.messages.items())}


# -- messages ------------------------------------------------------------------------------------


def test_every_message_state_and_sub_queue_round_trips(durable: Durable) -> None:
    node = durable.start()
    now = node.clock.now()
    later = datetime.fromtimestamp(now + 3600, UTC)
    props: dict[str, object] = {
        "text": "x",
        "int": Int(7),
        "long": 1 << 40,
        "float": 1.5,
        "flag": True,
        "when": datetime(2027, 5, 6, tzinfo=UTC),
        "id": uuid.uuid4(),
        "bytes": b"\x00\x01",
        "color": "red",
    }
    node.broker.send("q", [wire(message_id=f"m{i}", properties=props) for i in range(6)])
    node.broker.send("q", [wire(message_id="later", scheduled=later)])
    node.broker.send("t", [wire(message_id="fan", properties={"color": "red"})])
    node.broker.send("t", [wire(message_id="t-later", scheduled=later)])
    node.broker.send("lost", [wire(message_id="transfer-dead")])
    q = node.store("q")
    got = q.receive(4, now, ReceiveMode.PEEK_LOCK)
    q.defer(got[0].lock_token, now, {"deferred-why": "later"})  # type: ignore[arg-type]
    q.dead_letter(got[1].lock_token, now, "Bad", "really bad", {"extra": Int(1)})  # type: ignore[arg-type]
    q.abandon(got[2].lock_token, now, {"tries": 1})  # type: ignore[arg-type]
    q.complete(got[3].lock_token, now)  # type: ignore[arg-type]
    paths = [
        "q",
        "q/$DeadLetterQueue",
        "t/Subscriptions/all",
        "t/Subscriptions/red",
        "lost/$Transfer/$DeadLetterQueue",
    ]
    before = {p: snapshot(node.store(p)) for p in paths}
    scheduled_before = dict(node.broker.topic("t")._scheduled)

    after_node = durable.restart(node)
    for path in paths:
        after = snapshot(after_node.store(path))
        assert list(after) == list(before[path]), path
        for seq, message in after.items():
            same_message(message, before[path][seq])
    scheduled_after = after_node.broker.topic("t")._scheduled
    assert list(scheduled_after) == list(scheduled_before) == [2]
    same_message(scheduled_after[2], scheduled_before[2])
    states = {m.message_id: m.state for m in after_node.store("q").messages.values()}
    assert states["m0"] is MessageState.DEFERRED
    assert states["later"] is MessageState.SCHEDULED
    assert "m3" not in states  # completed
    dead = after_node.store("q/$DeadLetterQueue").messages[2]
    assert dead.user["DeadLetterReason"] == "Bad" and dead.user["extra"] == Int(1)


def test_restored_messages_keep_behaving(durable: Durable) -> None:
    """Heaps are rebuilt: order, scheduling, deferred receive and TTL work after a restart."""
    node = durable.start()
    now = node.clock.now()
    soon = datetime.fromtimestamp(now + 100, UTC)
    node.broker.send("q", [wire(message_id=f"m{i}") for i in range(3)])
    node.broker.send("q", [wire(message_id="later", scheduled=soon)])
    q = node.store("q")
    (first,) = q.receive(1, now, ReceiveMode.PEEK_LOCK)
    q.defer(first.lock_token, now)  # type: ignore[arg-type]
    node.broker.send("ttl", [wire(message_id="short")])

    node = durable.restart(node)
    q = node.store("q")
    now = node.clock.now()
    ready = q.receive(5, now, ReceiveMode.PEEK_LOCK)
    assert [m.message_id for m in ready] == ["m1", "m2"]
    for message in ready:
        q.complete(message.lock_token, now)  # type: ignore[arg-type]
    (deferred,) = q.receive_deferred([first.sequence_number], now, ReceiveMode.PEEK_LOCK)
    assert deferred.message_id == "m0"
    node.clock.advance(100)
    node.broker.process_due()
    assert [m.message_id for m in q.receive(5, node.clock.now(), ReceiveMode.PEEK_LOCK)] == [
        "later"
    ]
    durable.wall.now += 61  # the TTL lapses while nothing runs
    node = durable.restart(node)
    assert node.store("ttl").count() == 0
    (expired,) = node.store("ttl/$DeadLetterQueue").messages.values()
    assert expired.user["DeadLetterReason"] == "TTLExpiredException"


def test_a_message_locked_at_the_crash_comes_back_with_its_delivery_counted(
    durable: Durable,
) -> None:
    node = durable.start()
    node.broker.send("q", [wire(message_id="held"), wire(message_id="spent")])
    q = node.store("q")
    now = node.clock.now()
    _, spent = q.receive(2, now, ReceiveMode.PEEK_LOCK)
    q.abandon(spent.lock_token, now)  # type: ignore[arg-type]
    (spent,) = q.receive(1, now, ReceiveMode.PEEK_LOCK)
    q.abandon(spent.lock_token, now)  # type: ignore[arg-type]
    (spent,) = q.receive(1, now, ReceiveMode.PEEK_LOCK)  # third delivery of three, then crash
    assert spent.delivery_count == 2

    node = durable.restart(node)
    q = node.store("q")
    (back,) = q.messages.values()
    assert back.message_id == "held" and back.delivery_count == 1 and back.lock_token is None
    assert q.receive(5, node.clock.now(), ReceiveMode.PEEK_LOCK) == [back]
    (dead,) = node.store("q/$DeadLetterQueue").messages.values()
    assert dead.message_id == "spent"
    assert dead.user["DeadLetterReason"] == "MaxDeliveryCountExceeded"


def test_receive_and_delete_and_completion_stay_gone(durable: Durable) -> None:
    node = durable.start()
    node.broker.send("q", [wire(message_id=f"m{i}") for i in range(3)])
    q = node.store("q")
    now = node.clock.now()
    q.receive(1, now, ReceiveMode.RECEIVE_AND_DELETE)
    (second,) = q.receive(1, now, ReceiveMode.PEEK_LOCK)
    q.complete(second.lock_token, now)  # type: ignore[arg-type]
    node = durable.restart(node)
    assert [m.message_id for m in node.store("q").messages.values()] == ["m2"]


def test_sequence_numbers_are_never_reused(durable: Durable) -> None:
    node = durable.start()
    node.broker.send("q", [wire() for _ in range(5)])
    q = node.store("q")
    now = node.clock.now()
    for message in q.receive(5, now, ReceiveMode.PEEK_LOCK):
        q.complete(message.lock_token, now)  # type: ignore[arg-type]
    node.broker.send("t", [wire(properties={"color": "red"})])
    node = durable.restart(node)
    assert node.broker.send("q", [wire()]) == [6]
    assert node.broker.send("t", [wire()]) == [2]


def test_session_state_and_session_messages(durable: Durable) -> None:
    node = durable.start()
    node.broker.send("sessions", [wire(session_id="a"), wire(session_id="b")])
    store = node.store("sessions")
    now = node.clock.now()
    session = store.accept_session("a", owner="receiver", now=now)
    assert session is not None
    store.set_session_state("a", b"step-2", now)
    (locked,) = store.receive(5, now, ReceiveMode.PEEK_LOCK, session)
    assert locked.session_id == "a"

    node = durable.restart(node)
    store = node.store("sessions")
    now = node.clock.now()
    assert sorted(store.session_ids()) == ["a", "b"]
    assert store.session_ids(updated_since=START - 1) == ["a"]
    session = store.accept_session(None, owner="other", now=now)  # a's lock did not survive
    assert session is not None and session.id == "a"
    assert store.session_state("a", now) == b"step-2"
    (back,) = store.receive(5, now, ReceiveMode.PEEK_LOCK, session)
    assert back.sequence_number == locked.sequence_number and back.delivery_count == 1


def test_duplicate_detection_window_survives(durable: Durable) -> None:
    node = durable.start()
    node.broker.send("dedup", [wire(message_id="once"), wire(message_id=b"\x01binary")])
    durable.wall.now += 300
    node.broker.send("dedup", [wire(message_id="recent")])

    node = durable.restart(node)
    node.broker.send("dedup", [wire(message_id=m) for m in ("once", b"\x01binary", "recent")])
    assert node.store("dedup").count() == 3  # the three resends were dropped
    durable.wall.now += 301  # "once" and the binary id leave the 10-minute window
    node = durable.restart(node)
    node.broker.send("dedup", [wire(message_id=m) for m in ("once", b"\x01binary", "recent")])
    assert node.store("dedup").count() == 5
    rows = sqlite3.connect(durable.directory / DATABASE_NAME).execute(
        "SELECT count(*) FROM duplicates"
    )
    assert rows.fetchone()[0] == 3  # forgotten ids are deleted, not kept forever


def test_the_clock_offset_survives_and_schedules_follow_it(durable: Durable) -> None:
    node = durable.start()
    due = datetime.fromtimestamp(node.clock.now() + 3600, UTC)
    node.broker.send("q", [wire(message_id="in-an-hour", scheduled=due)])
    node.clock.advance(1800)
    node.journal.clock_offset(node.clock.offset)
    node.journal.commit()
    node = durable.restart(node)
    assert node.clock.offset == 1800
    assert node.store("q").count(MessageState.SCHEDULED) == 1
    node.clock.advance(1800)
    node.broker.process_due()
    assert node.store("q").count(MessageState.ACTIVE) == 1


# -- entities ------------------------------------------------------------------------------------


def test_entities_created_updated_and_deleted_at_run_time(durable: Durable) -> None:
    node = durable.start()
    broker = node.broker
    broker.create_queue(QueueDescription("made", max_delivery_count=7))
    broker.update_queue(QueueDescription("q", lock_duration=timedelta(seconds=90)))
    broker.delete_queue("ttl")
    broker.create_topic(TopicDescription("news"))
    broker.create_subscription("news", SubscriptionDescription("reader"))
    broker.put_rule(
        "news",
        "reader",
        CompiledRule.compile(
            RuleDescription("big", SqlFilterSpec("size > @min"), "SET tag = @tag"),
            {"min": 10},
            {"tag": "big"},
        ),
    )
    broker.delete_rule("news", "reader", "$Default")
    broker.delete_subscription("t", "red")
    broker.send("news", [wire(message_id="small", properties={"size": 5})])
    broker.send("news", [wire(message_id="large", properties={"size": 50})])

    node = durable.restart(node)
    broker = node.broker
    assert sorted(broker.queues) == ["dedup", "lost", "made", "q", "sessions"]
    assert broker.queue("made").description.max_delivery_count == 7
    assert broker.queue("q").store.policy.lock_duration == 90
    assert sorted(broker.topic("t").subscriptions) == ["all"]
    reader = broker.subscription("news", "reader")
    assert [r.name for r in reader.rules] == ["big"]
    assert reader.rules[0].filter_parameters == {"min": 10}
    (large,) = reader.store.messages.values()
    assert large.message_id == "large" and large.user["tag"] == "big"
    broker.send("news", [wire(message_id="again", properties={"size": 11})])
    assert reader.store.count() == 2  # the recompiled rule routes with its parameters
    assert [t.name for t in node.topology.topics] == ["t", "news"]


def test_config_entities_the_journal_never_saw_are_added(durable: Durable) -> None:
    node = durable.start()
    node.broker.delete_queue("ttl")
    config = topology()
    config.queues.append(QueueDescription("new-in-config"))
    config.topics[0].subscriptions.append(SubscriptionDescription("new-sub"))
    config.queues[0].max_delivery_count = 9  # an entity the journal knows: the journal wins
    node = durable.restart(node, config)
    assert "new-in-config" in node.broker.queues
    assert "ttl" not in node.broker.queues  # deleted at run time stays deleted
    assert node.broker.topic("t").subscription("new-sub") is not None
    assert node.broker.queue("q").description.max_delivery_count == 3


def test_a_topic_recreated_under_a_deleted_queues_name(durable: Durable) -> None:
    node = durable.start()
    node.broker.delete_queue("q")
    node.broker.create_topic(TopicDescription("q", subscriptions=[SubscriptionDescription("s")]))
    node = durable.restart(node)
    assert "q" not in node.broker.queues
    assert node.broker.topic("q").subscription("s") is not None


def test_reset_empties_the_durable_state_too(durable: Durable) -> None:
    node = durable.start()
    node.broker.send("q", [wire()])
    node.broker.send("dedup", [wire(message_id="x")])
    node.broker.reset()
    node = durable.restart(node)
    assert node.store("q").count() == 0
    node.broker.send("dedup", [wire(message_id="x")])
    assert node.store("dedup").count() == 1


def test_one_transaction_per_batch_and_per_settlement(durable: Durable) -> None:
    node = durable.start()
    commits = node.journal.commits
    node.broker.send("t", [wire(properties={"color": "red"}) for _ in range(100)])
    assert node.journal.commits == commits + 1
    store = node.store("t/Subscriptions/all")
    got = store.receive(100, node.clock.now(), ReceiveMode.PEEK_LOCK)
    assert node.journal.commits == commits + 2
    store.complete(got[0].lock_token, node.clock.now())  # type: ignore[arg-type]
    assert node.journal.commits == commits + 3


def test_state_still_in_the_write_ahead_log_is_read(durable: Durable, tmp_path: Path) -> None:
    """What a killed emulator leaves: the last commits only in ``-wal``, never checkpointed."""
    node = durable.start()
    node.broker.send("q", [wire(message_id="in-the-log")])
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in (DATABASE_NAME, DATABASE_NAME + "-wal"):
        shutil.copy(durable.directory / name, copy / name)
    assert (copy / (DATABASE_NAME + "-wal")).stat().st_size > 0
    other = Durable(copy)
    try:
        restored = other.start()
        assert [m.message_id for m in restored.store("q").messages.values()] == ["in-the-log"]
    finally:
        other.close()


def test_nothing_is_journalled_without_a_data_dir() -> None:
    broker = Broker(topology(), EmulatorClock())
    assert broker.journal is None
    assert all(store.journal is None for store in broker.stores())
    assert all(t.journal is None and t.sequence.journal is None for t in broker.topics.values())


# -- bad input -----------------------------------------------------------------------------------


def listing(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_a_database_of_another_schema_version_is_refused_untouched(tmp_path: Path) -> None:
    directory = tmp_path / "old"
    SqliteJournal.open(directory).close()
    database = directory / DATABASE_NAME
    with sqlite3.connect(database) as connection:
        connection.execute("PRAGMA user_version = 99")
    connection.close()
    before = listing(directory)
    with pytest.raises(DataDirError, match=r"schema version 99.*reads version 1.*delete"):
        SqliteJournal.open(directory)
    assert listing(directory) == before


def test_other_files_are_refused_untouched(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    with sqlite3.connect(foreign / DATABASE_NAME) as connection:
        connection.execute("CREATE TABLE mine (x)")
    connection.close()
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / DATABASE_NAME).write_bytes(b"not a database at all" * 10)
    for directory, message in ((foreign, "not a Service Bus"), (garbage, "not an SQLite")):
        before = listing(directory)
        with pytest.raises(DataDirError, match=message):
            SqliteJournal.open(directory)
        assert listing(directory) == before


def test_a_path_that_cannot_be_a_directory_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    with pytest.raises(DataDirError, match="cannot create data dir"):
        SqliteJournal.open(blocker / "state")
    with pytest.raises(DataDirError, match="is not a directory"):
        SqliteJournal.open(blocker)
    assert blocker.read_text() == "in the way"


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Make ``directory`` unwritable: no write permission, or for root (which ignores it) the
    immutable attribute."""
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root without chattr: no way to make a directory unwritable")
    done = subprocess.run([chattr, "+i", str(directory)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"running as root and chattr +i failed: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)


def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    with read_only(directory):
        with pytest.raises(DataDirError, match="is not writable"):
            SqliteJournal.open(directory)
        assert list(directory.iterdir()) == []


def test_a_directory_in_use_is_refused(durable: Durable) -> None:
    durable.start()
    with pytest.raises(DataDirError, match="in use by another emulator"):
        SqliteJournal.open(durable.directory)


def test_descriptions_read_back_equal_and_unknown_ones_are_refused() -> None:
    queue = QueueDescription(
        "q",
        lock_duration=timedelta(seconds=45),
        default_message_time_to_live=timedelta.max,
        auto_delete_on_idle=None,
        forward_dead_lettered_messages_to="elsewhere",
        policies=[SasPolicy("send", "k", AccessRights.SEND | AccessRights.LISTEN)],
    )
    subscription = SubscriptionDescription(
        "s",
        auto_delete_on_idle=timedelta(minutes=5),
        rules=[
            RuleDescription(
                "c",
                CorrelationFilterSpec(
                    correlation_id="id",
                    properties={"n": 2, "on": True, "at": datetime(2027, 1, 1), "f": 1.5},
                ),
                "SET x = 1",
            ),
            RuleDescription("t", TrueFilterSpec()),
            RuleDescription("f", FalseFilterSpec()),
        ],
    )
    for description in (queue, subscription, TopicDescription("t", max_message_size_bytes=1)):
        assert descriptions.loads(descriptions.dumps(description)) == description
    with pytest.raises(DescriptionError, match="unknown stored type"):
        descriptions.loads('{"$t": "QueueDescriptionV9", "name": "q"}')
    with pytest.raises(DescriptionError, match="does not fit this version"):
        descriptions.loads('{"$t": "QueueDescription", "name": "q", "colour": "red"}')
