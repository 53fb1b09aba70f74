"""Operating a real uvicorn process: backburner's log lines under a bare ``uvicorn app:app`` and
under the demo's ``--log-config``, the health probes through a SIGTERM drain, the metrics
endpoint. Each run serves ``apps/ops.py`` and reads its stderr and its event log."""

from __future__ import annotations

import re
import signal

import pytest

from ._uvicorn import Serve, Uvicorn

pytestmark = pytest.mark.e2e

TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"


def enqueue(server: Uvicorn, kind: str, key: str) -> str:
    with server.client() as client:
        response = client.post(f"/enqueue/{kind}/{key}")
        response.raise_for_status()
        job_id: str = response.json()["id"]
        return job_id


def retried(server: Uvicorn, key: str) -> str:
    """Enqueue a ``flaky`` job (its first attempt fails) and wait for its retry's success."""
    job_id = enqueue(server, "flaky", key)
    server.wait_for(
        "the retry's success", lambda events: any(e["event"] == "finished" for e in events)
    )
    return job_id


def stop(server: Uvicorn) -> None:
    """SIGTERM, and the exit uvicorn makes of it (it ends by re-raising the signal)."""
    server.send(signal.SIGTERM)
    code, _ = server.wait_exit(within=15)
    assert code == -signal.SIGTERM, server.tail()


def lines_matching(server: Uvicorn, pattern: str) -> list[str]:
    return re.findall(rf"(?m)^{pattern}.*$", server.output())


def test_under_a_bare_uvicorn_backburner_lines_come_with_time_level_and_logger(
    serve: Serve,
) -> None:
    server = serve("ops")
    server.wait_ready()
    job_id = retried(server, "k1")
    # INFO lines appear at all (uvicorn sets no handler for them), with the time and the name.
    assert len(lines_matching(server, rf"INFO: +{TIME} backburner: started, queues default")) == 1
    # A warning is no bare message from Python's last-resort handler.
    warning = (
        rf"WARNING: +{TIME} backburner: job {job_id} flaky\('k1'\) queue='default' "
        r"failed \(attempt 1 of 2\)"
    )
    assert len(lines_matching(server, warning)) == 1, server.tail()
    stop(server)
    shutdown = rf"INFO: +{TIME} backburner: shut down in [\d.]+s; every accepted job finished"
    assert len(lines_matching(server, shutdown)) == 1, server.tail()
    server.assert_no_errors()


def test_under_uvicorn_log_level_warning_backburner_info_lines_stay_out(serve: Serve) -> None:
    server = serve("ops", args=["--log-level", "warning"])
    server.wait_ready()
    job_id = retried(server, "k5")
    stop(server)
    ours = lines_matching(server, rf"\w+: +{TIME} backburner: ")
    assert len(ours) == 1, server.tail()  # the retry's warning; "started" and "shut down" not
    assert ours[0].startswith("WARNING:  "), server.tail()
    assert f"job {job_id} flaky('k5') queue='default' failed (attempt 1 of 2)" in ours[0]


def test_logging_configured_in_the_app_lifespan_has_its_levels_and_each_line_once(
    serve: Serve,
) -> None:
    server = serve("ops", settings={"configure_logging": 1})  # basicConfig at WARNING
    server.wait_ready()
    job_id = retried(server, "k4")
    stop(server)
    ours = lines_matching(server, r"(?:\w+: +\S+ \S+ |app \w+ )backburner: ")
    # The retry's warning, through the app's handler, once; no INFO line (the app said WARNING).
    assert ours == [
        f"app WARNING backburner: job {job_id} flaky('k4') queue='default' "
        f"failed (attempt 1 of 2): ValueError: first attempt of k4 fails; retrying in 0.05s"
    ], server.tail()


def test_under_the_demo_log_config_each_line_shows_once_with_its_job(serve: Serve) -> None:
    server = serve("ops", args=["--log-config", "demo_app/logging.json"])
    server.wait_ready()
    job_id = retried(server, "k2")
    tagged = (
        rf"WARNING: +{TIME} backburner \[job {job_id}\]: "
        rf"job {job_id} flaky\('k2'\) queue='default' failed"
    )
    assert len(lines_matching(server, tagged)) == 1, server.tail()
    # The app's own record from inside the job carries the job too, once per attempt.
    inside = rf"WARNING: +{TIME} tests\.e2e\.ops \[job {job_id}\]: inside flaky k2"
    assert len(lines_matching(server, inside)) == 2, server.tail()
    outside = rf"INFO: +{TIME} backburner \[job -\]: started, queues default"
    assert len(lines_matching(server, outside)) == 1, server.tail()


def test_ready_fails_from_the_moment_sigterm_starts_the_drain(serve: Serve) -> None:
    server = serve("ops")
    server.wait_ready()
    with server.client() as client:
        ready, live = client.get("/probes/ready"), client.get("/probes/live")
    assert (ready.status_code, ready.json()["status"]) == (200, "ok")
    assert ready.json()["checks"]["executor"] == {"status": "ok", "reason": "running"}
    assert (live.status_code, live.json()["status"]) == (200, "ok")
    enqueue(server, "holds_drain", "d1")
    server.wait_for("the job's start", lambda events: any(e["event"] == "started" for e in events))
    server.send(signal.SIGTERM)
    [answer] = [
        e
        for e in server.wait_for(
            "/ready asked during the drain",
            lambda events: any(e["event"] == "ready_during_drain" for e in events),
        )
        if e["event"] == "ready_during_drain"
    ]
    assert answer["status"] == 503
    assert answer["body"]["checks"]["executor"] == {
        "status": "failing",
        "reason": "shutting down: the executor drains its jobs",
    }
    code, _ = server.wait_exit(within=15)
    assert code == -signal.SIGTERM, server.tail()  # uvicorn ends by re-raising it


def test_the_metrics_endpoint_serves_without_the_dashboard(serve: Serve) -> None:
    server = serve("ops")
    server.wait_ready()
    enqueue(server, "flaky", "k3")
    server.wait_for("the job's end", lambda events: any(e["event"] == "finished" for e in events))
    with server.client() as client:
        response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'backburner_jobs_failed_total{queue="default"} 1' in response.text
    assert 'backburner_jobs_processed_total{queue="default"} 2' in response.text
