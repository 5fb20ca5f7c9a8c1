"""Import direction, checked on the source (`ast`, nothing is imported or run).

The broker core (`emulator/servicebus/core`), the SQL filter language (`sqlfilter`) and the
topology model they share (`topology.py`) are pure: Service Bus semantics on data, driven
by the caller and by an injected clock. They may not import

- I/O and concurrency runtimes: `socket`, `ssl`, `select`, `selectors`, `asyncio`,
  `socketserver`, `subprocess`, `multiprocessing`, `concurrent`, `signal`, `io`,
  `pathlib`, `shutil`, `tempfile`, `glob`, `fileinput`, `sqlite3`, `mmap`;
- protocols and their libraries: `http`, `urllib.request`, `email`, `smtplib`, `ftplib`,
  `h11`, `httpx`, `aiohttp`, `requests`, `uvicorn`, `fastapi`, `starlette`,
  `cryptography` (TLS and SAS signing are the transport's), `azure` (the SDK), `proton`;
- storage clients: `sqlalchemy`, `psycopg`, `redis`;
- the rest of the emulator: from `emulator.*` only `core`, `sqlfilter` and `topology`
  (and `sqlfilter` / `topology` not even `core`), so the AMQP transport, the admin API,
  config loading (files), auth and the process wrapper depend on the core, never back;
- the harness, the stand-ins and the apps (`harness`, `standins`, `workers`).

Two uses that are I/O without an import are caught too: a call of the builtin `open` and
any `os.` attribute other than `environ` / `getenv` (reading a setting is configuration,
not I/O; `os.open`, `os.system`, `os.listdir` are). `threading` (locks), `time` and
`logging` are allowed: the store is shared by threads, the clock reads time, and filter
errors are logged.

The apps (`workers/`) run on Azure Functions, where neither the harness, the emulator nor
the stand-ins exist: `workers/` may not import `harness`, `emulator` or `standins`.

The harness is generic (any project's apps run under its host, plugin and stack), so
`harness/` may not import `workers`; `harness/system.py` is exempt, being this project's
whole system (`harness up` runs its three apps and its job API). What host and apps must
read alike lives in `functions_shared/`, which imports neither side (nor the emulator or
stand-ins: it ships with the apps).

Imports under `if TYPE_CHECKING:` count: a type-only dependency still points the wrong way.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

IO_AND_PROTOCOLS = (
    "socket",
    "ssl",
    "select",
    "selectors",
    "asyncio",
    "socketserver",
    "subprocess",
    "multiprocessing",
    "concurrent",
    "signal",
    "io",
    "pathlib",
    "shutil",
    "tempfile",
    "glob",
    "fileinput",
    "sqlite3",
    "mmap",
    "http",
    "urllib.request",
    "email",
    "smtplib",
    "ftplib",
    "h11",
    "httpx",
    "aiohttp",
    "requests",
    "uvicorn",
    "fastapi",
    "starlette",
    "cryptography",
    "azure",
    "proton",
    "sqlalchemy",
    "psycopg",
    "redis",
    "harness",
    "standins",
    "workers",
)
OS_ALLOWED = frozenset({"environ", "getenv"})


@dataclass(frozen=True)
class Rule:
    """Modules under `root` may import nothing in `forbidden`, and from `emulator.*` only
    what is in `emulator_allowed` (None: any of the emulator, i.e. no such restriction)."""

    root: str
    forbidden: tuple[str, ...]
    emulator_allowed: tuple[str, ...] | None
    pure: bool
    """Also forbid builtin `open` calls and `os.` attributes other than OS_ALLOWED."""
    exempt: tuple[str, ...] = ()
    """Files under `root` the rule does not apply to (each with its reason in the docstring)."""


PURE_CORE = Rule(
    "emulator/servicebus/core",
    IO_AND_PROTOCOLS,
    (
        "emulator.servicebus.core",
        "emulator.servicebus.sqlfilter",
        "emulator.servicebus.topology",
    ),
    pure=True,
)
PURE_SQLFILTER = Rule(
    "emulator/servicebus/sqlfilter",
    IO_AND_PROTOCOLS,
    ("emulator.servicebus.sqlfilter",),
    pure=True,
)
PURE_TOPOLOGY = Rule(
    "emulator/servicebus/topology.py",
    IO_AND_PROTOCOLS,
    ("emulator.servicebus.topology",),
    pure=True,
)
APPS = Rule("workers", ("harness", "emulator", "standins"), None, pure=False)
GENERIC_HARNESS = Rule("harness", ("workers",), None, pure=False, exempt=("harness/system.py",))
SHARED = Rule("functions_shared", ("harness", "emulator", "standins", "workers"), None, pure=False)
RULES = (PURE_CORE, PURE_SQLFILTER, PURE_TOPOLOGY, APPS, GENERIC_HARNESS, SHARED)


# -- reading imports ---------------------------------------------------------------------------


def module_name(path: Path) -> tuple[str, bool]:
    """(dotted module name, is a package `__init__`) for a file under ROOT."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """Resolve `from <level dots><target> import ...` inside `module`."""
    if level == 0:
        return target or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    if level > 1:
        base = base[: -(level - 1)]
    return ".".join([*base, *([target] if target else [])])


def imported_names(source: str, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, dotted name) of every import; `from X import y` yields X and X.y, since y may
    be a submodule (`from emulator.servicebus import amqp`)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, is_package, node.level, node.module)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def io_without_import(source: str) -> list[tuple[int, str]]:
    """(line, what) for builtin `open(...)` calls and `os.<attr>` beyond OS_ALLOWED."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "open"
        ):
            found.append((node.lineno, "open()"))
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr not in OS_ALLOWED
        ):
            found.append((node.lineno, f"os.{node.attr}"))
    return found


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(rule: Rule, source: str, module: str, is_package: bool) -> list[str]:
    """Readable `line: problem` entries for one module's source under `rule`."""
    problems: list[str] = []
    for line, name in imported_names(source, module, is_package):
        if any(_within(name, bad) for bad in rule.forbidden):
            problems.append(f"{line}: imports {name}")
        elif (
            rule.emulator_allowed is not None
            and _within(name, "emulator")
            and not any(_within(name, ok) for ok in rule.emulator_allowed)
            # `from emulator.servicebus import sqlfilter` names the parent package too
            and not any(_within(ok, name) for ok in rule.emulator_allowed)
        ):
            problems.append(f"{line}: imports {name} (allowed: {rule.emulator_allowed})")
    if rule.pure:
        problems += [f"{line}: uses {what}" for line, what in io_without_import(source)]
    return sorted(set(problems), key=lambda p: (int(p.split(":")[0]), p))


