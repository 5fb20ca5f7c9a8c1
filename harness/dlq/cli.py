"""`harness dlq list|export|replay|reproduce`: the argparse wiring and what each command prints."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from rich.console import Console

from . import (
    DeadLetterRecord,
    DeadLetterSource,
    DlqError,
    admin_client,
    client,
    dead_letter_counts,
    export_dead_letters,
    make_selector,
    peek_dead_letters,
    read_records,
    replay_dead_letters,
    replay_records,
)
from .progress import (
    ExportProgress,
    ReplayProgress,
    ReproduceProgress,
    print_reproduction,
    print_summary,
    reproduce_table,
)
from .redact import Redaction
from .replay import NOT_SELECTED
from .reproduce import AI_FAULT_KINDS, AIFaultPlan, Reproduction, reproduce_locally

DLQ_HELP = """\
Dead letters on any namespace (the emulator, the official emulator, Azure) through the SDK.
list counts them, export peeks them into JSON lines without changing anything, replay moves
them back, reproduce runs them through the real handler on a local stack. A subscription's
dead letters are --topic T --subscription S, a queue's --queue Q."""

EXPORT_HELP = """\
Peek the dead-letter queue (no lock, no delivery count: the queue is left exactly as it was)
and write one JSON object per dead letter: body (text, or base64 when not UTF-8, see
body_encoding), message_id, correlation_id, subject, content_type, application_properties
(uuids, binaries and timestamps as {"$type": ..., "value": ...}), sequence_number,
enqueued_time, delivery_count, dead_letter_reason, dead_letter_error_description,
dead_letter_source and entity_path. `replay --from` sends such a file again."""

REPLAY_HELP = """\
Move dead letters back. Each selected dead letter is sent as a copy (body, application
properties, content type, subject, correlation id and message id kept; x-replayed-from,
x-replay-count, x-replay-of and x-replayed-at added) to the queue or topic it died in, or to
--to, and is completed in the dead-letter queue only after that send succeeded; a failed send
abandons it, so nothing is lost. The workers run a failed job that x-replay-of names again.

Sending to a topic re-applies its subscriptions' rules: the copy reaches every subscription
whose filter matches, not only the one it died in (on huntaze-events: all four).

Message ids are kept, so a re-run after an interruption is deduplicated where the target has
duplicate detection. Such a target also silently drops a copy whose id it saw within its
window, so those dead letters are skipped (with a reason) unless --new-message-id gives every
copy a fresh id (the old one goes to x-original-message-id).

Dead letters before a selected one that are not selected themselves are locked to get past them
and abandoned afterwards (their delivery count goes up by one). --from replays an export file
instead and leaves the dead-letter queue alone. Exit status 1 when any dead letter failed."""


REPRODUCE_HELP = """\
Run dead letters, one at a time, through the real worker handler on a local stack (emulator,
database, Redis, AI/SignalR/SMTP stand-ins, every worker app in this process), to see why each
died. The source is an export file (--from) or a live dead-letter queue on any namespace,
read by peek only: nothing there changes. Each is sent as replay sends it, to the local copy
of the queue or topic it died in; retries it schedules are followed by moving the emulator's
clock (--follow attempts at most). Per dead letter: its result (completed, dead-lettered with
the reason, retried, abandoned), every attempt with its error and traceback, the warnings
logged, and the AI calls made. --ai makes the AI stand-in answer with a fault, so a failure
can be reproduced, and a fix then shown with --ai ok. Exit status 1 when a dead letter could
not be run at all (no function reads its entity, or it could not be sent)."""


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def add_dlq_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    raw = argparse.RawDescriptionHelpFormatter
    dlq = commands.add_parser(
        "dlq",
        help="list, export (peek), replay and reproduce dead letters",
        description=DLQ_HELP,
        formatter_class=raw,
    )
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = actions.add_parser("list", help="dead-letter counts per queue and subscription")
    export = actions.add_parser(
        "export",
        help="peek dead letters into JSON lines",
        description=EXPORT_HELP,
        formatter_class=raw,
    )
    replay = actions.add_parser(
        "replay",
        help="move dead letters back to their topic/queue",
        description=REPLAY_HELP,
        formatter_class=raw,
    )
    reproduce = actions.add_parser(
        "reproduce",
        help="run dead letters through the real handler on a local stack",
        description=REPRODUCE_HELP,
        formatter_class=raw,
    )
    for sub in (listing, export, replay, reproduce):
        sub.add_argument(
            "--connection-string",
            default=os.environ.get("HARNESS_SB_CONNECTION_STRING"),
            help="namespace connection string (default: $HARNESS_SB_CONNECTION_STRING)",
        )
        sub.add_argument(
            "--retries",
            type=_count,
            default=2,
            help="SDK retries per operation (default 2; an unknown entity is retried too)",
        )
        sub.set_defaults(dlq_parser=sub)
    for sub in (listing, replay):
        sub.add_argument(
            "--ca-bundle",
            help="CA certificate for the management API (the local emulator's is found itself)",
        )
    listing.add_argument("--topic", help="only this topic's subscriptions")
    listing.add_argument("--json", action="store_true", help="JSON instead of a table")
    listing.set_defaults(dlq_run=_dlq_list)
    for sub in (export, replay, reproduce):
        sub.add_argument("--topic", help="topic of the subscription whose DLQ is read")
        sub.add_argument("--subscription", help="subscription whose DLQ is read")
        sub.add_argument("--queue", help="queue whose DLQ is read")
        sub.add_argument("--max", type=_positive, help="at most N dead letters")
    export.add_argument("--out", help="write to FILE (replaced only once complete); default stdout")
    export.add_argument(
        "--redact",
        action="append",
        default=[],
        metavar="FIELD",
        help="replace body.<path> of a JSON body or prop:<name> with '<redacted>' (repeatable)",
    )
    export.set_defaults(dlq_run=_dlq_export)
    replay.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="replay an export file ('-' = stdin) instead of the DLQ",
    )
    replay.add_argument("--to", help="send copies here (queue or topic) instead of their origin")
    replay.add_argument(
        "--where",
        help="only dead letters matching this SQL filter, e.g. \"jobType = 'chat.suggest'\" "
        "(application properties, sys.* and DeadLetterReason)",
    )
    replay.add_argument(
        "--message-id", action="append", default=[], help="only this message id (repeatable)"
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="say what would be sent, change nothing"
    )
    replay.add_argument(
        "--new-message-id", action="store_true", help="give copies fresh message ids (see above)"
    )
    replay.add_argument(
        "--skip-bad", action="store_true", help="with --from: send the good lines of a bad file"
    )
    replay.set_defaults(dlq_run=_dlq_replay)
    _add_reproduce_options(reproduce)


