"""The HTTP benchmark: a real uvicorn process, loaded by ``wrk``, doing 50 ms of work per request
eight ways (``benchmarks/http_app.py``): not at all, through backburner (in memory, in memory
after one ``await asyncio.sleep(0)``, and with a journal: each request awaits ``aenqueue``,
its job committed), through two hand-written ``asyncio.Queue`` pools (one whose workers await
each job inline, one that runs each job as its own task in the context captured at enqueue),
through Starlette's ``BackgroundTasks``, and inline in the request.

Run it as ``.venv/bin/python benchmarks/http.py`` (or ``make bench-http``); ``--quick`` is a
smoke run of about a minute whose figures mean little. It needs ``wrk`` (Debian's package).

Each run of a route starts a fresh uvicorn (one process, ``--loop asyncio --http httptools``,
``--loop uvloop`` on request, no access log) on a free loopback port, loads that route with
``wrk -t1 -c64`` (``--threads``, ``--connections``) for ``--duration`` seconds, reads the app's
counters, the server's RSS (``VmRSS`` in ``/proc/<pid>/status``) and its garbage collections
(``/gc``, read before and after the load), sends SIGTERM at once and reads the counts the app's
shutdown wrote. Latency percentiles (50, 99, 99.9) are wrk's, printed by a ``done()`` Lua hook.
Of the jobs accepted during the load: ``done`` had finished when the load ended; at SIGTERM the
rest either finished during the shutdown, were named in backburner's shutdown report, or
vanished (neither). Every repeat runs every route, rotating which goes first but keeping
``/enqueue`` and ``/taskpool`` side by side (each first in turn); figures are medians of
``--repeats`` (5) with their range, ratios the median of the per-repeat ratios, job counts the
sums over the repeats.

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
import statistics  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from _loaded_server import Server, free_port, ratio, spread, wrk, wrk_script  # noqa: E402
from core import machine  # noqa: E402

ROUTES = {
    "/noop": "no job",
    "/enqueue": "backburner",
    "/taskpool": "Task-per-job pool",
    "/pool": "inline-awaiting pool",
    "/background": "BackgroundTasks",
    "/inline": "inline await",
    "/awaiting": "backburner after one await",
    "/durable": "backburner + journal (await aenqueue)",
}


@dataclass
class Sample:
    """One route, one repeat."""

    route: str
    rps: float  # successful (2xx) responses per second
    p50_ms: float
    p99_ms: float
    p999_ms: float
    refused: int  # non-2xx answers (a full queue's 503)
    socket_errors: int
    rss_start_mb: float  # the server's VmRSS before the load
    rss_mb: float  # ... and at its end, before SIGTERM
    gc_collections: int  # garbage collections during the load, all generations
    gc_ms: float  # their total time
    pending: int = 0  # accepted and not done when the load ended: the backlog
    accepted: int = 0
    done: int = 0  # finished by the end of the load
    finished: int = 0  # finished between the load's end and the process's end
    reported: int = 0  # named in backburner's shutdown report
    vanished: int = 0  # accepted, and neither finished nor reported


class AppServer(Server):
    """``uvicorn benchmarks.http_app:app`` on a free port, with its counts file."""

    def __init__(self, workdir: Path, options: argparse.Namespace, journal: bool = False) -> None:
        port = free_port()
        self.counts_path = workdir / f"counts-{port}.json"
        env = {
            "BENCH_COUNTS": str(self.counts_path),
            "BENCH_WORKERS": str(options.job_workers),
            "BENCH_MAX_PENDING": str(options.max_pending),
        }
        if journal:  # a fresh journal per server: nothing from an earlier run to take back
            env["BENCH_JOURNAL"] = str(workdir / f"journal-{port}.sqlite3")
        super().__init__("benchmarks.http_app:app", workdir, env, loop=options.loop, port=port)

    def get(self, path: str, method: str = "GET") -> Any:
        body = self.request(path, method)
        return json.loads(body) if path.startswith(("/counts", "/gc")) else body

    def counts(self) -> dict[str, int]:
        """SIGTERM; wait for the exit; the counts its app wrote on the way out."""
        if not self.stop(60):
            raise RuntimeError("uvicorn did not exit within 60 s of SIGTERM")
        counts: dict[str, int] = json.loads(self.counts_path.read_text())
        return counts


def load(route: str, options: argparse.Namespace, workdir: Path, lua: Path) -> Sample:
    server = AppServer(workdir, options, journal=route == "/durable")
    try:
        rss_start = server.rss_mb()
        gc_start = server.get("/gc")
        figures = wrk(
            f"{server.url}{route}", lua, options.duration, options.connections, options.threads
        )
        rss_end = server.rss_mb()
        gc_end = server.get("/gc")
        at_end = server.get("/counts")
        final = server.counts()
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
        p999_ms=figures["p999_us"] / 1000,
        refused=figures["status_errors"],
        socket_errors=figures["socket_errors"],
        rss_start_mb=rss_start,
        rss_mb=rss_end,
        # The /gc read before the load is itself a request: it and the one after cost the same
        # on every route, and neither is likely to trigger a collection.
        gc_collections=gc_end["collections"] - gc_start["collections"],
        gc_ms=(gc_end["seconds"] - gc_start["seconds"]) * 1000,
        pending=at_end["accepted"] - at_end["done"],
        accepted=accepted,
        done=at_end["done"],
        finished=finished,
        reported=reported,
        vanished=accepted - final["done"] - reported,
    )


def loop_health(options: argparse.Namespace, workdir: Path, lua: Path) -> tuple[float, float]:
    """p99 of ``/noop`` (ms) with one connection: idle, and while 100 sync jobs of 0.5 s run."""
    server = AppServer(workdir, options)
    try:
        idle = wrk(f"{server.url}/noop", lua, 3, 1, 1)
        server.get("/sleepers?count=100&seconds=0.5", method="POST")
        busy = wrk(f"{server.url}/noop", lua, 3, 1, 1)  # the jobs take 2.5 s on 20 threads
        server.counts()
    finally:
        server.kill()
    return idle["p99_us"] / 1000, busy["p99_us"] / 1000


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def rss_per_pending(sample: Sample) -> float | None:
    """Bytes the server grew by over the load, per job pending at its end.

    None without a backlog of 1,000 jobs: below that, the growth is the requests in flight and
    the allocator's slack, not the jobs.
    """
    if sample.pending < 1_000:
        return None
    return (sample.rss_mb - sample.rss_start_mb) * 2**20 / sample.pending


def report(samples: list[Sample], health: list[tuple[float, float]], info: dict[str, str]) -> None:
    by_route = {route: [s for s in samples if s.route == route] for route in ROUTES}
    ours, task_pool = by_route["/enqueue"], by_route["/taskpool"]
    pool, tasks = by_route["/pool"], by_route["/background"]

    print()
    print(", ".join(f"{key}: {value}" for key, value in info.items()))
    print(f"{len(ours)} repeats; medians (min-max); job counts summed over the repeats")
    print()
    print("Under the load (RSS at its end; garbage collections during it):")
    print()
    print("| route | way | req/s | p50 ms | p99 ms | p99.9 ms | RSS MB | collections | GC ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for route, way in ROUTES.items():
        runs = by_route[route]
        if not runs:
            continue  # not run (--routes)
        refused = sum(s.refused + s.socket_errors for s in runs)
        flag = f" ({refused:,} refused or failed)" if refused else ""
        print(
            f"| `{route}` | {way}{flag} | {spread([s.rps for s in runs], 0)} | "
            f"{spread([s.p50_ms for s in runs])} | {spread([s.p99_ms for s in runs])} | "
            f"{spread([s.p999_ms for s in runs])} | {spread([s.rss_mb for s in runs])} | "
            f"{spread([s.gc_collections for s in runs], 0)} | "
            f"{spread([s.gc_ms for s in runs])} |"
        )
    print()
    print("The jobs:")
    print()
    print(
        "| route | way | accepted | done | pending at the load's end | RSS growth, bytes per "
        "pending job | at SIGTERM: finished / reported / vanished |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for route, way in ROUTES.items():
        runs = by_route[route]
        if route == "/noop" or not runs:
            continue
        growth = [g for g in map(rss_per_pending, runs) if g is not None]
        jobs = (
            f"{sum(s.finished for s in runs):,} / {sum(s.reported for s in runs):,} / "
            f"**{sum(s.vanished for s in runs):,}**"
        )
        print(
            f"| `{route}` | {way} | {sum(s.accepted for s in runs):,} | "
            f"{sum(s.done for s in runs):,} | {spread([s.pending for s in runs], 0)} | "
            f"{spread(growth, 0) if growth else '-'} | {jobs} |"
        )
    print()
    print("backburner / Task-per-job pool (median of the per-repeat ratios, range):")
    print(f"  req/s {ratio(ours, task_pool, lambda s: s.rps)} (target >= 0.95x)")
    print(f"  p99 {ratio(ours, task_pool, lambda s: s.p99_ms)} (target <= 1.2x)")
    print(f"  p99.9 {ratio(ours, task_pool, lambda s: s.p999_ms)}")
    print(f"  RSS at the load's end {ratio(ours, task_pool, lambda s: s.rss_mb)}")
    print(
        f"  RSS growth per pending job {ratio(ours, task_pool, rss_per_pending)} (target <= 1.3x)"
    )
    print(f"  GC collections {ratio(ours, task_pool, lambda s: s.gc_collections)}")
    print(f"  GC time {ratio(ours, task_pool, lambda s: s.gc_ms)}")
    durable = by_route["/durable"]
    print(
        f"backburner with a journal (await aenqueue) / in memory: req/s "
        f"{ratio(durable, ours, lambda s: s.rps)} (target >= 0.8x), p99 "
        f"{ratio(durable, ours, lambda s: s.p99_ms)} (target <= 1.5x)"
    )
    awaiting = by_route["/awaiting"]
    print(
        f"  the same after one await / in memory: req/s {ratio(awaiting, ours, lambda s: s.rps)}, "
        f"p99 {ratio(awaiting, ours, lambda s: s.p99_ms)}; with a journal / after one await: "
        f"req/s {ratio(durable, awaiting, lambda s: s.rps)}, "
        f"p99 {ratio(durable, awaiting, lambda s: s.p99_ms)}"
    )
    print(
        f"backburner / inline-awaiting pool: req/s {ratio(ours, pool, lambda s: s.rps)}, "
        f"p99 {ratio(ours, pool, lambda s: s.p99_ms)}"
    )
    print(
        f"backburner / BackgroundTasks: req/s {ratio(ours, tasks, lambda s: s.rps)} (target > 1), "
        f"p99 {ratio(ours, tasks, lambda s: s.p99_ms)} (target < 1)"
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
    parser.add_argument(
        "--max-pending",
        type=int,
        default=1_000_000,
        help="the queues' bound; the default is more than a load on this machine fills, since a "
        "full queue's fast 503s would flatter the route that filled first",
    )
    parser.add_argument("--repeats", type=int, default=5, help="repeats; figures are medians")
    parser.add_argument(
        "--loop", choices=["asyncio", "uvloop"], default="asyncio", help="uvicorn's event loop"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s per route, 1 repeat")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every sample here")
    parser.add_argument(
        "--routes",
        type=lambda text: [r if r.startswith("/") else f"/{r}" for r in text.split(",")],
        default=list(ROUTES),
        metavar="A,B",
        help="run only these routes (e.g. enqueue,durable), and no loop-health row; the "
        "rows of the others say n/a",
    )
    options = parser.parse_args(argv)
    unknown = set(options.routes) - set(ROUTES)
    if unknown:
        parser.error(
            f"--routes: no route {', '.join(sorted(unknown))}; the routes: {', '.join(ROUTES)}"
        )
    if options.quick:
        options.duration, options.repeats = 2, 1
    info = machine()
    info["server"] = f"uvicorn --loop {options.loop} --http httptools"
    info["job workers"] = str(options.job_workers)
    info["max pending"] = f"{options.max_pending:,}"
    info["load"] = f"wrk -t{options.threads} -c{options.connections} -d{options.duration}s"
    samples: list[Sample] = []
    health: list[tuple[float, float]] = []
    routes = [route for route in ROUTES if route in options.routes]
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        lua = wrk_script(workdir)
        for repeat in range(options.repeats):
            # Rotate which route goes first, keeping backburner and the Task-per-job pool side
            # by side (in turn first): their ratio is the headline, and the machine's load drifts.
            pair = ["/enqueue", "/taskpool"] if repeat % 2 == 0 else ["/taskpool", "/enqueue"]
            pair = [route for route in pair if route in routes]
            others = [route for route in routes if route not in pair]
            at = repeat % (len(others) + 1)
            order = others[at:] + pair + others[:at]
            for route in order:
                sample = load(route, options, workdir, lua)
                samples.append(sample)
                print(
                    f"repeat {repeat + 1} {route}: {sample.rps:,.0f} req/s, p99 "
                    f"{sample.p99_ms:.1f} ms, p99.9 {sample.p999_ms:.1f} ms, RSS "
                    f"{sample.rss_mb:.1f} MB, {sample.gc_collections} GCs "
                    f"{sample.gc_ms:.1f} ms, pending {sample.pending:,}, vanished "
                    f"{sample.vanished:,}",
                    file=sys.stderr,
                )
            if routes == list(ROUTES):
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
