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

**How** ``Retry-After`` **is estimated** (by ``accepted`` and on ``GET /{id}`` until the job
ends), in whole seconds rounded up, kept within ``bounds`` (1 to 60 s by default):

* a running job that reports progress: its ``eta`` (its rate since its first report of this
  attempt) less the time since its last report; without progress, the queue's mean time per
  job less the time it has run, if that is still ahead;
* a job waiting for a worker at ``position`` (0: next): ``(position + 1) * service_time /
  workers``, where ``service_time`` is the mean seconds a job held a worker over the last
  minute (the last ten, if no job ended in the last one): by Little's law, the mean number of
  busy workers (sampled every 5 s) over the jobs ended per second. That is the queue's
  capacity, not the rate jobs happened to arrive at. A paused queue's jobs get the upper bound;
* a scheduled or retrying job: the seconds until it is due (``accepted`` only: the JSON
  route's snapshot has no due time);
* a job that ended: 0. Whatever is not known (no job ended yet, say): 2 s.
"""

from ._accepted import accepted as accepted
from ._app import Authorize as Authorize
from ._app import StatusApp as StatusApp
from ._app import status_app as status_app

__all__ = ["Authorize", "StatusApp", "accepted", "status_app"]

StatusApp.__module__ = __name__
