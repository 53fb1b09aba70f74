"""The HTTP benchmark: a real uvicorn process, loaded by ``wrk``, doing 50 ms of work per request
five ways (``benchmarks/http_app.py``): not at all, through backburner, through a hand-written
``asyncio.Queue`` pool, through Starlette's ``BackgroundTasks``, and inline in the request.

Run it as ``.venv/bin/python benchmarks/http.py`` (or ``make bench-http``); ``--quick`` is a
smoke run of about a minute whose figures mean little. It needs ``wrk`` (Debian's package).

Each run of a route starts a fresh uvicorn (one process, ``--loop uvloop --http httptools``,
no access log) on a free loopback port, loads that route with ``wrk -t1 -c64`` (``--threads``,
``--connections``) for ``--duration`` seconds, reads the app's counters, sends SIGTERM at once
and reads the counts the app's shutdown wrote. Of the jobs accepted during the load: ``done``
had finished when the load ended; at SIGTERM the rest either finished during the shutdown, were
named in backburner's shutdown report, or vanished (neither). Every repeat runs every route,
rotating which goes first but keeping ``/enqueue`` and ``/pool`` side by side (each first in
turn); figures are medians of ``--repeats`` (3), ratios the median of the per-repeat ratios,
job counts the sums over the repeats.

A last row measures the loop's health: ``wrk -c1`` on ``/noop`` while 100 sync jobs of 0.5 s run
on backburner's threads (20 of them), against the same with no jobs.
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py: as a script, its folder comes first on sys.path and would shadow
# the standard library's http package for every import below. Look there last instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from core import machine  # noqa: E402

ROOT = HERE.parent
ROUTES = {
    "/noop": "no job",
    "/enqueue": "backburner",
    "/pool": "asyncio.Queue pool",
    "/background": "BackgroundTasks",
    "/inline": "inline await",
}

LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"status_errors": %d, "socket_errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
"""


