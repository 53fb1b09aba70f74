"""The exceptions backburner raises at run time.

Programming mistakes (a coroutine object where a function was expected, arguments that do not
bind, an unknown queue, a bad setting) are builtins, ``TypeError`` and ``ValueError``, raised at
the call site. Conditions a correct program meets at run time are ``BackburnerError``s::

    BackburnerError
    ├── QueueFull           enqueue() found the queue at max_pending (or the schedule full)
    ├── NotRunning          the executor has not started, or has shut down
    │   └── ShuttingDown    the executor is draining: it accepts nothing new
    ├── JobCancelled        awaited a job that was cancelled or abandoned
    ├── JobTimeout          a job ran past its timeout (also a TimeoutError)
    ├── DuplicateJob        a unique job's key is taken, and on_duplicate="raise"
    ├── JournalError        the journal file cannot be opened, read or written
    ├── BrokerUnavailable   a remote engine's broker did not take a job (see backburner.taskiq)
    └── NotInJob            current_job() was called by code that no job is running
"""

from __future__ import annotations

__all__ = [
    "BackburnerError",
    "BrokerUnavailable",
    "DuplicateJob",
    "JobCancelled",
    "JobTimeout",
    "JournalError",
    "NotInJob",
    "NotRunning",
    "QueueFull",
    "ShuttingDown",
    "not_running",
]


class BackburnerError(Exception):
    """The root of every exception backburner raises at run time."""


class QueueFull(BackburnerError):
    """Raised by ``enqueue()`` when the queue already holds ``max_pending`` waiting jobs.

    ``aenqueue()`` waits for room instead of raising this.
    """

    def __init__(self, queue: str, max_pending: int, message: str | None = None) -> None:
        self.queue = queue
        self.max_pending = max_pending
        super().__init__(
            message
            or f"queue {queue!r} is full: {max_pending} jobs are already waiting "
            f"(max_pending={max_pending}). Raise max_pending, add workers, or use "
            f"'await aenqueue(...)' to wait for room."
        )


class NotRunning(BackburnerError):
    """Raised by ``enqueue()`` when no executor is running to accept the job.

    Either the executor was never started (no ``async with``, the server ran with
    ``--lifespan off``, a ``TestClient`` used without ``with``) or it has shut down.
    """


class ShuttingDown(NotRunning):
    """Raised by ``enqueue()`` while the executor drains for shutdown: it takes no new jobs."""


def not_running(state: str) -> NotRunning:
    """Why an executor in ``state`` ("draining", "closed", or not started) refuses a job."""
    if state == "draining":
        return ShuttingDown("the executor is shutting down and accepts no new jobs")
    if state == "closed":
        return NotRunning("the executor has shut down and accepts no jobs")
    return NotRunning(
        "the executor has not started, so a job would never run: run the app with its "
        "lifespan (uvicorn's default; not --lifespan off; a TestClient inside "
        "'with TestClient(app):'), or use 'async with Backburner() as bg'"
    )


class JobCancelled(BackburnerError):
    """Raised by ``await job`` for a job that was cancelled, or abandoned at shutdown."""


class JobTimeout(BackburnerError, TimeoutError):
    """The exception a job fails with when an attempt runs past its ``timeout``.

    An async job is cancelled at the deadline. A sync job cannot be interrupted: it is marked
    timed out and its thread runs on, holding its worker slot until it returns.
    """


class DuplicateJob(BackburnerError):
    """Raised by ``enqueue()`` when a live job holds a unique job's key (``on_duplicate="raise"``).

    ``existing`` is that job.
    """

    def __init__(self, key: str, existing: object) -> None:
        self.key = key
        self.existing = existing
        super().__init__(
            f"a job with unique key {key!r} is already queued or running: {existing!r}"
        )


class JournalError(BackburnerError):
    """Raised when the journal (``Backburner(journal=...)``) cannot be used.

    At startup (``open()``): the file is empty, not SQLite, truncated, damaged, not a journal,
    or from a newer backburner; the message says what to do, and nothing from it has run. At
    ``enqueue()``: the job could not be written (a full or failing disk); it was not accepted.
    """


class BrokerUnavailable(BackburnerError):
    """A job could not be sent to a remote engine's broker (``Backburner(engine=...)``).

    Raised by ``aenqueue()`` when the broker did not take the job (it was not accepted); a job
    from sync ``enqueue()`` that could not be sent in time fails with it, is logged with its id
    and joins ``failures()``. The message names the broker and the cause.
    """


class NotInJob(BackburnerError):
    """Raised by ``current_job()`` when the code calling it is not a job's.

    A job's code is the function a worker runs (an ``async def`` on the event loop, or a sync
    function on one of the executor's threads) and what it calls there; a request handler, a
    task the job started itself or a thread of the application is none.
    """
