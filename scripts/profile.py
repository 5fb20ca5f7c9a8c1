"""`make profile`: CPU seconds per completed job, per component of the local system.

Each run starts the system as `harness up` does (host processes, every port chosen by the
kernel), drives it with Locust (`-f load/`, a fixed, moderate number of users for a fixed
time, then a drain until every job has ended and the events are consumed), and reads
CPU time before and after the window:

* the emulator, the job API and each stand-in are threads of this one process, so each
  is read from /proc/self/task/<native_id>/stat and named by its thread's name;
* each worker app's host process from /proc/<pid>/stat, Locust from its rusage.

Runs repeat (`--repeats`, median taken) because the machine is small and shared. With
`--baseline REF` the same runs are made, interleaved, on that commit's tree (extracted with
`git archive`, imported first through PYTHONPATH): before/after always come from one
invocation, never from old numbers. Locust's files are this tree's for both, so the load
is the same. `--hot-spots` adds one run under py-spy (`record --format speedscope` of every
process; sampling costs CPU, so that run's figures are not used) and prints the top
functions per component. Results go to `--out` as JSON and markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
WINDOW_START = "=== profile window start ==="
WINDOW_END = "=== profile window end ==="
# Thread name prefixes of the harness process → component (the job API's thread was
# `standin-uvicorn` before it was named; a baseline tree may still call it that).
THREAD_COMPONENTS = (
    ("sbemu-", "emulator"),
    ("job-api", "job API"),
    ("standin-uvicorn", "job API"),
    ("ai-standin", "AI stand-in"),
    ("signalr-standin", "SignalR stand-in"),
    ("webhook-standin", "webhook stand-in"),
    ("mail-standin", "SMTP stand-in"),
    ("relay-", "host output relay"),
    ("console-query", "console jobs panel"),
    ("MainThread", "harness main thread"),
)
# Frames on top of a thread that waits (py-spy --nonblocking counts some waits as active):
# left out, so the percentages are of the samples where the component worked.
IDLE_FRAMES = frozenset(
    {"select", "EpollSelector.select", "poll", "wait", "Condition.wait", "accept", "_worker"}
    | {"SyncStream.read", "_serve", "recv", "recv_into", "sleep"}
)
# Frames under every sample of a thread or loop: no news in the inclusive list.
PLUMBING_FRAMES = frozenset(
    {"Thread.run", "Thread._bootstrap", "Thread._bootstrap_inner", "BaseEventLoop.run_forever"}
    | {"BaseEventLoop._run_once", "Handle._run", "_LoopThread._run", "run", "Runner.run"}
    | {"BaseEventLoop.run_until_complete", "ServerThread._run", "ServiceBusEmulator._run"}
)
PENDING_JOBS = "SELECT count(*) FROM jobs WHERE status IN ('pending', 'processing')"
COMPLETED_JOBS = "SELECT count(*) FROM jobs WHERE status = 'completed'"


# -- CPU readings --------------------------------------------------------------------------


def _stat_seconds(path: str) -> float:
    """utime + stime of a /proc stat file, in seconds (fields after the `(comm)`)."""
    with open(path) as f:
        text = f.read()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def thread_component(name: str) -> str:
    for prefix, component in THREAD_COMPONENTS:
        if name.startswith(prefix):
            return component
    return "other threads"


def read_threads() -> dict[int, tuple[str, float]]:
    """CPU seconds of each live thread of this process: native id → (name, seconds)."""
    out: dict[int, tuple[str, float]] = {}
    for thread in threading.enumerate():
        tid = thread.native_id
        if tid is None:
            continue
        with contextlib.suppress(OSError):
            out[tid] = (thread.name, _stat_seconds(f"/proc/self/task/{tid}/stat"))
    return out


def process_seconds(pid: int) -> float:
    return _stat_seconds(f"/proc/{pid}/stat")


# -- one run (a child process: its own system, its own tree on PYTHONPATH) ------------------


def single_run(args: argparse.Namespace) -> dict[str, Any]:
    """Start the system, run Locust, drain, and return the CPU figures of the window."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)-32s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stdout,
    )
    # As `harness up` sets them (harness/cli.py), so the log is the one a user sees.
    logging.getLogger("azure").setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    import sqlalchemy

    from emulator.servicebus.admin.control_client import ControlClient
    from harness.stack.services import sync_url
    from harness.system import LocalSystem, SystemPorts

    system = LocalSystem(processes=True, ports=SystemPorts(0, 0, 0)).start()
    try:
        assert system.stack is not None and system.api is not None
        assert system.stack.emulator is not None, "the profile needs the local emulator"
        engine = sqlalchemy.create_engine(sync_url(system.stack.database_url), pool_size=1)
        control = ControlClient(system.stack.emulator.control_url)
        hosts = {name: p.pid for name, p in system.host_processes.items() if p.pid}
        _wait_quiet(engine, control, timeout=30)
        done_before = _scalar(engine, COMPLETED_JOBS)
        threads_before = read_threads()
        own_before = process_seconds(os.getpid())
        hosts_before = {name: process_seconds(pid) for name, pid in hosts.items()}
        started = time.monotonic()
        print(WINDOW_START, flush=True)
        spies = _start_spies(args, hosts) if args.spy_dir else []
        locust_seconds, locust_rc = _run_locust(args, system.api.url)
        drained = _wait_quiet(engine, control, timeout=args.drain_timeout)
        elapsed = time.monotonic() - started
        hosts_after = {name: process_seconds(pid) for name, pid in hosts.items()}
        own_after = process_seconds(os.getpid())
        threads_after = read_threads()
        print(WINDOW_END, flush=True)
        for spy in spies:
            spy.wait()
        completed = _scalar(engine, COMPLETED_JOBS) - done_before
        not_ended = _scalar(engine, PENDING_JOBS)
        control.close()
        engine.dispose()
    finally:
        system.stop()
    components: dict[str, float] = defaultdict(float)
    threads: dict[str, float] = defaultdict(float)
    for tid, (name, after) in threads_after.items():
        before = threads_before.get(tid, (name, 0.0))[1]
        components[thread_component(name)] += after - before
        threads[name] += after - before
    # Threads that ended inside the window took their counts with them: the process's
    # total less its live threads is what they spent.
    components["ended threads"] = max(
        0.0,
        (own_after - own_before)
        - sum(
            after - threads_before.get(t, (n, 0.0))[1] for t, (n, after) in threads_after.items()
        ),
    )
    for name in hosts:
        components[f"{name} host"] = hosts_after[name] - hosts_before[name]
    components["Locust"] = locust_seconds
    return {
        "completed_jobs": completed,
        "not_ended_jobs": not_ended,
        "drained": drained,
        "window_s": round(elapsed, 1),
        "locust_exit_code": locust_rc,
        "harness_process_s": round(own_after - own_before, 2),
        "cpu_s": {k: round(v, 3) for k, v in components.items()},
        "threads_cpu_s": {k: round(v, 3) for k, v in sorted(threads.items()) if v > 0},
    }