def _add_reproduce_options(reproduce: argparse.ArgumentParser) -> None:
    reproduce.add_argument(
        "--from", dest="from_file", metavar="FILE", help="an export file ('-' = stdin)"
    )
    reproduce.add_argument(
        "--where", help="only dead letters matching this SQL filter (as replay --where)"
    )
    reproduce.add_argument(
        "--message-id", action="append", default=[], help="only this message id (repeatable)"
    )
    reproduce.add_argument(
        "--ai",
        default="ok",
        metavar="KIND[:N]",
        help=f"how the AI stand-in answers: {', '.join(AI_FAULT_KINDS)}; :N for only the "
        "first N calls of each dead letter (default ok)",
    )
    reproduce.add_argument(
        "--follow",
        type=_positive,
        default=8,
        help="attempts to follow per dead letter, retries included (default 8)",
    )
    reproduce.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for each run (default 60)",
    )
    reproduce.add_argument(
        "--stack",
        choices=("auto", "local", "embedded", "containers"),
        default="auto",
        help="where the local database and Redis come from (default auto)",
    )
    reproduce.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    reproduce.add_argument(
        "--verbose", action="store_true", help="show the local system's own logs too"
    )
    reproduce.set_defaults(dlq_run=_dlq_reproduce)


def run_dlq(args: argparse.Namespace) -> int:

    parser: argparse.ArgumentParser = args.dlq_parser
    reads_a_file = args.dlq_command == "reproduce" and args.from_file
    if not args.connection_string and not reads_a_file:
        parser.error("--connection-string is required (or set $HARNESS_SB_CONNECTION_STRING)")
    # The command reports failures itself; the SDK's own retry warnings would only repeat them.
    logging.getLogger("azure").setLevel(logging.ERROR)
    try:
        return int(args.dlq_run(args))
    except DlqError as exc:
        print(f"harness dlq {args.dlq_command}: {exc}", file=sys.stderr)
        return 1


def _dlq_source(args: argparse.Namespace) -> DeadLetterSource:

    parser: argparse.ArgumentParser = args.dlq_parser
    if args.queue and (args.topic or args.subscription):
        parser.error("give either --queue or --topic with --subscription, not both")
    if args.queue:
        return DeadLetterSource(args.queue)
    if not (args.topic and args.subscription):
        parser.error("the dead-letter queue to read: --topic T --subscription S, or --queue Q")
    return DeadLetterSource(args.topic, args.subscription)


def _dlq_list(args: argparse.Namespace) -> int:

    with admin_client(
        args.connection_string, ca_bundle=args.ca_bundle, retries=args.retries
    ) as admin:
        counts = dead_letter_counts(admin, topic=args.topic)
    if args.json:
        print(json.dumps([vars(c) for c in counts], indent=2))
        return 0
    width = max([len(c.entity_path) for c in counts] + [len("ENTITY")])
    print(f"{'ENTITY':<{width}}  {'ACTIVE':>8}  {'DEAD-LETTER':>11}  {'TRANSFER-DL':>11}")
    for c in counts:
        print(
            f"{c.entity_path:<{width}}  {c.active:>8}  {c.dead_letter:>11}  "
            f"{c.transfer_dead_letter:>11}"
        )
    return 0


