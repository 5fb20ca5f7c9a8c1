"""`make images` without an engine: build.sh's logic against a fake docker CLI, the Dockerfiles
and entrypoints (run with fake servers on PATH), the emulator's dependencies, the reaper."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import pytest

from harness.stack import containers
from harness.stack import services as stack_services
from harness.testcontainers_servicebus import ADMIN_PORT, AMQP_PORT, CA_BUNDLE_PATH, CONFIG_PATH

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
BUILD = IMAGES / "build.sh"


def _load(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


reaper = _load(IMAGES / "ryuk" / "reaper.py", "sbh_reaper")
runtime_deps = _load(IMAGES / "servicebus-emulator" / "runtime_deps.py", "sbh_runtime_deps")


def _defaults(script: str) -> dict[str, str]:
    """NAME=${NAME:-value} lines of build.sh."""
    return dict(re.findall(r"^(\w+)=\$\{\w+:-([^}]*)\}$", script, re.MULTILINE))


# -- build.sh against a fake docker CLI -------------------------------------------------------

FAKE_DOCKER = r"""#!/bin/sh
# A docker CLI for build.sh's tests: logs each call; images listed in $FAKE_PRESENT exist,
# those in $FAKE_OURS carry the local-build label; building $FAKE_FAIL fails.
echo "$*" >>"$FAKE_LOG"
has() { case " $1 " in *" $2 "*) return 0 ;; esac; return 1; }
last() { for a in "$@"; do l=$a; done; echo "$l"; }
case $1 in
    version) [ -z "${FAKE_DOWN:-}" ] ;;
    image)
        name=$(last "$@")
        case "$*" in
            *Labels*) has "${FAKE_OURS:-}" "$name" && echo true || echo '<no value>' ;;
            *) has "${FAKE_PRESENT:-}" "$name" ;;
        esac ;;
    build)
        [ "$(last "$@")" = - ] && cat >/dev/null
        while [ "$1" != --tag ]; do shift; done
        if [ "$2" = "${FAKE_FAIL:-}" ]; then echo "step 3: apt-get failed: boom"; exit 1; fi ;;
    import) cat >/dev/null ;;
