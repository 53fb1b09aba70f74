"""An app that mounts the dashboard in every security mode, with control routes for the tests.

Mounts (credentials ``admin`` / ``s3cret`` where Basic auth is on)::

    /bb       Basic auth                       /ro      Basic auth, read-only
    /none     no auth at all (refuses all)     /local   insecure_local=True
    /hook     auth=async callable: X-Token     /hosts   Basic auth, allowed_hosts=["dash.example"]
    /redact   Basic auth, redact names and a redact_hook

Control routes (no dashboard, no auth: test scaffolding) enqueue jobs the tests watch:
``POST /control/hold?key=K`` (runs until ``POST /control/release?key=K``), ``/control/fail``,
``/control/quick``, ``/control/schedule``, ``/control/xss`` (jobs full of XSS payloads),
``/control/secret`` and ``/control/leaky`` (jobs holding secrets, held until released),
``/control/progress?key=K`` (reports each ``/control/step?key=K&done=N`` as N of 10, ends at
``done=-1``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from backburner import BackburnerMiddleware, Job, Periodic, QueueConfig, background, current_job
from backburner.dashboard import BasicAuth, dashboard

from ._payloads import PAYLOADS, XSS_QUEUE

USER, PASSWORD = "admin", "s3cret"


_gates: dict[str, asyncio.Event] = {}


def _gate(key: str) -> asyncio.Event:
    return _gates.setdefault(key, asyncio.Event())


async def hold(key: str) -> str:
    await _gate(key).wait()
    return key


_steps: dict[str, asyncio.Queue[int]] = {}


async def stepping(key: str) -> str:
    """Report each step the test sends as done of 10, until it sends -1."""
    handle, steps = current_job(), _steps.setdefault(key, asyncio.Queue())
    while (done := await steps.get()) >= 0:
        handle.set_progress(done, 10, f"step {done}")
    return key


async def quick(key: str) -> str:
    return key


_failed_once: set[str] = set()


async def flaky(key: str) -> str:
    """Fails the first time it runs with this key, then succeeds (a retry by hand works)."""
    if key not in _failed_once:
        _failed_once.add(key)
        raise ConnectionError(f"{key}: the mail server is down")
    return key


async def fail(message: str) -> None:
    raise RuntimeError(message)


def _named(name: str, body: Callable[..., Any]) -> Callable[..., Any]:
    async def job(*args: Any, **kwargs: Any) -> Any:
        return body(*args, **kwargs)

    job.__qualname__ = job.__name__ = name
    return job


def _raise(message: str) -> Callable[..., None]:
    def body(*args: Any, **kwargs: Any) -> None:
        raise ValueError(message)

    return body


async def send_secret(
    to: str, password: str, card: str = "4111 1111 1111 1111", **extra: Any
) -> None:
    """Holds until released: the redaction tests look at its arguments while it waits."""
    await _gate(f"secret:{to}").wait()


@dataclasses.dataclass
class Account:
    user: str
    dsn: str = dataclasses.field(repr=False)  # the app hides it: so must the dashboard


async def sync_account(account: Account, url: str, callback: str, header: str) -> str:
    """Holds until released, then returns a text with the hidden field in it."""
    await _gate(f"leaky:{account.user}").wait()
    return f"synced {account.user} via {account.dsn}"


async def nightly_report() -> None:
    pass


async def control(request: Request) -> Response:
    what = request.path_params["what"]
    params = request.query_params
    queue = params.get("queue", "default")
    job: Job[Any]  # the branches enqueue jobs of different result types
    if what == "hold":
        job = background.options(queue=queue).enqueue(hold, params["key"])
    elif what == "progress":
        job = background.enqueue(stepping, params["key"])
    elif what == "step":
        _steps.setdefault(params["key"], asyncio.Queue()).put_nowait(int(params["done"]))
        return JSONResponse({"step": params["done"]})
    elif what == "release":
        _gate(params["key"]).set()
        return JSONResponse({"released": params["key"]})
    elif what == "fail":
        retries = int(params.get("retries", "0"))
        job = background.options(queue=queue, retries=retries, backoff=3600).enqueue(
            fail, params.get("message", "boom")
        )
    elif what == "flaky":
        job = background.options(queue=queue).enqueue(flaky, params["key"])
    elif what == "quick":
        job = background.options(queue=queue).enqueue(quick, params.get("key", "q"))
    elif what == "schedule":
        job = background.options(queue=queue).enqueue_in(3600, quick, params.get("key", "later"))
    elif what == "secret":
        job = background.enqueue(
            send_secret, params["to"], "hunter2", card="4111", api_token={"password": "x"}
        )
    elif what == "leaky":
        user = params["user"]
        job = background.enqueue(
            sync_account,
            Account(user, "db.internal/hunter-dsn"),
            "postgres://app:p@ss/w0rd@db/app",
            "https://api.example/cb?api_key=hunter-key&page=1",
            header="Authorization: Bearer hunter-bearer",
        )
    elif what == "xss":
        return JSONResponse({"ids": _enqueue_payloads()})
    else:
        return PlainTextResponse("unknown control", 404)
    return JSONResponse({"id": job.id})


def _enqueue_payloads() -> list[str]:
    """Payloads in arguments, function names, queue names, exception texts and tracebacks."""
    ids = []
    background.executor.pause(XSS_QUEUE)  # so its jobs stay pending, on show
    for n, payload in enumerate(PAYLOADS):
        named = _named(payload, _raise(payload))
        # Dead (in failures) with the payload everywhere: name, args, kwargs, error, traceback.
        ids.append(background.enqueue(named, payload, key=payload).id)
        # Waiting in a retry, pending in the payload queue, scheduled with payload arguments.
        retrying = background.options(retries=3, backoff=3600)
        ids.append(retrying.enqueue(fail, payload).id)
        ids.append(background.options(queue=XSS_QUEUE).enqueue(quick, payload).id)
        ids.append(background.enqueue_in(3600 + n, quick, payload).id)
    return ids


async def health(request: Request) -> Response:
    return PlainTextResponse("ok")


async def token_auth(request: Request) -> bool:
    await asyncio.sleep(0)  # an async check, as a session lookup would be
    return request.headers.get("x-token") == "t0ken"


def _hide_card(job: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args, {key: ("<card>" if key == "card" else value) for key, value in kwargs.items()}


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/control/{what}", control, methods=["POST"]),
        Mount("/bb", dashboard(auth=(USER, PASSWORD), poll_interval=1, show_results=True)),
        Mount("/ro", dashboard(auth=BasicAuth(USER, PASSWORD), read_only=True, poll_interval=1)),
        Mount("/none", dashboard()),
        Mount("/local", dashboard(insecure_local=True)),
        Mount("/hook", dashboard(auth=token_auth)),
        Mount("/hosts", dashboard(auth=(USER, PASSWORD), allowed_hosts=["dash.example"])),
        Mount("/redact", dashboard(auth=(USER, PASSWORD), redact_hook=_hide_card)),
    ]
)
app.add_middleware(
    BackburnerMiddleware,
    workers=2,
    queues={"mail": QueueConfig(workers=1), XSS_QUEUE: QueueConfig(workers=1)},
    periodic=[
        Periodic(nightly_report, every=86400),
        Periodic(_named(PAYLOADS[1], lambda: None), every=86400, name=PAYLOADS[1]),
    ],
    shutdown_timeout=2.0,
)
