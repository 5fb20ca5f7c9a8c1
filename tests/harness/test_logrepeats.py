"""RepeatFilter: a host process's repeated lines aggregated, its per-run lines never."""

from __future__ import annotations

import logging

from harness.host.logrepeats import RepeatFilter


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()}")


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def test_repeats_of_one_template_pass_a_burst_then_one_summary_per_window() -> None:
    capture, clock = Capture(), FakeTime()
    capture.addFilter(RepeatFilter(capture, burst=2, window=60, clock=clock))
    log = _logger("test.repeats.notify", capture)
    for n in range(500):  # 500 creators, one template: one kind
        log.warning("[notify-email] no email for creator %s", f"creator-{n}")
    log.info("[notify-webhook] no webhook URL for creator %s", "c1")  # another kind
    assert capture.lines == [
        "test.repeats.notify [notify-email] no email for creator creator-0",
        "test.repeats.notify [notify-email] no email for creator creator-1",
        "test.repeats.notify [notify-webhook] no webhook URL for creator c1",
    ]
    clock.now = 61
    log.warning("[notify-email] no email for creator %s", "creator-500")
    assert capture.lines[3:] == [
        "test.repeats.notify ... 498 more like this in 60 s, held back "
        "(last: [notify-email] no email for creator creator-499)",
        "test.repeats.notify [notify-email] no email for creator creator-500",
    ]


def test_invocation_lines_are_never_held_back() -> None:
    capture = Capture()
    capture.addFilter(RepeatFilter(capture, burst=1, window=60, clock=FakeTime()))
    log = _logger("harness.host.invocations", capture)
    for n in range(50):
        log.info("%s", f"#{n} MetricsWorker msg=m{n} dc=1 succeeded settlement=completed in 0.01s")
    assert len(capture.lines) == 50


def test_flush_says_what_is_held_back_at_shutdown() -> None:
    capture = Capture()
    repeat = RepeatFilter(capture, burst=1, window=60, clock=FakeTime())
    capture.addFilter(repeat)
    log = _logger("test.repeats.flush", capture)
    for _ in range(4):
        log.info("job %s completed on attempt %d", "j", 0)
    repeat.flush_summaries()
    assert capture.lines[-1].startswith("test.repeats.flush ... 3 more like this in 0 s")
    repeat.flush_summaries()  # nothing held back any more: nothing said
    assert len(capture.lines) == 2
