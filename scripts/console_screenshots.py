"""`make screenshots`: the console's main views, from the real local system, into docs/console/.

Starts the system as `harness up` does (stack, stand-ins, the three apps in host processes,
the job API), posts jobs of every type, makes the chat ones die on AI 429s (the retry ladder
followed on the emulator's clock, as `harness dlq reproduce` does), schedules one message,
and takes the pictures in Debian's Chromium through Playwright.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulator.servicebus.admin.control_client import ControlClient
from harness.dlq.reproduce import AIFaultPlan
from harness.system import LocalSystem, SystemPorts

OUT = Path(__file__).resolve().parents[1] / "docs" / "console"
CHROMIUM = "/usr/bin/chromium"
JOBS = [
    ("/api/jobs/chat-suggestions", {"creatorId": "creator-1", "fanMessage": "loved the stream!"}),
    (
        "/api/jobs/chat-suggestions",
        {"creatorId": "creator-2", "fanMessage": "when is the next one?"},
    ),
    (
        "/api/jobs/content-suggestions",
        {"creatorId": "creator-1", "contentType": "reel", "tone": "warm"},
    ),
    (
        "/api/jobs/content-analysis",
        {
            "creatorId": "creator-3",
            "contentId": "c-9",
            "contentType": "post",
            "contentUrl": "MEDIA",
        },
    ),
    ("/api/jobs/video-analysis", {"creatorId": "creator-3", "videoUrl": "MEDIA"}),
]


def wait_for(what: str, done, timeout: float = 120.0, step=None) -> None:
    """Poll ``done()`` (a script, not a test: the system runs in other processes)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"screenshots: timed out waiting for {what}")
        if step is not None:
            step()
        time.sleep(0.5)


def main() -> int:
    from playwright.sync_api import sync_playwright

    OUT.mkdir(parents=True, exist_ok=True)
    with LocalSystem(provider="auto", ports=SystemPorts(0, 0, 0), processes=True) as system:
        assert system.api and system.stack and system.stack.emulator and system.ai
        emulator = system.stack.emulator
        control = ControlClient(emulator.control_url)
        AIFaultPlan.parse("429").apply(system.ai.behaviour)
        api = httpx.Client(base_url=system.api.url, timeout=30)
        ids = []
        for path, body in JOBS:
            if "chat" not in path:
                continue
            answer = api.post(path, json=body)
            answer.raise_for_status()
            ids.append(answer.json()["jobId"])

        def failed() -> bool:
            return all(api.get(f"/api/jobs/{i}").json()["status"] == "failed" for i in ids)

        # Each chat retry waits 3/10/30/120 s on the emulator's clock: move it along.
        wait_for("the chat jobs to fail", failed, step=lambda: control.advance(30))
        AIFaultPlan.parse("ok").apply(system.ai.behaviour)
        for path, body in JOBS:
            if "chat" in path:
                continue
            media = system.ai.media_url()
            answer = api.post(path, json={k: media if v == "MEDIA" else v for k, v in body.items()})
            if answer.status_code != 200:
                print(f"screenshots: {path} answered {answer.status_code}: {answer.text}")
                continue
            ids.append(answer.json()["jobId"])
        with ServiceBusClient.from_connection_string(system.stack.servicebus_connection) as sb:
            with sb.get_topic_sender(system.stack.topic_jobs) as sender:
                sender.schedule_messages(
                    ServiceBusMessage(
                        '{"jobId": "reminder-1", "jobType": "content.suggest"}',
                        application_properties={"jobType": "content.suggest"},
                        subject="content.suggest",
                    ),
                    datetime.now(UTC) + timedelta(hours=2),
                )
        assert system.jobs_panel is not None
        wait_for(
            "the other jobs to finish",
            lambda: (
                "processing" not in str(system.jobs_panel.read_now().rows)
                and "pending" not in str(system.jobs_panel.read_now().rows)
            ),
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(emulator.console_url)
            page.wait_for_selector("#panel-jobs table.panel tbody tr td")
            page.wait_for_selector("#panel-invocations table.panel tbody tr td")
            page.screenshot(path=str(OUT / "overview.png"), full_page=True)
            chat = "huntaze-jobs/Subscriptions/chat-suggestions"
            page.click(f"tr[data-path='{chat}'] td.dead-letter a")
            page.wait_for_selector(".messages[data-view='dead-letter'] tr.message")
            page.click(".messages tr.message td.seq")
            page.wait_for_selector(".detail .dead-letter-reason")
            page.locator("#main-pane").screenshot(path=str(OUT / "dead-letters.png"))
            page.click("tr[data-path='huntaze-jobs'] td.scheduled a")
            page.wait_for_selector(".messages[data-view='scheduled'] tr.message")
            page.locator("#main-pane").screenshot(path=str(OUT / "scheduled.png"))
            browser.close()
        control.close()
    for name in ("overview", "dead-letters", "scheduled"):
        print(f"screenshots: wrote {OUT / name}.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