def _scalar(engine: Any, sql: str) -> int:
    import sqlalchemy

    try:
        with engine.connect() as conn:
            return int(conn.execute(sqlalchemy.text(sql)).scalar() or 0)
    except sqlalchemy.exc.ProgrammingError:  # the apps have not created the table yet
        return 0


def _wait_quiet(engine: Any, control: Any, *, timeout: float) -> bool:
    """Every job ended and every subscription empty (the notify app consumed all events)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        active = sum(
            sub["counts"]["active"]
            for topic in control.entities()["topics"]
            for sub in topic["subscriptions"]
            if sub["name"] != "unrouted"
        )
        if active == 0 and _scalar(engine, PENDING_JOBS) == 0:
            return True
        time.sleep(0.5)  # a tool's poll of another system's state, not a test's wait
    return False


def _run_locust(args: argparse.Namespace, api_url: str) -> tuple[float, int]:
    """Locust headless on this tree's `load/`; its CPU from its rusage when it is reaped."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    command = [
        str(Path(sys.executable).with_name("locust")),
        "-f",
        str(ROOT / "load"),
        "--headless",
        "--host",
        api_url,
        "-u",
        str(args.users),
        "-r",
        str(args.spawn_rate),
        "-t",
        f"{args.duration}s",
        "--stop-timeout",
        "60",
        "--only-summary",
    ]
    with open(args.locust_log, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, process.returncode


class _Spy:
    def __init__(self, name: str, pid: int, out: Path, seconds: int) -> None:
        self.name = name
        self.path = out
        command = ["py-spy", "record", "--format", "speedscope", "--rate", "50"]
        command += ["--nonblocking", "--duration", str(seconds), "--pid", str(pid)]
        command += ["--output", str(out)]
        py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
        command[0] = py_spy
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def wait(self) -> None:
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=10)


