"""Mutation proof: each known defect, put back, makes the scenarios about it fail.

Every mutant in `scenarios/mutants.py` runs its scenarios in a pytest process of its own
(`-p scenarios.mutants --mutant NAME`), and this test asserts that each of them FAILED —
not errored, not skipped, not "not found". The same scenarios pass on the real code in
`make test-integration`, so together they show each scenario can fail, and on what.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from harness.stack.containers import LOCAL_IMAGES, REQUIRE_ENGINE_ENV, engine_images_problem
from scenarios.mutants import MUTANTS

ROOT = Path(__file__).resolve().parents[1]


def _outcomes(report: Path) -> dict[str, str]:
    """Test name → passed / failed / error / skipped, from a JUnit XML report."""
    outcomes = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = [child.tag for child in case]
        outcome = next((k for k in ("failure", "error", "skipped") if k in kinds), "passed")
        outcomes[name] = {"failure": "failed"}.get(outcome, outcome)
    return outcomes


STACK_ENV = "SBH_MUTANTS_STACK"
"""Set to a stack name (`make test-integration-containers` sets `containers`): only the
mutants whose scenarios need that stack run. Unset: all, those skipped whose stack is absent."""


def _selected() -> list[str]:
    only = os.environ.get(STACK_ENV, "").strip()
    return sorted(n for n, m in MUTANTS.items() if not only or m.stack == only)


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", _selected())
def test_the_scenarios_catch_the_mutant(name: str, tmp_path: Path) -> None:
    mutant = MUTANTS[name]
    stack_args = [f"--stack={mutant.stack}"] if mutant.stack else []
    if mutant.stack == "containers":
        problem = engine_images_problem(LOCAL_IMAGES[:3])
        if problem and os.environ.get(REQUIRE_ENGINE_ENV):
            pytest.fail(f"{name} needs --stack containers: {problem}")
        if problem:
            pytest.skip(f"{name} needs --stack containers: {problem}")
    report = tmp_path / "report.xml"
    command = [
        sys.executable, "-m", "pytest", "-p", "scenarios.mutants", "--mutant", name,
        "-q", "-p", "no:cacheprovider", "-p", "no:randomly", f"--junitxml={report}",
        *stack_args, *mutant.catches,
    ]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=580)
    tail = "\n".join(run.stdout.splitlines()[-15:])
    assert run.returncode == 1, f"expected failing tests (exit 1), got {run.returncode}:\n{tail}"
    outcomes = _outcomes(report)
    assert len(outcomes) == len(mutant.catches), f"ran {sorted(outcomes)}:\n{tail}"
    not_failed = {test: outcome for test, outcome in outcomes.items() if outcome != "failed"}
    assert not not_failed, f"{name} ({mutant.defect}) was not caught by: {not_failed}\n{tail}"