esac
"""

FAKE_DEBOOTSTRAP = """#!/bin/sh
echo "debootstrap $*" >>"$FAKE_LOG"
mkdir -p "$3/etc/apt/apt.conf.d" "$3/etc/dpkg/dpkg.cfg.d" "$3/var/lib/apt/lists"
"""


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", FAKE_DOCKER), ("debootstrap", FAKE_DEBOOTSTRAP)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return bin_dir


def run_build(
    fake_bin: Path, *, debootstrap: bool = True, **env: str
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    log = fake_bin.parent / "docker.log"
    log.write_text("")
    if not debootstrap:
        (fake_bin / "debootstrap").unlink()
    # No /usr/sbin on PATH: the machine's own debootstrap is not found.
    path = f"{fake_bin}:/usr/bin:/bin"
    full = {"PATH": path, "FAKE_LOG": str(log), "TMPDIR": str(fake_bin.parent), **env}
    done = subprocess.run(
        ["sh", str(BUILD)], env=full, capture_output=True, text=True, timeout=60, check=False
    )
    return done, log.read_text().splitlines()


def test_build_script_is_valid_sh_and_names_what_the_harness_expects() -> None:
    subprocess.run(["sh", "-n", str(BUILD)], check=True)
    defaults = _defaults(BUILD.read_text())
    assert defaults["POSTGRES_LOCAL"] == containers.LOCAL_POSTGRES_IMAGE
    assert defaults["REDIS_LOCAL"] == containers.LOCAL_REDIS_IMAGE
    assert defaults["RYUK_LOCAL"] == containers.LOCAL_RYUK_IMAGE
    assert defaults["EMULATOR_IMAGE"] == containers.LOCAL_EMULATOR_IMAGE
    assert defaults["POSTGRES_UPSTREAM"] == stack_services.POSTGRES_IMAGE
    assert defaults["REDIS_UPSTREAM"] == stack_services.REDIS_IMAGE
    from testcontainers.core.config import TestcontainersConfiguration

    assert defaults["RYUK_UPSTREAM"] == TestcontainersConfiguration.ryuk_image
    assert f"LABEL={containers.LOCAL_BUILD_LABEL}" in BUILD.read_text()
    assert all(containers.is_local_build(name) for name in containers.LOCAL_IMAGES)


def test_build_makes_the_base_once_then_every_image_and_tags_upstream(fake_bin: Path) -> None:
    done, calls = run_build(fake_bin)
    assert done.returncode == 0, done.stderr
    assert any(c.startswith("debootstrap --variant=minbase bookworm ") for c in calls)
    assert any(c.startswith("import ") and c.endswith("- sbh/debian:bookworm") for c in calls)
    built = [c.split("--tag ")[1].split()[0] for c in calls if c.startswith("build ")]
    assert built == [
        "sbh/python:3.11-bookworm",
        containers.LOCAL_POSTGRES_IMAGE,
        containers.LOCAL_REDIS_IMAGE,
        containers.LOCAL_RYUK_IMAGE,
        containers.LOCAL_EMULATOR_IMAGE,
    ]
    assert all("--network host" in c for c in calls if c.startswith("build "))
    tags = [c for c in calls if c.startswith("tag ")]
    assert tags == [
        f"tag {containers.LOCAL_POSTGRES_IMAGE} {stack_services.POSTGRES_IMAGE}",
        f"tag {containers.LOCAL_REDIS_IMAGE} {stack_services.REDIS_IMAGE}",
        f"tag {containers.LOCAL_RYUK_IMAGE} testcontainers/ryuk:0.8.1",
    ]
    assert re.search(r"built sbh/debian:bookworm \(debootstrap \+ import\) in \d", done.stdout)
    assert not list(fake_bin.parent.glob("sbh-base.*")), "the debootstrap root is removed"
    assert not list(fake_bin.parent.glob("sbh-emulator-context.*"))


def test_build_reuses_the_base_image_when_present(fake_bin: Path) -> None:
    done, calls = run_build(fake_bin, FAKE_PRESENT="sbh/debian:bookworm", IMAGES="redis")
    assert done.returncode == 0, done.stderr
    assert not any(c.startswith(("debootstrap", "import")) for c in calls)
    assert "base sbh/debian:bookworm: on the engine, not rebuilt" in done.stdout
    assert (
        next(c for c in calls if c.startswith("build ")).split("--tag ")[1].startswith("sbh/redis")
    )


def test_upstream_names_the_engine_holds_are_left_alone(fake_bin: Path) -> None:
    present = f"sbh/debian:bookworm {stack_services.POSTGRES_IMAGE} {stack_services.REDIS_IMAGE}"
    done, calls = run_build(
        fake_bin,
        FAKE_PRESENT=present,
        FAKE_OURS=stack_services.REDIS_IMAGE,  # an earlier `make images` tagged it: ours
        IMAGES="postgres redis",
    )
    assert done.returncode == 0, done.stderr
    assert [c for c in calls if c.startswith("tag ")] == [
        f"tag {containers.LOCAL_REDIS_IMAGE} {stack_services.REDIS_IMAGE}"
    ]
    assert (
        f"{stack_services.POSTGRES_IMAGE} is on the engine and not ours: left alone (to use "
        f"ours: SBH_POSTGRES_IMAGE={containers.LOCAL_POSTGRES_IMAGE})" in done.stdout
    )
    done, calls = run_build(
        fake_bin, FAKE_PRESENT=present, IMAGES="postgres", IMAGES_TAG_UPSTREAM="0"
    )
    assert done.returncode == 0 and not [c for c in calls if c.startswith("tag ")]
    done, calls = run_build(
        fake_bin, FAKE_PRESENT=present, IMAGES="postgres", IMAGES_TAG_UPSTREAM="1"
    )
    assert [c for c in calls if c.startswith("tag ")] == [
        f"tag {containers.LOCAL_POSTGRES_IMAGE} {stack_services.POSTGRES_IMAGE}"
    ]


def test_emulator_context_carries_the_ca_bundle_and_the_index(fake_bin: Path) -> None:
    ca = fake_bin.parent / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    done, calls = run_build(
        fake_bin,
        FAKE_PRESENT="sbh/debian:bookworm",
        IMAGES="servicebus-emulator",
        IMAGES_CA_BUNDLE=str(ca),
        IMAGES_PIP_INDEX_URL="https://mirror.example/simple",
    )
    assert done.returncode == 0, done.stderr
    build = next(c for c in calls if "--tag sbh/servicebus-emulator" in c)
    assert "-f images/servicebus-emulator/Dockerfile" in build
    assert "PIP_INDEX_URL=https://mirror.example/simple" in build and build.endswith(" -")
    done, _ = run_build(
        fake_bin,
        FAKE_PRESENT="sbh/debian:bookworm",
        IMAGES="servicebus-emulator",
        IMAGES_CA_BUNDLE=str(ca) + ".missing",
    )
    assert done.returncode == 1 and "cannot read IMAGES_CA_BUNDLE=" in done.stderr


@pytest.mark.parametrize(
    ("env", "debootstrap", "message"),
    [
        ({"FAKE_DOWN": "1"}, True, "make images: no Docker engine answers (DOCKER_HOST="),
        ({}, False, "make images: debootstrap is not installed (apt-get install -y debootstrap)"),
        ({"FAKE_PRESENT": "sbh/debian:bookworm", "IMAGES": "mysql"}, True, "unknown image mysql"),
        (
            {"FAKE_PRESENT": "sbh/debian:bookworm", "IMAGES_TAG_UPSTREAM": "maybe"},
            True,
            "IMAGES_TAG_UPSTREAM=maybe: choose auto, 1 or 0",
        ),
        (
            {"FAKE_PRESENT": "sbh/debian:bookworm", "FAKE_FAIL": containers.LOCAL_REDIS_IMAGE},
            True,
            f"make images: building {containers.LOCAL_REDIS_IMAGE} failed",
        ),
    ],
)
def test_build_failures_say_what_and_how(
    fake_bin: Path, env: dict[str, str], debootstrap: bool, message: str
) -> None:
    done, _ = run_build(fake_bin, debootstrap=debootstrap, **env)
    assert done.returncode == 1
    assert message in done.stderr
    if "FAKE_FAIL" in env:
        assert "apt-get failed: boom" in done.stderr, "the build log's tail is shown"


# -- Dockerfiles -----------------------------------------------------------------------------


def _dockerfile(name: str) -> str:
    return (IMAGES / name / "Dockerfile").read_text()


@pytest.mark.parametrize("name", ["python", "postgres", "redis", "ryuk", "servicebus-emulator"])
def test_dockerfiles_build_on_the_local_base_with_the_classic_builder(name: str) -> None:
    text = _dockerfile(name)
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert froms and all(f in ("${BASE_IMAGE}", "${PYTHON_IMAGE}") for f in froms)
    # No BuildKit-only syntax: engines without buildx (Debian's docker.io) build these too.
    assert "--chmod" not in text and "RUN --mount" not in text and "<<" not in text
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.MULTILINE):
        for path in source.split():
            root = ROOT if name == "servicebus-emulator" else IMAGES / name
            if not path.startswith(".build/"):
                assert (root / path).exists(), f"{name}: COPY {path} has no source"


def test_postgres_image_listens_everywhere_and_trusts_logins() -> None:
    text = _dockerfile("postgres")
    assert "listen_addresses = '*'" in text
    assert "local all all trust" in text and "host all all all trust" in text
    assert "USER postgres" in text and "EXPOSE 5432" in text and "STOPSIGNAL SIGINT" in text
    assert "HEALTHCHECK" in text and "pg_isready --host 127.0.0.1" in text


def test_redis_image_and_emulator_image_expose_their_ports_with_healthchecks() -> None:
    redis = _dockerfile("redis")
    assert "EXPOSE 6379" in redis and "redis-cli -h 127.0.0.1 ping" in redis
    emulator = _dockerfile("servicebus-emulator")
    assert f"EXPOSE {AMQP_PORT} {ADMIN_PORT}" in emulator
    assert f"COPY config/Config.json {CONFIG_PATH}" in emulator
    assert f"http://127.0.0.1:{ADMIN_PORT}/health" in emulator
    assert "--without azure-servicebus" in emulator
    assert "COPY --from=deps /opt/sbemu/venv" in emulator, "the CA bundle stays in the deps stage"
    assert (
        os.path.dirname(CA_BUNDLE_PATH)
        in (IMAGES / "servicebus-emulator" / "entrypoint.sh").read_text()
    )


# -- entrypoints, with fake servers on PATH ---------------------------------------------------

RECORDER = """#!/bin/sh
{ printf '%s\\n' "$0 $*"; [ -t 0 ] || cat; } >>"$RECORD"
"""


def run_entrypoint(
    tmp_path: Path, image: str, args: list[str], fakes: list[str], **env: str
) -> tuple[subprocess.CompletedProcess[str], str]:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    for fake in fakes:
        (bin_dir / fake).write_text(RECORDER)
        (bin_dir / fake).chmod(0o755)
    record = tmp_path / "record"
    record.write_text("")
    script = IMAGES / image / "entrypoint.sh"
    assert os.access(script, os.X_OK), f"{script} must be executable (COPY keeps the mode)"
    full = {"PATH": f"{bin_dir}:/usr/bin:/bin", "RECORD": str(record), **env}
    done = subprocess.run(
        [str(script), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return done, record.read_text().replace(str(bin_dir) + "/", "")


def test_postgres_entrypoint_runs_postgres_on_the_baked_cluster(tmp_path: Path) -> None:
    pgdata = tmp_path / "data"
    pgdata.mkdir()
    done, record = run_entrypoint(tmp_path, "postgres", [], ["postgres"], PGDATA=str(pgdata))
    assert done.returncode == 0, done.stderr
    assert record.splitlines()[-1] == f"postgres -D {pgdata}"
    assert "CREATE" not in record, "the default user and database exist already"
    done, record = run_entrypoint(
        tmp_path, "postgres", ["postgres", "-c", "fsync=off"], ["postgres"], PGDATA=str(pgdata)
    )
    assert record.splitlines()[-1] == f"postgres -D {pgdata} -c fsync=off"


def test_postgres_entrypoint_creates_the_user_and_database_once(tmp_path: Path) -> None:
    pgdata = tmp_path / "data"
    pgdata.mkdir()
    env = {"PGDATA": str(pgdata), "POSTGRES_USER": 'app"x', "POSTGRES_DB": "appdb"}
    done, record = run_entrypoint(tmp_path, "postgres", [], ["postgres"], **env)
    assert done.returncode == 0, done.stderr
    assert record.splitlines() == [
        f"postgres --single -D {pgdata} postgres",
        'CREATE ROLE "app""x" SUPERUSER LOGIN;',
        'CREATE DATABASE "appdb" OWNER "app""x";',
        f"postgres -D {pgdata}",
    ]
    done, record = run_entrypoint(tmp_path, "postgres", [], ["postgres"], **env)
    assert record.splitlines() == [f"postgres -D {pgdata}"], "a restart creates nothing again"
    done, record = run_entrypoint(tmp_path, "postgres", ["psql", "-l"], ["postgres", "psql"], **env)
    assert record.splitlines() == ["psql -l"], "another command runs as given"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "redis-server --bind * -::* --protected-mode no --dir /data"),
        (
            ["redis-server", "--requirepass", "pw"],
            "redis-server --bind * -::* --protected-mode no --dir /data --requirepass pw",
        ),
        (
            ["--save", "60", "1"],
            "redis-server --bind * -::* --protected-mode no --dir /data --save 60 1",
        ),
        (["redis-cli", "ping"], "redis-cli ping"),
    ],
)
def test_redis_entrypoint(tmp_path: Path, args: list[str], expected: str) -> None:
    done, record = run_entrypoint(tmp_path, "redis", args, ["redis-server", "redis-cli"])
    assert done.returncode == 0, done.stderr
    assert record.strip() == expected


def test_emulator_entrypoint_matches_the_official_layout(tmp_path: Path) -> None:
    done, record = run_entrypoint(
        tmp_path,
        "servicebus-emulator",
        ["--log-level", "DEBUG"],
        ["python"],
        ACCEPT_EULA="Y",
        SQL_SERVER="sqledge",
        MSSQL_SA_PASSWORD="S3cret-pw",
    )
    assert done.returncode == 0, done.stderr
    assert record.strip() == (
        f"python -m emulator.servicebus --config {CONFIG_PATH} --host 0.0.0.0 --port "
        f"{AMQP_PORT} --admin-port {ADMIN_PORT} --tls-dir {os.path.dirname(CA_BUNDLE_PATH)} "
        "--log-level INFO --log-level DEBUG"
    )
    assert "SQL_SERVER is set but not used" in done.stdout
    assert "MSSQL_SA_PASSWORD is set but not used" in done.stdout
    assert "S3cret-pw" not in done.stdout, "the password is not printed"
    assert "ACCEPT_EULA=Y noted" in done.stdout
    done, record = run_entrypoint(
        tmp_path, "servicebus-emulator", [], ["python"], SBEMU_DATA_DIR="/ServiceBus_Emulator/data"
    )
    assert record.strip().endswith("--data-dir /ServiceBus_Emulator/data")


# -- the emulator's dependencies --------------------------------------------------------------


def test_runtime_deps_are_pyprojects_without_the_sdk() -> None:
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    deps = runtime_deps.runtime_dependencies(ROOT / "pyproject.toml", ["azure_servicebus"])
    assert deps == [d for d in declared if not d.startswith("azure-servicebus")]
    with pytest.raises(ValueError, match="not a requirement"):
        runtime_deps.distribution(">=1")


def test_runtime_deps_cover_every_module_the_emulator_imports() -> None:
    """What the image installs is enough: every third-party import under emulator/."""
    names: set[str] = set()
    for path in (ROOT / "emulator").rglob("*.py"):
        for match in re.finditer(r"^\s*(?:from|import) ([A-Za-z_]\w*)", path.read_text(), re.M):
            names.add(match.group(1))
    third_party = {n for n in names if n not in sys.stdlib_module_names and n != "emulator"}
    third_party.discard("__future__")
    installed = {
        runtime_deps.distribution(d)
        for d in runtime_deps.runtime_dependencies(ROOT / "pyproject.toml", ["azure-servicebus"])
    }
    providers = importlib.metadata.packages_distributions()
    for module in sorted(third_party):
        dists = {runtime_deps.distribution(d) for d in providers.get(module, [])}
        assert dists & installed, f"emulator imports {module} ({dists}), not in the image's deps"


# -- the reaper (Ryuk's protocol) against a fake Docker API -------------------------------------


def test_durations_and_filters() -> None:
    assert reaper.parse_duration("10s") == 10
    assert reaper.parse_duration("1m30s") == 90
    assert reaper.parse_duration("250ms") == 0.25
    assert reaper.parse_duration("3") == 3
    for bad in ("", "ten", "10x", "5s junk"):
        with pytest.raises(ValueError):
            reaper.parse_duration(bad)
    assert reaper.parse_filter("label=a=b&label=c\r\n") == {"label": ["a=b", "c"]}
    for bad in ("", "nonsense"):
        with pytest.raises(ValueError):
            reaper.parse_filter(bad)


class FakeEngine:
    """Answers the Engine API calls pruning makes; records them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[str] = []
        self.objects = {
            "/containers/json": [{"Id": "c1"}, {"Id": "c2"}],
            "/networks": [{"Id": "n1"}],
            "/volumes": {"Volumes": [{"Name": "v1"}]},
            "/images/json": [],
        }
        self.conflicts = {"/networks/n1": 1}  # busy once (a container still attached)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(16)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                method, target = data.split(b" ", 2)[:2]
                conn.sendall(self._answer(method.decode(), target.decode()))

    def _answer(self, method: str, target: str) -> bytes:
        self.calls.append(f"{method} {target}")
        path = target.split("?")[0]
        status, body = 200, b""
        if method == "GET":
            body = json.dumps(self.objects.get(path, [])).encode()
        elif self.conflicts.get(path):
            self.conflicts[path] -= 1
            status, body = 409, b'{"message": "network has active endpoints"}'
        else:
            status = 204
            listing = {"containers": "/containers/json", "networks": "/networks"}.get(
                path.split("/")[1], ""
            )
            if listing:
                ident = path.split("/")[2]
                self.objects[listing] = [o for o in self.objects[listing] if o["Id"] != ident]
            elif path.startswith("/volumes/"):
                self.objects["/volumes"] = {"Volumes": []}
        reason = {200: "OK", 204: "No Content", 409: "Conflict"}[status]
        head = f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\nConnection: close"
        return head.encode() + b"\r\n\r\n" + body

    def close(self) -> None:
        self.server.close()