def files_of(rule: Rule) -> list[Path]:
    root = ROOT / rule.root
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    return [f for f in files if str(f.relative_to(ROOT)) not in rule.exempt]


# -- the rules on the tree ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "path"),
    [
        pytest.param(rule, path, id=str(path.relative_to(ROOT)))
        for rule in RULES
        for path in files_of(rule)
    ],
)
def test_imports_point_the_right_way(rule: Rule, path: Path) -> None:
    module, is_package = module_name(path)
    problems = violations(rule, path.read_text(encoding="utf-8"), module, is_package)
    assert not problems, f"{path.relative_to(ROOT)} breaks the {rule.root} rule:\n" + "\n".join(
        problems
    )


def test_every_rule_covers_files() -> None:
    """A moved or renamed folder must not turn a rule into one that checks nothing."""
    assert all(files_of(rule) for rule in RULES)
    assert len(files_of(PURE_CORE)) >= 5 and len(files_of(APPS)) >= 10
    assert len(files_of(GENERIC_HARNESS)) >= 30
    for rule in RULES:
        assert all((ROOT / path).is_file() for path in rule.exempt), rule.exempt


# -- the checker itself --------------------------------------------------------------------------


CORE_MODULE = ("emulator.servicebus.core.store", False)


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import socket", "1: imports socket"),
        ("import asyncio.tasks", "1: imports asyncio.tasks"),
        ("from urllib.request import urlopen", "1: imports urllib.request"),
        ("from sqlalchemy import text", "1: imports sqlalchemy"),
        ("from ..amqp import connection", "1: imports emulator.servicebus.amqp"),
        ("from emulator.servicebus import admin", "1: imports emulator.servicebus.admin"),
        ("from .. import config", "1: imports emulator.servicebus.config"),
        ("from harness.stack import Stack", "1: imports harness"),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import http.client",
            "3: imports http.client",
        ),
        ("data = open('x').read()", "1: uses open()"),
        ("import os\nos.system('ls')", "2: uses os.system"),
    ],
)
def test_the_checker_finds_each_kind_of_violation(source: str, problem: str) -> None:
    found = violations(PURE_CORE, source, *CORE_MODULE)
    assert any(p.startswith(problem) for p in found), found


@pytest.mark.parametrize(
    "source",
    [
        "from ..sqlfilter import compile_filter",
        "from emulator.servicebus import sqlfilter",
        "from ..topology import QueueDescription",
        "from .clock import EmulatorClock",
        "import threading, time, logging",
        "import os\nflag = os.environ.get('X')",
        "from urllib.parse import quote",
    ],
)
def test_the_checker_allows_what_the_core_may_use(source: str) -> None:
    assert violations(PURE_CORE, source, *CORE_MODULE) == []


def test_sqlfilter_may_not_reach_up_into_the_core() -> None:
    found = violations(
        PURE_SQLFILTER, "from ..core import store", "emulator.servicebus.sqlfilter.parser", False
    )
    assert found == [
        "1: imports emulator.servicebus.core (allowed: ('emulator.servicebus.sqlfilter',))",
        "1: imports emulator.servicebus.core.store (allowed: ('emulator.servicebus.sqlfilter',))",
    ]


def test_relative_imports_resolve_from_packages_and_modules() -> None:
    assert imported_names("from . import lexer", "emulator.servicebus.sqlfilter", True) == [
        (1, "emulator.servicebus.sqlfilter"),
        (1, "emulator.servicebus.sqlfilter.lexer"),
    ]
    assert imported_names(
        "from .lexer import tokens", "emulator.servicebus.sqlfilter.parser", False
    )[0] == (1, "emulator.servicebus.sqlfilter.lexer")


def test_apps_may_not_import_harness_emulator_or_standins() -> None:
    source = "from harness.host import x\nimport emulator.servicebus\nfrom standins import ai"
    assert violations(APPS, source, "workers.jobs.function_app", False) == [
        "1: imports harness.host",
        "1: imports harness.host.x",
        "2: imports emulator.servicebus",
        "3: imports standins",
        "3: imports standins.ai",
    ]


def test_the_harness_may_not_import_the_apps() -> None:
    source = "from workers.common.hostjson import apply_overrides\nfrom emulator import x"
    assert violations(GENERIC_HARNESS, source, "harness.host.config", False) == [
        "1: imports workers.common.hostjson",
        "1: imports workers.common.hostjson.apply_overrides",
    ]


def test_shared_code_imports_neither_side() -> None:
    source = "import harness.host\nfrom workers.common import clock"
    assert violations(SHARED, source, "functions_shared.hostjson", False) == [
        "1: imports harness.host",
        "2: imports workers.common",
        "2: imports workers.common.clock",
    ]