@contextlib.contextmanager
def _replace_when_done(path: Path) -> Iterator[TextIO]:
    """Write next to ``path`` and move into place only on success: no half-written exports."""

    try:
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        raise DlqError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with open(descriptor, "w", encoding="utf-8") as handle:
            yield handle
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _dlq_export(args: argparse.Namespace) -> int:
    source = _dlq_source(args)
    redaction = Redaction.parse(args.redact)
    with client(args.connection_string, retries=args.retries) as sb, ExportProgress() as bar:

        def export(out: TextIO, ascii_only: bool) -> int:
            return export_dead_letters(
                sb,
                source,
                out,
                max_count=args.max,
                ascii_only=ascii_only,
                on_record=bar.update,
                redaction=redaction,
            )

        if args.out is None:
            count = export(sys.stdout, ascii_only=True)
        else:
            with _replace_when_done(Path(args.out)) as out:
                count = export(out, ascii_only=False)
    if count:  # the records own stdout when no --out is given: the table goes to stderr
        Console(stderr=True, soft_wrap=True).print(bar.table())
    where = f" to {args.out}" if args.out else ""
    print(f"exported {count} dead letter(s) from {source.dead_letter_path}{where}", file=sys.stderr)
    return 0


def _read_export(path: str, skip_bad: bool) -> list[DeadLetterRecord]:
    try:
        if path == "-":
            lines = sys.stdin.buffer.read().splitlines()
        else:
            lines = Path(path).read_bytes().splitlines()
    except OSError as exc:
        raise DlqError(f"cannot read {path}: {exc.strerror or exc}") from exc
    records, problems = read_records(lines, source=path, skip_bad=skip_bad)
    for problem in problems:
        print(f"warning: {path}: skipped {problem}", file=sys.stderr)
    return records


def _dlq_replay(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.dlq_parser
    if args.from_file and (args.topic or args.subscription or args.queue):
        parser.error("--from replays a file; it does not take --topic/--subscription/--queue")
    if args.skip_bad and not args.from_file:
        parser.error("--skip-bad only applies to --from")
    source = None if args.from_file else _dlq_source(args)
    select = make_selector(args.where, args.message_id)
    records = _read_export(args.from_file, args.skip_bad) if args.from_file else []
    options = {
        "to": args.to,
        "select": select,
        "max_count": args.max,
        "dry_run": args.dry_run,
        "new_message_id": args.new_message_id,
    }
    with contextlib.ExitStack() as stack:
        sb = stack.enter_context(client(args.connection_string, retries=args.retries))
        if not args.new_message_id:  # only to check the target's duplicate detection
            options["admin"] = stack.enter_context(
                admin_client(args.connection_string, ca_bundle=args.ca_bundle, retries=args.retries)
            )
        progress = stack.enter_context(ReplayProgress(len(records) if source is None else None))
        options["on_outcome"] = progress.update
        if source is None:
            report = replay_records(sb, records, **options)  # type: ignore[arg-type]
        else:
            report = replay_dead_letters(sb, source, **options)  # type: ignore[arg-type]
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for o in report.outcomes:
        if o.outcome == "skipped" and o.detail == NOT_SELECTED:
            continue
        line = f"{o.outcome:<12} seq={o.sequence_number} id={o.message_id} -> {o.target}"
        print(line + (f": {o.detail}" if o.detail else ""))
    origin = args.from_file if source is None else source.dead_letter_path
    print_summary(report, sys.stdout)
    print(f"{report.summary()} (from {origin})")
    return 0 if report.ok else 1


def _dlq_reproduce(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.dlq_parser
    if args.from_file and (args.topic or args.subscription or args.queue):
        parser.error("--from reads a file; it does not take --topic/--subscription/--queue")
    plan = AIFaultPlan.parse(args.ai)
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # the hosts' settlement channels
    select = make_selector(args.where, args.message_id)
    if args.from_file:
        records = _read_export(args.from_file, skip_bad=False)
    else:
        source = _dlq_source(args)
        with client(args.connection_string, retries=args.retries) as sb:
            peeked = peek_dead_letters(sb, source, max_count=args.max)
            records = [DeadLetterRecord.from_message(m, source.dead_letter_path) for m in peeked]
    if select is not None:
        records = [r for r in records if select(r)]
    if args.from_file and args.max:
        records = records[: args.max]
    if not records:
        print("no dead letters to reproduce", file=sys.stderr)
        return 0
    if not args.verbose:  # the reports carry what the apps logged; the rest is noise here
        logging.getLogger().setLevel(logging.ERROR)
    out = Console(soft_wrap=True)
    err = Console(stderr=True, soft_wrap=True)
    print(f"reproducing {len(records)} dead letter(s); {plan.describe()}", file=sys.stderr)
    with ReproduceProgress(len(records), console=err) as progress:

        def ready(lines: list[str]) -> None:
            progress.console.print("local system up:\n  " + "\n  ".join(lines[:2]))

        def done(result: Reproduction) -> None:
            progress.update(result)
            print_reproduction(result, out)

        results = reproduce_locally(
            records,
            provider=args.stack,
            ai_plan=plan,
            follow=args.follow,
            timeout=args.timeout,
            on_ready=ready,
            on_result=done,
        )
    out.print(reproduce_table(results))
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n")
        print(f"results written to {args.json}", file=sys.stderr)
    return 1 if any(r.result in ("no-run", "not-sent") for r in results) else 0
