"""FastAPI conveniences: the app's executor as a dependency.

::

    from fastapi import FastAPI
    from backburner import BackburnerMiddleware
    from backburner.fastapi import BackburnerDep

    app = FastAPI()
    app.add_middleware(BackburnerMiddleware, workers=8)

    @app.post("/signup")
    async def signup(email: str, bg: BackburnerDep) -> dict[str, str]:
        job = bg.enqueue(send_welcome_email, email)
        return {"job": job.id}

``background`` works in endpoints too; the dependency is for code that prefers its
collaborators passed in, and for tests, which can swap it through
``app.dependency_overrides[get_backburner]``.
"""

from __future__ import annotations

from typing import Annotated

try:
    from fastapi import Depends
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "backburner.fastapi needs FastAPI: pip install fastapi (or use `background`, which "
        "works with Starlette alone)"
    ) from exc

from ._executor import Backburner
from ._proxy import current_executor

__all__ = ["BackburnerDep", "get_backburner"]


async def get_backburner() -> Backburner:
    """The executor of the request being handled (the one ``BackburnerMiddleware`` runs).

    A coroutine so that FastAPI calls it on the event loop rather than sending it to a
    thread. Raises ``NotRunning``, saying what to do, when no executor runs for this request
    (the middleware is missing, or the app's lifespan did not run).
    """
    return current_executor()


#: ``bg: BackburnerDep`` in an endpoint's parameters gives it the request's executor.
BackburnerDep = Annotated[Backburner, Depends(get_backburner)]