def _start_spies(args: argparse.Namespace, hosts: dict[str, int]) -> list[_Spy]:
    spy_dir = Path(args.spy_dir)
    spy_dir.mkdir(parents=True, exist_ok=True)
    seconds = args.duration
    (spy_dir / "threads.json").write_text(
        json.dumps({str(t.native_id): t.name for t in threading.enumerate()})
    )
    spies = [_Spy("harness", os.getpid(), spy_dir / "harness.speedscope.json", seconds)]
    for name, pid in hosts.items():
        spies.append(_Spy(name, pid, spy_dir / f"{name}.speedscope.json", seconds))
    return spies


# -- hot spots from speedscope files --------------------------------------------------------


def hot_spots(spy_dir: Path, top: int) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """Per component: the functions with the most samples on top (self) and on the stack."""
    names: dict[str, str] = {}
    with contextlib.suppress(OSError, ValueError):
        names = json.loads((spy_dir / "threads.json").read_text())
    out: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for path in sorted(spy_dir.glob("*.speedscope.json")):
        process = path.name.removesuffix(".speedscope.json")
        data = json.loads(path.read_text())
        frames = [f"{f['name']} ({_short(f.get('file', ''))})" for f in data["shared"]["frames"]]
        per: dict[str, tuple[Counter[str], Counter[str], list[float]]] = {}
        for profile in data["profiles"]:
            component = (
                f"{process} host" if process != "harness" else _spy_component(profile, names)
            )
            own, total, count = per.setdefault(component, (Counter(), Counter(), [0.0]))
            for stack, weight in zip(profile["samples"], profile["weights"], strict=False):
                if not stack or data["shared"]["frames"][stack[-1]]["name"] in IDLE_FRAMES:
                    continue
                count[0] += weight
                own[frames[stack[-1]]] += weight
                for frame in {frames[i] for i in stack}:
                    if frame.split(" ")[0] not in PLUMBING_FRAMES:
                        total[frame] += weight
        for component, (own, total, count) in per.items():
            n = max(count[0], 1e-9)
            out[component] = {
                "self": [(f, round(100 * w / n, 1)) for f, w in own.most_common(top)],
                "total": [(f, round(100 * w / n, 1)) for f, w in total.most_common(top)],
            }
    return out


def _spy_component(profile: dict[str, Any], names: dict[str, str]) -> str:
    """py-spy names a profile `Process P Thread T "name"`; T is the native id."""
    text = profile.get("name", "")
    quoted = re.search(r'"([^"]+)"', text)
    if quoted:
        return thread_component(quoted.group(1))
    tid = re.search(r"Thread (\d+)", text)
    return thread_component(names.get(tid.group(1), "") if tid else "")