@dataclass
class Sample:
    """One route, one repeat."""

    route: str
    rps: float  # successful (2xx) responses per second
    p50_ms: float
    p99_ms: float
    refused: int  # non-2xx answers (a full queue's 503)
    socket_errors: int
    accepted: int = 0
    done: int = 0  # finished by the end of the load
    finished: int = 0  # finished between the load's end and the process's end
    reported: int = 0  # named in backburner's shutdown report
    vanished: int = 0  # accepted, and neither finished nor reported


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """``uvicorn benchmarks.http_app:app`` on a free port; stopped by SIGTERM, or killed."""

    def __init__(self, workdir: Path, workers: int) -> None:
        self.port = free_port()
        self.counts_path = workdir / f"counts-{self.port}.json"
        self.log_path = workdir / f"uvicorn-{self.port}.log"
        command = [sys.executable, "-m", "uvicorn", "benchmarks.http_app:app"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"]
        command += ["--log-level", "warning", "--loop", "uvloop", "--http", "httptools"]
        env = {**os.environ, "BENCH_COUNTS": str(self.counts_path), "BENCH_WORKERS": str(workers)}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    log = self.log_path.read_text()
                    raise RuntimeError(f"uvicorn did not start: {log}") from None
                time.sleep(0.05)

    def get(self, path: str, method: str = "GET") -> Any:
        request = urllib.request.Request(f"{self.url}{path}", method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read()
        return json.loads(body) if path.startswith("/counts") else body

    def stop(self) -> dict[str, int]:
        """SIGTERM; wait for the exit; the counts its app wrote on the way out."""
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError("uvicorn did not exit within 60 s of SIGTERM") from None
        counts: dict[str, int] = json.loads(self.counts_path.read_text())
        return counts

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


def wrk(url: str, lua: Path, seconds: int, connections: int, threads: int) -> dict[str, int]:
    # wrk takes whole seconds.
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", str(lua), url]
    out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("WRKJSON "):
            result: dict[str, int] = json.loads(line.removeprefix("WRKJSON "))
            return result
    raise RuntimeError(f"no figures from wrk: {out.stdout}{out.stderr}")


def load(route: str, options: argparse.Namespace, workdir: Path, lua: Path) -> Sample:
    server = Server(workdir, options.job_workers)
    try:
        figures = wrk(
            f"{server.url}{route}", lua, options.duration, options.connections, options.threads
        )
        at_end = server.get("/counts")
        final = server.stop()
    finally:
        server.kill()
    seconds = figures["duration_us"] / 1e6
    ok = figures["requests"] - figures["status_errors"]
    accepted = final["accepted"]
    finished = final["done"] - at_end["done"]
    reported = final["reported"]
    return Sample(
        route=route,
        rps=ok / seconds,
        p50_ms=figures["p50_us"] / 1000,
        p99_ms=figures["p99_us"] / 1000,
        refused=figures["status_errors"],
        socket_errors=figures["socket_errors"],
        accepted=accepted,
        done=at_end["done"],
        finished=finished,
        reported=reported,
        vanished=accepted - final["done"] - reported,
    )


def loop_health(options: argparse.Namespace, workdir: Path, lua: Path) -> tuple[float, float]:
    """p99 of ``/noop`` (ms) with one connection: idle, and while 100 sync jobs of 0.5 s run."""
    server = Server(workdir, options.job_workers)
    try:
        idle = wrk(f"{server.url}/noop", lua, 3, 1, 1)
        server.get("/sleepers?count=100&seconds=0.5", method="POST")
        busy = wrk(f"{server.url}/noop", lua, 3, 1, 1)  # the jobs take 2.5 s on 20 threads
        server.stop()
    finally:
        server.kill()
    return idle["p99_us"] / 1000, busy["p99_us"] / 1000


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def report(samples: list[Sample], health: list[tuple[float, float]], info: dict[str, str]) -> None:
    by_route = {route: [s for s in samples if s.route == route] for route in ROUTES}
    pool, ours, tasks = by_route["/pool"], by_route["/enqueue"], by_route["/background"]

    def ratio(a: list[Sample], b: list[Sample], field: str) -> str:
        values = [getattr(x, field) / getattr(y, field) for x, y in zip(a, b, strict=True)]
        return f"{median(values):.2f}x ({min(values):.2f} to {max(values):.2f})"

    print()
    print(", ".join(f"{key}: {value}" for key, value in info.items()))
    print(f"{len(ours)} repeats; medians; job counts summed over the repeats")
    print()
    print(
        "| route | way | req/s | p50 ms | p99 ms | accepted | done | at SIGTERM: "
        "finished / reported / vanished |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for route, way in ROUTES.items():
        runs = by_route[route]
        refused = sum(s.refused + s.socket_errors for s in runs)
        flag = f" ({refused:,} refused or failed)" if refused else ""
        jobs = (
            "-"
            if route == "/noop"
            else f"{sum(s.finished for s in runs):,} / {sum(s.reported for s in runs):,} / "
            f"**{sum(s.vanished for s in runs):,}**"
        )
        print(
            f"| `{route}` | {way}{flag} | {median([s.rps for s in runs]):,.0f} | "
            f"{median([s.p50_ms for s in runs]):.1f} | {median([s.p99_ms for s in runs]):.1f} | "
            f"{sum(s.accepted for s in runs):,} | {sum(s.done for s in runs):,} | {jobs} |"
        )
    print()
    rps = ratio(ours, pool, "rps")
    p99 = ratio(ours, pool, "p99_ms")
    print(f"backburner / pool: req/s {rps} (target >= 0.95x), p99 {p99} (target <= 1.1x)")
    print(
        f"backburner / BackgroundTasks: req/s {ratio(ours, tasks, 'rps')} (target > 1), "
        f"p99 {ratio(ours, tasks, 'p99_ms')} (target < 1)"
    )
    print(f"backburner vanished {sum(s.vanished for s in ours)} jobs (target 0)")
    if health:
        idle = median([h[0] for h in health])
        busy = median([h[1] for h in health])
        print(
            f"loop health: /noop p99 {busy:.1f} ms while 100 sync jobs of 0.5 s run on 20 threads "
            f"(idle: {idle:.1f} ms; target < 50 ms)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per run")
    parser.add_argument("--connections", type=int, default=64, help="wrk's open connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk's threads")
    parser.add_argument(
        "--job-workers", type=int, default=64, help="jobs run at once by backburner and the pool"
    )
    parser.add_argument("--repeats", type=int, default=3, help="repeats; figures are medians")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s per route, 1 repeat")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every sample here")
    options = parser.parse_args(argv)
    if options.quick:
        options.duration, options.repeats = 2, 1
    info = machine()
    info["job workers"] = str(options.job_workers)
    info["load"] = f"wrk -t{options.threads} -c{options.connections} -d{options.duration}s"
    samples: list[Sample] = []
    health: list[tuple[float, float]] = []
    routes = list(ROUTES)
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        lua = workdir / "report.lua"
        lua.write_text(LUA)
        for repeat in range(options.repeats):
            # Rotate which route goes first, keeping backburner and the pool side by side
            # (in turn first): their ratio is the headline, and the machine's load drifts.
            pair = ["/enqueue", "/pool"] if repeat % 2 == 0 else ["/pool", "/enqueue"]
            others = [route for route in routes if route not in pair]
            at = repeat % (len(others) + 1)
            order = others[at:] + pair + others[:at]
            for route in order:
                sample = load(route, options, workdir, lua)
                samples.append(sample)
                print(
                    f"repeat {repeat + 1} {route}: {sample.rps:,.0f} req/s, p50 "
                    f"{sample.p50_ms:.1f} ms, p99 {sample.p99_ms:.1f} ms, accepted "
                    f"{sample.accepted:,}, vanished {sample.vanished:,}",
                    file=sys.stderr,
                )
            health.append(loop_health(options, workdir, lua))
    report(samples, health, info)
    if options.json:
        options.json.write_text(
            json.dumps(
                {
                    "machine": info,
                    "samples": [s.__dict__ for s in samples],
                    "loop_health_ms": health,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
