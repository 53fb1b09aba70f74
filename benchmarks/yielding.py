"""The yielding benchmark: ``/noop``'s latency while jobs burn CPU, with ``yield_to_requests``
on and off, and the jobs' throughput with no requests at all.

Run it as ``.venv/bin/python benchmarks/yielding.py`` (``--quick``: a smoke run whose figures
mean little). It needs ``wrk`` (Debian's package).

The app is ``benchmarks/yielding_app.py``: 4 workers (``--job-workers``) run jobs of 10 steps of
about 5 ms of pure-Python work each, awaiting between steps; each job enqueues its successor, so
every worker stays busy. Each run starts a fresh uvicorn (``--loop asyncio --http httptools``,
no access log) on a free loopback port. Six cases:

- **no jobs**: ``wrk -t1 -c<connections>`` on ``/noop``, nothing else running;
- **jobs, yielding off** / **jobs, yielding on**: the same load while the jobs burn;
- **jobs, yielding on, floor 0**: the same with ``floor=0``: jobs may stop starting altogether;
- **no requests, yielding off** / **on**: the jobs alone for ``--duration`` seconds.

``--target-lag`` is 2 ms: the target asks for a ``/noop`` p99 within 1.5x of its no-jobs
figure, about 2.4 ms on a quiet 2-core machine, and a controller told to tolerate a lag of
5 ms lets 5 ms steps through by construction. A user who wants a latency sets the lag to it.
``--duration`` is 30 s: a load that begins finds jobs running, whose steps run to their end
whatever the controller decides, and in runs of 10 s that start dominated floor 0's p99
(4.6x the no-jobs figure in 10 s, 1.1x in 30 s, the same code).

Latency percentiles are wrk's (a ``done()`` Lua hook prints them). Jobs done are counted by the
app from the load's start to its end. Every repeat runs every case, rotating which goes first;
figures are medians of ``--repeats`` (5) with their range, ratios the median of the per-repeat
ratios (in the same repeat, so the machine's drift cancels out).
"""

from __future__ import annotations

import sys
from pathlib import Path

# benchmarks/http.py sits beside this file: as a script, this folder comes first on sys.path,
# and that file would shadow the standard library's http package (urllib needs it). Look here
# last instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402

from _loaded_server import Server, ratio, spread, wrk, wrk_script  # noqa: E402
from core import machine  # noqa: E402
from yielding_app import calibrate  # noqa: E402

#: case -> (jobs burning, yielding on, requests, floor: None for --floor)
CASES: dict[str, tuple[bool, bool, bool, int | None]] = {
    "no jobs": (False, False, True, None),
    "jobs, yielding off": (True, False, True, None),
    "jobs, yielding on": (True, True, True, None),
    "jobs, yielding on, floor 0": (True, True, True, 0),
    "no requests, yielding off": (True, False, False, None),
    "no requests, yielding on": (True, True, False, None),
}


@dataclass
class Sample:
    """One case, one repeat."""

    case: str
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    errors: int = 0
    jobs_per_s: float = 0.0
    effective: str = ""  # the effective workers at the end (yielding on)


def run(case: str, options: argparse.Namespace, workdir: Path, lua: Path) -> Sample:
    jobs, yielding, requests, floor = CASES[case]
    env = {
        "BENCH_WORKERS": str(options.job_workers),
        "BENCH_YIELD": "on" if yielding else "off",
        "BENCH_TARGET_LAG": str(options.target_lag),
        "BENCH_FLOOR": str(options.floor if floor is None else floor),
        "BENCH_LOOPS": str(options.loops),
    }
    server = Server("benchmarks.yielding_app:app", workdir, env)
    sample = Sample(case)
    try:
        if jobs:
            server.request(f"/fill?count={options.job_workers * 2}", method="POST")
        if requests:  # a second of load first: the first requests of a process are slower
            wrk(f"{server.url}/noop", lua, 1, options.connections)
        elif jobs:
            time.sleep(1.0)  # the same second, for the jobs-only cases
        began, done = time.monotonic(), json.loads(server.request("/counts"))["done"]
        if requests:
            figures = wrk(f"{server.url}/noop", lua, options.duration, options.connections)
            sample.rps = figures["requests"] / (figures["duration_us"] / 1e6)
            sample.p50_ms = figures["p50_us"] / 1000
            sample.p99_ms = figures["p99_us"] / 1000
            sample.errors = figures["status_errors"] + figures["socket_errors"]
        else:
            time.sleep(options.duration)
        counts = json.loads(server.request("/counts"))
        sample.jobs_per_s = (counts["done"] - done) / (time.monotonic() - began)
        if counts["yielding"] is not None:
            sample.effective = str(counts["yielding"]["effective_workers"]["default"])
        server.stop(30)
    finally:
        server.kill()
    return sample


