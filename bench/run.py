#!/usr/bin/env python3
"""Benchmark stompbroker, and optionally other STOMP brokers beside it, in one run.

bench/run.py starts stompbroker from this work tree (twistd, a fresh data directory, a free
loopback port, and a WebSocket listener on another), runs the chosen scenarios with
bench/stompbench.py (a subprocess per scenario; the ws-* ones with bench/wsbench.py, the same
scenarios over ws://), stops it, then runs the same scenarios against each --peer in turn. It
prints a markdown table (median and min-max over --repeat runs per broker) and the broker's CPU
time per delivered message, and keeps every raw JSON line stompbench wrote in --out. Standard
library only.

    python3 bench/run.py --quick                       # smoke run, stompbroker alone
    python3 bench/run.py --peer rabbitmq=127.0.0.1:61623:guest:guest \\
                         --peer activemq=127.0.0.1:61633:admin:admin \\
                         --ws-peer rabbitmq=15674/ws     # RabbitMQ's Web-STOMP for ws-*

bench/README.md explains the scenarios and how to read the figures.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from _report import Record, Results, report
from _scenarios import BY_NAME, SCENARIOS, Scenario

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
STOMPBENCH = BENCH_DIR / "stompbench.py"
WSBENCH = BENCH_DIR / "wsbench.py"
# twistd through this interpreter, so the broker runs on the same Python as the runner.
TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"
SELF = "stompbroker"


@dataclass(frozen=True)
class Target:
    """A broker to measure: where it listens, how to log in, and its PID when we know it."""

    name: str
    host: str
    port: int
    login: str | None = None
    passcode: str | None = None
    pid: int | None = None  # None: stompbench samples the process listening on the port
    ws_port: int | None = None  # STOMP over WebSocket on host:ws_port, at ws_path
    ws_path: str = "/ws"


class BrokerFailed(Exception):
    """The broker could not be started or reached; every scenario of it is recorded failed."""


# ------------------------------------------------------------------ command line


def parse_peer(spec: str) -> Target:
    """Parse NAME=HOST:PORT[:LOGIN:PASSCODE] into a Target."""
    name, sep, rest = spec.partition("=")
    parts = rest.split(":", 3)
    if not sep or not name or len(parts) not in (2, 4) or not parts[1].isdigit():
        raise argparse.ArgumentTypeError(f"{spec!r}: expected NAME=HOST:PORT[:LOGIN:PASSCODE]")
    if name == SELF:
        raise argparse.ArgumentTypeError(f"{name!r} names the broker this runner starts")
    login, passcode = (parts[2], parts[3]) if len(parts) == 4 else (None, None)
    return Target(name, parts[0], int(parts[1]), login, passcode)


def parse_ws_peer(spec: str) -> tuple[str, int, str]:
    """Parse NAME=PORT[/PATH] (a --peer's WebSocket endpoint, path /ws by default)."""
    name, sep, rest = spec.partition("=")
    port, slash, path = rest.partition("/")
    if not sep or not name or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{spec!r}: expected NAME=PORT[/PATH]")
    return name, int(port), slash + path if slash else "/ws"


def with_ws_peers(peers: list[Target], ws: list[tuple[str, int, str]]) -> list[Target]:
    """The peers, each given its --ws-peer endpoint; SystemExit naming an unknown peer."""
    by_name = {name: (port, path) for name, port, path in ws}
    unknown = set(by_name) - {p.name for p in peers}
    if unknown:
        raise SystemExit(f"--ws-peer names no --peer: {', '.join(sorted(unknown))}")
    return [
        replace(p, ws_port=by_name[p.name][0], ws_path=by_name[p.name][1])
        if p.name in by_name
        else p
        for p in peers
    ]


def parse_scenarios(text: str) -> list[Scenario]:
    """Parse a comma-separated list of scenario names ("all" for every one)."""
    if text == "all":
        return list(SCENARIOS)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(BY_NAME)}"
        )
    return [BY_NAME[n] for n in names]


OPTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("--config", {"type": Path, "default": REPO / "conf" / "stompbroker.yaml",
                  "help": "stompbroker's configuration (default: conf/stompbroker.yaml)"}),
    ("--data-dir", {"type": Path, "help": "stompbroker's data directory (default: a fresh "
                    "temporary one, removed afterwards)"}),
    ("--port", {"type": int, "default": 0, "help": "stompbroker's port (default: a free one)"}),
    ("--ws-peer", {"type": parse_ws_peer, "action": "append", "default": [], "help": "the "
                   "WebSocket endpoint of a --peer, on its host, for the ws-* scenarios "
                   "(repeatable; a peer without one skips them)", "metavar": "NAME=PORT[/PATH]"}),
    ("--no-self", {"action": "store_true", "help": "measure only the --peer brokers"}),
    ("--peer", {"type": parse_peer, "action": "append", "default": [], "help": "another broker "
                "(repeatable)", "metavar": "NAME=HOST:PORT[:LOGIN:PASSCODE]"}),
    ("--scenarios", {"type": parse_scenarios, "default": list(SCENARIOS), "metavar": "A,B,...",
                     "help": "scenarios to run (default: all)"}),
    ("--repeat", {"type": int, "help": "runs per scenario and broker; the table shows the "
                  "median (default: 3, with --quick 1)"}),
    ("--warmup", {"type": int, "default": 1, "help": "uncounted runs of every scenario per "
                  "broker before its counted ones, so that a JIT (ActiveMQ's) is warm "
                  "(default: 1; 0: none)"}),
    ("--quick", {"action": "store_true", "help": "small message counts: a smoke run"}),
    ("--out", {"type": Path, "help": "file for the raw JSON lines (default: "
               "bench/results/<time>.jsonl); the report goes beside it as .md"}),
    ("--timeout", {"type": float, "help": "stompbench's bound for one run, seconds (default: "
                   "stompbench's 170, with --quick 60)"}),
    ("--pause", {"type": float, "default": 2.0, "help": "seconds between runs (default: 2)"}),
    ("--quiet-wait", {"type": float, "default": 0.0, "help": "before each run, wait up to this "
                      "many seconds for the machine to be idle (stompbench --quiet-wait)"}),
    ("--bench-args", {"default": "", "help": "more stompbench options for every run, one "
                      'shell-quoted string: --bench-args="--prefetch 1000"'}),
    ("--keep-data", {"action": "store_true",
                     "help": "keep stompbroker's temporary directory (data, twistd.log)"}),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The command line; the epilog lists the scenarios."""
    epilog = "scenarios:\n" + "\n".join(f"  {s.name:26} {s.what}" for s in SCENARIOS)
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for flag, kwargs in OPTIONS:
        p.add_argument(flag, **kwargs)
    return p


# ------------------------------------------------------------------ stompbroker itself


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_answers(host: str, port: int) -> bool:
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def raise_nofile_limit() -> None:
    """Raise our open-file limit to the hard limit; the broker we start inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def twistd_command(config: Path, port: int, ws_port: int, data_dir: Path, log: Path) -> list[str]:
    """The command line that runs stompbroker in the foreground under twistd: STOMP on
    ``port``, STOMP over WebSocket on ``ws_port`` (path /ws; replaces the file's listeners)."""
    twistd = ["--nodaemon", "--no_save", "--pidfile=", f"--logfile={log}"]
    listen = f"tcp:{port}:interface=127.0.0.1"
    listen_ws = f"tcp:{ws_port}:interface=127.0.0.1"
    plugin = ["--config", str(config), "--listen", listen, "--listen-ws", listen_ws]
    plugin += ["--data-dir", str(data_dir)]
    return [sys.executable, "-c", TWISTD, *twistd, "stompbroker", *plugin]


def wait_for_port(proc: subprocess.Popen[bytes], port: int, log: Path, bound: float) -> None:
    """Wait until stompbroker accepts connections; BrokerFailed if it exits or takes too long."""
    deadline = time.monotonic() + bound
    while not port_answers("127.0.0.1", port):
        if proc.poll() is not None:
            raise BrokerFailed(f"twistd exited with {proc.returncode}: {log_tail(log)}")
        if time.monotonic() > deadline:
            raise BrokerFailed(f"port {port} silent after {bound:.0f} s: {log_tail(log)}")
        time.sleep(0.2)


def log_tail(log: Path, lines: int = 3) -> str:
    """The last lines of twistd's log and of its stderr, on one line."""
    tail = []
    for path in (log, log.with_suffix(".stderr")):
        with suppress(OSError):
            tail += path.read_text(errors="replace").splitlines()[-lines:]
    return " | ".join(tail) or "(twistd wrote nothing)"