def _short(path: str) -> str:
    for marker in ("site-packages/", str(ROOT) + "/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return Path(path).name


# -- the orchestrator -------------------------------------------------------------------------


@contextlib.contextmanager
def baseline_tree(ref: str) -> Iterator[Path]:
    """That commit's files in a temporary folder (no worktree: the checkout is shared)."""
    folder = Path(tempfile.mkdtemp(prefix="sbh-profile-baseline-"))
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", ref],
            cwd=ROOT,
            check=True,
            capture_output=True,
        ).stdout
        with tempfile.TemporaryFile() as tmp:
            tmp.write(archive)
            tmp.seek(0)
            with tarfile.open(fileobj=tmp) as tar:
                tar.extractall(folder, filter="data")
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _child(
    args: argparse.Namespace, tree: Path, out_dir: Path, label: str, spy_dir: Path | None
) -> dict[str, Any]:
    result_path = out_dir / f"{label}.json"
    log_path = out_dir / f"{label}.log"
    command = [sys.executable, str(Path(__file__).resolve()), "--single", str(result_path)]
    command += ["--users", str(args.users), "--spawn-rate", str(args.spawn_rate)]
    command += ["--duration", str(args.duration), "--drain-timeout", str(args.drain_timeout)]
    command += ["--locust-log", str(out_dir / f"{label}.locust.log")]
    if spy_dir is not None:
        command += ["--spy-dir", str(spy_dir)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    started = time.monotonic()
    with open(log_path, "w") as log:
        rc = subprocess.run(command, cwd=tree, env=env, stdout=log, stderr=log).returncode
    if rc != 0 or not result_path.exists():
        tail = log_path.read_text().splitlines()[-15:]
        raise SystemExit(f"run {label} failed (exit {rc}); last lines:\n" + "\n".join(tail))
    result = json.loads(result_path.read_text())
    result.update(log_summary(log_path, result["window_s"]))
    print(
        f"  {label}: {result['completed_jobs']} jobs in {result['window_s']} s "
        f"({time.monotonic() - started:.0f} s with start/stop), "
        f"{result['log_lines_per_min']} log lines/min",
        flush=True,
    )
    return result


def log_summary(path: Path, window_s: float) -> dict[str, Any]:
    """Lines logged inside the window, and the most repeated ones (digits and ids folded)."""
    lines: list[str] = []
    inside = False
    for line in path.read_text(errors="replace").splitlines():
        if WINDOW_START in line:
            inside = True
        elif WINDOW_END in line:
            break
        elif inside:
            lines.append(line)
    shapes: Counter[str] = Counter()
    for line in lines:
        text = re.sub(r"^\[[^\]]+\]\s*", "", line)
        text = re.sub(r"^\S+ \S+ \S+\s+", "", text)  # time, level, logger
        text = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27,}|creator-load-\w+|\d+(\.\d+)?", "#", text)
        shapes[text[:90]] += 1
    return {
        "log_lines": len(lines),
        "log_lines_per_min": round(len(lines) * 60 / max(window_s, 1e-9)),
        "top_log_lines": shapes.most_common(6),
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the repeats: CPU ms per completed job per component, and log lines."""
    components = sorted({c for r in runs for c in r["cpu_s"]}, key=_component_order)
    per_job: dict[str, float] = {}
    for component in components:
        values = [1000 * r["cpu_s"].get(component, 0.0) / max(r["completed_jobs"], 1) for r in runs]
        per_job[component] = round(statistics.median(values), 2)
    totals = [1000 * sum(r["cpu_s"].values()) / max(r["completed_jobs"], 1) for r in runs]
    return {
        "runs": len(runs),
        "completed_jobs": statistics.median(r["completed_jobs"] for r in runs),
        "cpu_ms_per_job": per_job,
        "total_cpu_ms_per_job": round(statistics.median(totals), 1),
        "log_lines_per_min": statistics.median(r["log_lines_per_min"] for r in runs),
        "log_lines_per_job": round(
            statistics.median(r["log_lines"] / max(r["completed_jobs"], 1) for r in runs), 2
        ),
    }


def _component_order(name: str) -> tuple[int, str]:
    order = ["emulator", "job API", "video host", "jobs host", "notify host", "Locust"]
    return (order.index(name) if name in order else len(order), name)


def markdown(report: dict[str, Any]) -> str:
    variants = list(report["variants"])
    head = "| component | " + " | ".join(f"{v} ms/job" for v in variants) + " |"
    if len(variants) == 2:
        head += " change |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    summaries = [report["variants"][v]["summary"] for v in variants]
    components = sorted({c for s in summaries for c in s["cpu_ms_per_job"]}, key=_component_order)
    rows = [(c, [s["cpu_ms_per_job"].get(c, 0.0) for s in summaries]) for c in components]
    rows.append(("**total**", [s["total_cpu_ms_per_job"] for s in summaries]))
    rows.append(("log lines / min", [s["log_lines_per_min"] for s in summaries]))
    rows.append(("log lines / job", [s["log_lines_per_job"] for s in summaries]))
    rows.append(("completed jobs (median)", [s["completed_jobs"] for s in summaries]))
    for name, values in rows:
        cells = " | ".join(f"{v:g}" for v in values)
        change = ""
        if len(values) == 2:
            change = f" {(values[1] - values[0]) / values[0]:+.0%} |" if values[0] else " |"
        lines.append(f"| {name} | {cells} |{change}")
    config = report["config"]
    text = (
        f"CPU ms per completed job, median of {config['repeats']} run(s) each: "
        f"{config['users']} Locust users for {config['duration']} s, then drained.\n\n"
        + "\n".join(lines)
        + "\n"
    )
    for component, spots in report.get("hot_spots", {}).items():
        text += f"\n### {component}: % of its working samples\n\non top (self):\n\n"
        text += "\n".join(f"- {pct}% {frame}" for frame, pct in spots["self"]) + "\n"
        text += "\non the stack (inclusive):\n\n"
        text += "\n".join(f"- {pct}% {frame}" for frame, pct in spots["total"]) + "\n"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/profile.py", description=__doc__)
    parser.add_argument("--users", type=int, default=40, help="Locust users (default 40)")
    parser.add_argument("--spawn-rate", type=float, default=10.0)
    parser.add_argument("--duration", type=int, default=45, help="seconds of load (45)")
    parser.add_argument("--drain-timeout", type=float, default=90.0)
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (median)")
    parser.add_argument("--baseline", metavar="REF", help="also profile this commit, interleaved")
    parser.add_argument("--hot-spots", action="store_true", help="one more run under py-spy")
    parser.add_argument("--top", type=int, default=8, help="hot spots per component")
    parser.add_argument("--out", default=str(ROOT / ".data" / "profile"), help="output folder")
    parser.add_argument("--single", help=argparse.SUPPRESS)
    parser.add_argument("--spy-dir", help=argparse.SUPPRESS)
    parser.add_argument("--locust-log", default=os.devnull, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.single:
        result = single_run(args)
        Path(args.single).write_text(json.dumps(result, indent=2))
        return 0
    out_dir = Path(args.out).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    config = {k: getattr(args, k) for k in ("users", "spawn_rate", "duration", "repeats")}
    report: dict[str, Any] = {"config": {**config, "baseline": args.baseline}, "variants": {}}
    with contextlib.ExitStack() as stack:
        trees = {"current": ROOT}
        if args.baseline:
            trees = {f"baseline {args.baseline}": stack.enter_context(baseline_tree(args.baseline))}
            trees["current"] = ROOT
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in trees}
        for repeat in range(1, args.repeats + 1):
            for variant, tree in trees.items():
                label = f"{re.sub(r'[^A-Za-z0-9]+', '-', variant)}-{repeat}"
                print(f"run {repeat}/{args.repeats} {variant}", flush=True)
                runs[variant].append(_child(args, tree, out_dir, label, None))
        for variant, results in runs.items():
            report["variants"][variant] = {"summary": summarize(results), "runs": results}
        if args.hot_spots:
            spy_dir = out_dir / "py-spy"
            shutil.rmtree(spy_dir, ignore_errors=True)
            print("hot-spot run (py-spy; its CPU figures are not used)", flush=True)
            _child(args, ROOT, out_dir, "hot-spots", spy_dir)
            report["hot_spots"] = hot_spots(spy_dir, args.top)
    (out_dir / "profile.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (out_dir / "profile.md").write_text(text)
    print("\n" + text)
    print(f"written: {out_dir / 'profile.json'}, {out_dir / 'profile.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
