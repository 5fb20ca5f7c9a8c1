"""Reruns are shown, never hidden: with pytest-rerunfailures (`--reruns`), each first
attempt that failed is printed at the end with its traceback and the emulator and host
state the failure report carried, so an intermittent failure can still be diagnosed."""

from __future__ import annotations

import pytest


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    reruns = terminalreporter.stats.get("rerun", [])
    if not reruns:
        return
    terminalreporter.section(f"{len(reruns)} scenario(s) failed first and were rerun", sep="=")
    for report in reruns:
        terminalreporter.section(report.nodeid, sep="-")
        terminalreporter.write_line(str(report.longreprtext)[-6000:])
        for title, content in report.sections:
            if title in ("emulator state", "host triggers") or "log call" in title:
                terminalreporter.write_line(f"--- {title}")
                terminalreporter.write_line(content[-4000:])
