"""The demo's documented switch: ``BACKBURNER_ENGINE=redis`` runs its jobs in a taskiq worker."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from demo_app.app import Demo
from tests.test_demo_app import MAIL_DELAY, TLS, serve

from ._processes import RedisServer, TaskiqProcess

pytestmark = pytest.mark.e2e


def test_the_demo_on_redis_sends_its_mail_from_a_taskiq_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    env = {"REDIS_URL": redis.url}
    worker = TaskiqProcess(
        "worker", redis.url, tmp_path, ["--workers", "1"], env=env, target="demo_app.remote:broker"
    )
    try:
        monkeypatch.setenv("REDIS_URL", redis.url)
        monkeypatch.delitem(sys.modules, "demo_app.remote", raising=False)  # read REDIS_URL anew
        demo = Demo(mail_delay=MAIL_DELAY, shutdown_timeout=5, engine="redis")
        with serve(demo) as url, httpx.Client(base_url=url, timeout=15, verify=TLS) as client:
            welcome, fib = "ada@example.com", "fib@example.com"
            assert client.post("/signup", data={"email": welcome}).status_code == 303
            answer = client.post("/fibtastic", data={"email": fib, "n": "10"})
            assert answer.status_code == 303
            subjects = []
            for address in (welcome, fib):  # each look waits for that address's mail
                caught = client.get("/inbox.json", params={"to": address, "wait": 15}).json()
                subjects += [m["subject"] for m in caught["messages"]]
            assert subjects == ["Welcome to the backburner demo", "Your 10 Fibonacci numbers"]
            stats = client.get("/stats").json()
            assert stats["total"]["sent"] == 2
            assert stats["queues"]["mail"]["engine"].startswith("taskiq RedisStreamBroker")
        assert "Executing task demo.send_welcome" in worker.output()
    finally:
        worker.stop()
        redis.stop()
