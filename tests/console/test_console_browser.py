"""The console as a person uses it, in headless Chromium: counts that move, a dead letter read,
resubmitted and completed, the clock moved, 10,000 messages paged, a fault rule added.

No sleeps: Playwright's ``expect`` waits for what the page shows (the page polls every 2-3 s
and refreshes at once after an action), the SDK does the sending and receiving.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulator.servicebus import ServiceBusEmulator

from .test_console_model import topology

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

WAIT_MS = 15_000
DASH = "\u2013"  # the en dash the pager prints between the first and last numbers


@pytest.fixture
def emulator() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(topology()) as emu:
        yield emu


@pytest.fixture
def sb(emulator: ServiceBusEmulator) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(emulator.connection_string) as client:
        yield client


@pytest.fixture
def page(browser: Browser, emulator: ServiceBusEmulator) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations a person would accept
    page.goto(emulator.console_url)
    yield page
    context.close()
    assert errors == [], f"the page raised JavaScript errors: {errors}"


def count_cell(page: Page, path: str, view: str):
    return page.locator(f"tr[data-path='{path}'] td.count.{view}")


def test_counts_change_while_the_page_is_open(page: Page, sb: ServiceBusClient) -> None:
    from playwright.sync_api import expect

    expect(count_cell(page, "q", "active")).to_have_text("0")
    with sb.get_queue_sender("q") as sender:
        sender.send_messages([ServiceBusMessage(str(n)) for n in range(3)])
    expect(count_cell(page, "q", "active")).to_have_text("3", timeout=WAIT_MS)
    with sb.get_topic_sender("t") as sender:
        sender.send_messages(ServiceBusMessage("r", application_properties={"color": "red"}))
    expect(count_cell(page, "t/Subscriptions/red", "active")).to_have_text("1", timeout=WAIT_MS)
    expect(count_cell(page, "t/Subscriptions/corr", "active")).to_have_text("0")


def test_a_dead_letter_is_read_resubmitted_and_completed(page: Page, sb: ServiceBusClient) -> None:
    from playwright.sync_api import expect

    with sb.get_queue_sender("q") as sender:
        sender.send_messages(ServiceBusMessage('{"jobId": "job-7", "jobType": "chat.suggest"}'))
    with sb.get_queue_receiver("q", max_wait_time=5) as receiver:
        (got,) = receiver.receive_messages(1, max_wait_time=5)
        receiver.dead_letter_message(
            got, reason="RATE_LIMIT", error_description="AI answered 429 five times"
        )
    dead = count_cell(page, "q", "dead-letter")
    expect(dead).to_have_text("1", timeout=WAIT_MS)
    dead.locator("a").click()
    row = page.locator(".messages[data-view='dead-letter'] tr.message")
    expect(row).to_have_count(1)
    expect(row.locator("td.reason")).to_have_text("RATE_LIMIT")
    row.locator("td.seq").click()
    detail = page.locator(".detail .dead-letter-reason")
    expect(detail).to_contain_text("RATE_LIMIT")
    expect(detail).to_contain_text("AI answered 429 five times")
    expect(page.locator(".detail pre.body")).to_contain_text('"jobId": "job-7"')

    row.locator("input[name=seq]").check()
    page.get_by_role("button", name="Resubmit selected").click()
    expect(page.locator("#notice")).to_contain_text("1 of 1 resubmitted")
    expect(dead).to_have_text("0", timeout=WAIT_MS)
    expect(count_cell(page, "q", "active")).to_have_text("1", timeout=WAIT_MS)

    with sb.get_queue_receiver("q", max_wait_time=5) as receiver:
        (copy,) = receiver.receive_messages(1, max_wait_time=5)
        assert copy.application_properties[b"x-replay-count"] == 1
        receiver.complete_message(copy)
    expect(count_cell(page, "q", "active")).to_have_text("0", timeout=WAIT_MS)


def test_advancing_the_clock_brings_a_scheduled_message_in(
    page: Page, sb: ServiceBusClient
) -> None:
    from playwright.sync_api import expect

    with sb.get_queue_sender("q") as sender:
        sender.schedule_messages(
            ServiceBusMessage("wake up"), datetime.now(UTC) + timedelta(minutes=10)
        )
    scheduled = count_cell(page, "q", "scheduled")
    expect(scheduled).to_have_text("1", timeout=WAIT_MS)
    scheduled.locator("a").click()
    expect(page.locator(".messages[data-view='scheduled'] tr.message")).to_have_count(1)
    page.get_by_label("advance the clock by").fill("10m 1s")
    page.get_by_role("button", name="Advance").click()
    expect(page.locator("#clock")).to_contain_text("offset 10m 1s")
    expect(scheduled).to_have_text("0", timeout=WAIT_MS)
    expect(count_cell(page, "q", "active")).to_have_text("1", timeout=WAIT_MS)
    expect(page.locator(".messages[data-view='scheduled'] tr.message")).to_have_count(0)


def test_ten_thousand_messages_page_through(page: Page, sb: ServiceBusClient) -> None:
    from playwright.sync_api import expect

    with sb.get_queue_sender("q") as sender:
        for start in range(0, 10_000, 1_000):
            batch = sender.create_message_batch()
            for n in range(start, start + 1_000):
                batch.add_message(ServiceBusMessage(f"m{n}", message_id=f"m{n}"))
            sender.send_messages(batch)
    active = count_cell(page, "q", "active")
    expect(active).to_have_text("10000", timeout=WAIT_MS)
    active.locator("a").click()
    pager = page.locator(".pager .range")
    expect(pager).to_have_text(f"1{DASH}50 of 10000")
    expect(page.locator("tr.message")).to_have_count(50)
    page.locator(".pager a.next").click()
    expect(pager).to_have_text(f"51{DASH}100 of 10000")
    expect(page.locator("tr.message td.mid").first).to_have_text("m50")
    page.locator(".pager a.previous").click()
    expect(pager).to_have_text(f"1{DASH}50 of 10000")


def test_a_fault_rule_is_added_and_cleared(page: Page, emulator: ServiceBusEmulator) -> None:
    from playwright.sync_api import expect

    form = page.locator("form.add-fault")
    form.get_by_label("operation").select_option("send")
    form.get_by_label("effect").select_option("server-busy")
    form.get_by_label("entity glob").fill("q")
    form.get_by_label("next n").fill("3")
    form.get_by_role("button", name="Add rule").click()
    expect(page.locator("table.faults tr[data-id='f1']")).to_contain_text("server-busy")
    assert [(r.operation, r.next_n) for r in emulator.faults.rules] == [("send", 3)]
    form = page.locator("form.add-fault")
    form.get_by_label("effect").select_option("lock-lost")
    form.get_by_role("button", name="Add rule").click()
    expect(page.locator("#faults .notice.bad")).to_contain_text("lock-lost only applies")
    page.get_by_role("button", name="Clear all").click()
    expect(page.locator("#faults")).to_contain_text("no fault rules")
    assert emulator.faults.rules == []