def stop_process(proc: subprocess.Popen[bytes], bound: float = 30.0) -> None:
    """SIGTERM, then SIGKILL if the process has not exited within bound seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(bound)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def own_broker(args: argparse.Namespace) -> Iterator[tuple[Target, subprocess.Popen[bytes]]]:
    """Run stompbroker from this work tree for the duration of the block."""
    workdir = Path(tempfile.mkdtemp(prefix="stompbroker-bench-"))
    data_dir = args.data_dir.resolve() if args.data_dir else workdir / "data"
    port = args.port or free_port()
    ws_port = free_port()
    while ws_port == port:
        ws_port = free_port()
    log = workdir / "twistd.log"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    cmd = twistd_command(args.config.resolve(), port, ws_port, data_dir, log)
    with (workdir / "twistd.stderr").open("wb") as stderr:  # what fails before logging starts
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL,
                                stdout=stderr, stderr=subprocess.STDOUT)  # fmt: skip
    say(f"{SELF}: pid {proc.pid}, 127.0.0.1:{port}, ws {ws_port}, data {data_dir}, log {log}")
    try:
        wait_for_port(proc, port, log, 60.0)
        wait_for_port(proc, ws_port, log, 10.0)
        yield Target(SELF, "127.0.0.1", port, pid=proc.pid, ws_port=ws_port), proc
    finally:
        stop_process(proc)
        if args.keep_data:
            say(f"{SELF}: kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------ running stompbench


def say(text: str) -> None:
    """Progress goes to stderr; stdout carries only the final table."""
    print(text, file=sys.stderr, flush=True)


def bench_command(
    target: Target, scenario: Scenario, args: argparse.Namespace, out: Path, repeat: int
) -> list[str]:
    """The stompbench (or wsbench) command line for one scenario against one broker."""
    if scenario.transport == "ws":
        cmd = [sys.executable, str(WSBENCH), "--ws-path", target.ws_path]
        port = target.ws_port
    else:
        cmd, port = [sys.executable, str(STOMPBENCH)], target.port
    cmd += [*scenario.args(args.quick), "--host", target.host, "--port", str(port)]
    cmd += ["--label", target.name]
    cmd += ["--repeat", str(repeat), "--pause", str(args.pause), "--out", str(out)]
    if target.login is not None:
        cmd += ["--login", target.login, "--passcode", target.passcode or ""]
    if target.pid is not None:
        cmd += ["--broker-pid", str(target.pid)]
    if args.timeout:
        cmd += ["--timeout", str(args.timeout)]
    if args.quiet_wait:
        cmd += ["--quiet-wait", str(args.quiet_wait)]
    return cmd + shlex.split(args.bench_args)


def run_bounded(cmd: Sequence[str], bound: float) -> tuple[int, list[str], bool]:
    """Run cmd in its own process group, echoing its human lines to stderr.

    Returns the exit code, the JSON lines it printed, and whether it had to be killed
    after bound seconds."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        cwd=REPO,
    )
    expired = threading.Event()

    def kill_group() -> None:
        expired.set()
        with suppress(ProcessLookupError):  # the group is gone already
            os.killpg(proc.pid, signal.SIGKILL)

    timer = threading.Timer(bound, kill_group)
    timer.start()
    json_lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                json_lines.append(line)
            else:
                sys.stderr.write("    " + line)
        return proc.wait(), json_lines, expired.is_set()
    finally:
        timer.cancel()
        if proc.poll() is None:
            kill_group()
            proc.wait()


def failure(target: Target, scenario: Scenario, error: str) -> Record:
    """A record standing for a run that produced no result of its own."""
    return {
        "tool": "bench/run.py",
        "label": target.name,
        "target": f"{target.host}:{target.port}",
        "scenario": scenario.name,
        "run_scenario": scenario.name,
        "complete": False,
        "error": error,
    }


def json_records(lines: Sequence[str]) -> list[Record]:
    """The JSON objects among lines (anything else is skipped)."""
    records = []
    for line in lines:
        with suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                records.append(obj)
    return records