@contextmanager
def running_reaper(
    tmp_path: Path, **env: str
) -> Iterator[tuple[FakeEngine, object, int, dict[str, object]]]:
    engine = FakeEngine(Path(f"/tmp/sbh-fake-engine-{os.getpid()}-{id(tmp_path)}.sock"))
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    instance = reaper.Reaper(listener, reaper.DockerApi(f"unix://{engine.path}"), env)
    result: dict[str, object] = {}
    thread = threading.Thread(target=lambda: result.update(removed=instance.serve()), daemon=True)
    thread.start()
    try:
        yield engine, instance, port, result
        thread.join(timeout=10)
        assert not thread.is_alive(), "the reaper did not finish"
    finally:
        listener.close()
        engine.close()
        engine.path.unlink(missing_ok=True)


def _client(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    client.settimeout(5)
    return client


def test_reaper_acks_filters_and_prunes_when_the_client_is_gone(tmp_path: Path) -> None:
    with running_reaper(tmp_path, RYUK_RECONNECTION_TIMEOUT="200ms") as (engine, _, port, result):
        client = _client(port)
        client.sendall(b"label=org.testcontainers.session-id=abc\r\n")
        assert client.recv(16) == b"ACK\n"
        client.sendall(b"nonsense\n")  # not key=value
        assert client.recv(16) == b"ERROR\n"
        assert engine.calls == [], "nothing is pruned while a client is connected"
        client.close()
    assert result["removed"] == {"containers": 2, "networks": 1, "volumes": 1, "images": 0}
    filters = json.dumps({"label": ["org.testcontainers.session-id=abc"]})
    from urllib.parse import quote_plus

    assert engine.calls[0] == f"GET /containers/json?all=1&filters={quote_plus(filters)}"
    assert "DELETE /containers/c1?force=1&v=1" in engine.calls
    assert engine.calls.count("DELETE /networks/n1") == 2, "a busy network is retried"
    assert "DELETE /volumes/v1?force=1" in engine.calls


def test_reaper_waits_for_a_reconnection(tmp_path: Path) -> None:
    with running_reaper(tmp_path, RYUK_RECONNECTION_TIMEOUT="1s") as (engine, instance, port, _):
        first = _client(port)
        first.sendall(b"label=s=1\n")
        assert first.recv(16) == b"ACK\n"
        first.close()
        second = _client(port)  # within the reconnection timeout: no prune yet
        second.sendall(b"label=s=1\n")
        assert second.recv(16) == b"ACK\n"
        assert engine.calls == []
        assert instance.filter_sets == [{"label": ["s=1"]}], "the same filter is kept once"
        second.close()
    assert engine.calls and engine.calls[0].startswith("GET /containers/json")


def test_reaper_without_any_client_gives_up_after_the_connection_timeout(tmp_path: Path) -> None:
    with running_reaper(tmp_path, RYUK_CONNECTION_TIMEOUT="100ms") as (engine, _, _, result):
        pass
    assert result["removed"] == {} and engine.calls == []


def test_reaper_prunes_at_once_when_stopped(tmp_path: Path) -> None:
    with running_reaper(tmp_path) as (_, instance, port, result):
        client = _client(port)
        client.sendall(b"label=s=2\n")
        assert client.recv(16) == b"ACK\n"
        instance.stop()  # what SIGTERM does, with the client still connected
    client.close()
    assert result["removed"]["containers"] == 2


def test_reaper_reports_what_it_could_not_remove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_reaper(tmp_path, RYUK_RECONNECTION_TIMEOUT="0s", RYUK_REMOVE_RETRIES="2") as (
        engine,
        _,
        port,
        _,
    ):
        engine.conflicts["/networks/n1"] = 99
        client = _client(port)
        client.sendall(b"label=s=3\n")
        assert client.recv(16) == b"ACK\n"
        client.close()
    assert "could not remove networks: n1: 409" in capsys.readouterr().out
