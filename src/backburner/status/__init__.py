"""Job status over HTTP: a ``202 Accepted`` with an honest ``Retry-After``, a JSON status
route and a stream of progress events, for clients of long-running work.

::

    from backburner import background
    from backburner.status import accepted, status_app

    statuses = status_app(secret=os.environ["STATUS_SECRET"])
    app.mount("/status", statuses)

    @app.post("/reports")
    async def create_report():
        job = background.enqueue(build_report)
        return accepted(job, f"/status/{job.id}?{statuses.sign(job.id)}")

Denied by default: without ``authorize=`` (and a request without a valid signature) every
request is refused (403).
"""

from ._accepted import accepted as accepted
from ._app import Authorize as Authorize
from ._app import StatusApp as StatusApp
from ._app import status_app as status_app

__all__ = ["Authorize", "StatusApp", "accepted", "status_app"]

StatusApp.__module__ = __name__