def run_scenario(
    target: Target, scenario: Scenario, args: argparse.Namespace, repeat: int | None = None
) -> list[Record]:
    """Run one scenario --repeat times (or ``repeat``) against one broker; a record per run."""
    repeat = args.repeat if repeat is None else repeat
    say(f"== {target.name}: {scenario.name} ({repeat} run(s))")
    per_run = (args.timeout or 170.0) + args.pause + args.quiet_wait + 30.0
    with tempfile.TemporaryDirectory(prefix="stompbench-") as tmp:
        out = Path(tmp) / "runs.jsonl"
        rc, printed, expired = run_bounded(
            bench_command(target, scenario, args, out, repeat), per_run * repeat + 30.0
        )
        records = json_records(out.read_text().splitlines()) if out.exists() else []
    # stompbench prints a run that raised (no "result") but does not write it to --out
    records += [r for r in json_records(printed) if "result" not in r]
    why = "killed at the runner's bound" if expired else f"stompbench exited with {rc}"
    records += [failure(target, scenario, why)] * max(0, repeat - len(records))
    for r in records:
        r["run_scenario"] = scenario.name
    return records


def run_broker(
    target: Target,
    args: argparse.Namespace,
    sink: Results,
    proc: subprocess.Popen[bytes] | None = None,
) -> None:
    """Run every chosen scenario against one broker, broker failures included; first the
    --warmup runs of each, not counted."""
    if args.warmup and not args.quick:
        say(f"== {target.name}: warming up ({args.warmup} uncounted run(s) per scenario)")
        for scenario in args.scenarios:
            if scenario.transport != "ws" or target.ws_port is not None:
                run_scenario(target, scenario, args, args.warmup)
    for scenario in args.scenarios:
        if scenario.transport == "ws" and target.ws_port is None:
            say(f"== {target.name}: {scenario.name} not run (no --ws-peer endpoint)")
        elif proc is not None and proc.poll() is not None:
            error = f"{SELF} exited with {proc.returncode} before this scenario"
            sink.add(target.name, [failure(target, scenario, error)] * args.repeat)
        elif proc is None and not port_answers(target.host, target.port):
            error = f"nothing answers on {target.host}:{target.port}"
            sink.add(target.name, [failure(target, scenario, error)] * args.repeat)
        else:
            sink.add(target.name, run_scenario(target, scenario, args))


def fail_broker(name: str, error: str, args: argparse.Namespace, sink: Results) -> None:
    """Record every scenario of a broker that could not be started as failed."""
    say(f"{name}: {error}")
    target = Target(name, "127.0.0.1", 0)
    for scenario in args.scenarios:
        sink.add(name, [failure(target, scenario, error)] * args.repeat)


# ------------------------------------------------------------------ main


def default_out() -> Path:
    """bench/results/<local time>.jsonl (bench/.gitignore keeps results/ out of git)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return BENCH_DIR / "results" / f"{stamp}.jsonl"


def headings(args: argparse.Namespace) -> tuple[str, str]:
    """The report's title and the line saying how it was measured."""
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    mode = "--quick smoke run (the figures mean nothing)" if args.quick else "full-size run"
    about = (
        f"{mode}; {args.repeat} run(s) per cell: median (min-max) of the complete ones; "
        f"{os.cpu_count()} CPUs; stompbroker config {args.config}; raw JSON lines: {args.out}"
    )
    return f"## stompbench, {now}", about


def measure(args: argparse.Namespace, res: Results) -> None:
    """stompbroker first (unless --no-self), then each peer, broker after broker."""
    if not args.no_self:
        try:
            with own_broker(args) as (target, proc):
                run_broker(target, args, res, proc)
        except BrokerFailed as e:
            fail_broker(SELF, f"did not start: {e}", args, res)
    for peer in with_ws_peers(args.peer, args.ws_peer):
        run_broker(peer, args, res)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 0 when every run completed, 1 when some failed."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.no_self and not args.peer:
        parser.error("--no-self needs at least one --peer")
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.quick and not args.timeout:
        args.timeout = 60.0
    args.out = (args.out or default_out()).resolve()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the broker
    raise_nofile_limit()
    res = Results(args.out)
    measure(args, res)
    text = report(res, args.scenarios, *headings(args))
    args.out.with_suffix(".md").write_text(text)
    print(text)
    say(f"raw JSON lines: {args.out}; table: {args.out.with_suffix('.md')}")
    complete = all(r.get("complete") for rs in res.cells.values() for r in rs)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