def report(samples: list[Sample], info: dict[str, str]) -> None:
    by = {case: [s for s in samples if s.case == case] for case in CASES}
    print()
    print(", ".join(f"{key}: {value}" for key, value in info.items()))
    print(f"{len(by['no jobs'])} repeats; medians (min-max)")
    print()
    print("| case | /noop req/s | /noop p50 ms | /noop p99 ms | jobs/s | effective workers |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for case, runs in by.items():
        requests = CASES[case][2]
        web = (
            f"{spread([s.rps for s in runs], 0)} | {spread([s.p50_ms for s in runs])} | "
            f"{spread([s.p99_ms for s in runs])}"
            if requests
            else "- | - | -"
        )
        jobs = spread([s.jobs_per_s for s in runs]) if CASES[case][0] else "-"
        effective = ", ".join(s.effective for s in runs if s.effective) or "-"
        print(f"| {case} | {web} | {jobs} | {effective} |")
    errors = sum(s.errors for s in samples)
    if errors:
        print(f"\nwrk counted {errors} errors in all")
    base, off, on = by["no jobs"], by["jobs, yielding off"], by["jobs, yielding on"]
    on0 = by["jobs, yielding on, floor 0"]
    print()
    p99: Callable[[Sample], float] = lambda s: s.p99_ms  # noqa: E731
    jobs_per_s: Callable[[Sample], float] = lambda s: s.jobs_per_s  # noqa: E731
    print(f"/noop p99, yielding on / no jobs: {ratio(on, base, p99)} (target <= 1.5x)")
    print(
        f"/noop p99, yielding on with floor 0 / no jobs: {ratio(on0, base, p99)} (target <= 1.5x)"
    )
    print(f"/noop p99, yielding off / no jobs: {ratio(off, base, p99)}")
    print(f"/noop p99, yielding off / on: {ratio(off, on, p99)}")
    print(
        f"jobs/s with no requests, yielding on / off: "
        f"{ratio(by['no requests, yielding on'], by['no requests, yielding off'], jobs_per_s)} "
        f"(target >= 0.9x)"
    )
    print(
        f"jobs/s under the load, yielding on / off: {ratio(on, off, jobs_per_s)}; with floor 0: "
        f"{ratio(on0, off, jobs_per_s)} (what yielding gives the requests)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=30, help="seconds of each case")
    parser.add_argument("--connections", type=int, default=16, help="wrk's open connections")
    parser.add_argument("--job-workers", type=int, default=4, help="the queue's workers")
    parser.add_argument("--target-lag", type=float, default=0.002, help="YieldToRequests's")
    parser.add_argument("--floor", type=int, default=1, help="YieldToRequests's")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; figures are medians")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 s per case, 1 repeat")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every sample here")
    options = parser.parse_args(argv)
    if options.quick:
        options.duration, options.repeats = 2, 1
    options.loops = calibrate()  # once, for every server of the run: the same work everywhere
    info = machine()
    info["server"] = "uvicorn --loop asyncio --http httptools"
    info["load"] = f"wrk -t1 -c{options.connections} -d{options.duration}s"
    info["jobs"] = (
        f"{options.job_workers} workers, 10 steps of ~5 ms of CPU each ({options.loops:,} loops)"
    )
    info["yield_to_requests"] = (
        f"YieldToRequests(target_lag={options.target_lag}, floor={options.floor})"
    )
    samples: list[Sample] = []
    cases = list(CASES)
    with tempfile.TemporaryDirectory(prefix="bench-yielding-") as tmp:
        workdir = Path(tmp)
        lua = wrk_script(workdir)
        for repeat in range(options.repeats):
            at = repeat % len(cases)
            for case in cases[at:] + cases[:at]:
                sample = run(case, options, workdir, lua)
                samples.append(sample)
                print(
                    f"repeat {repeat + 1} {case}: {sample.rps:,.0f} req/s, p99 "
                    f"{sample.p99_ms:.1f} ms, {sample.jobs_per_s:.1f} jobs/s, effective "
                    f"{sample.effective or '-'}",
                    file=sys.stderr,
                )
    report(samples, info)
    if options.json:
        options.json.write_text(
            json.dumps({"machine": info, "samples": [s.__dict__ for s in samples]}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
