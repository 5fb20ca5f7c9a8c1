"""The plugin's failure diagnostics: sections on a failed report, reruns printed at the end.

Run through pytester so the hooks act as they do in a user's run; the stack is a stand-in
object, since what is under test is the reporting, not the emulator (its `describe_links`
is tested in tests/servicebus/test_sb_link_report.py).
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
import pytest

class Emulator:
    control_url = "http://127.0.0.1:9"  # nothing listens: the entities call fails
    def describe_links(self):
        return ["conn c1 q: credit=3 delivered=0"]

class Stack:
    emulator = Emulator()

@pytest.fixture
def stack():
    return Stack()
"""


def _project(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makeconftest(CONFTEST)


def test_a_failed_test_reports_the_links_and_survives_a_failing_probe(
    pytester: pytest.Pytester,
) -> None:
    _project(pytester)
    pytester.makepyfile("def test_x(stack):\n    assert False, 'the failure itself'\n")
    result = pytester.runpytest("-p", "no:cacheprovider")  # the plugin loads by entry point
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the failure itself*", "*emulator state*", "*unavailable:*"])


def test_a_rerun_prints_its_first_failure(pytester: pytest.Pytester) -> None:
    _project(pytester)
    pytester.makepyfile(
        """
        attempts = []
        def test_flaky(stack):
            attempts.append(1)
            assert len(attempts) > 1, "first attempt fails"
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--reruns", "1")
    outcomes = result.parseoutcomes()
    assert (outcomes.get("passed"), outcomes.get("rerun")) == (1, 1), outcomes
    result.stdout.fnmatch_lines(
        ["*1 scenario(s) failed first and were rerun*", "*first attempt fails*", "*emulator state*"]
    )
