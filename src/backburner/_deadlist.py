"""The dead list's operations: run a failed job once more, or forget it.

The jobs themselves are kept by ``FailedJobs``; what is here is what the executor's
``retry``, ``discard``, ``retry_all`` and ``discard_all`` do with them: a retried job is
reopened and goes through the one admission path again, and whatever is raised on the way
puts it back in the list as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._admission import Admission
from ._clock import Clock
from ._failures import FailedJobs
from ._job import Job
from ._ports import Queue

__all__ = ["DeadList"]


class DeadList:
    """Retries and discards the jobs in one executor's ``failures()``."""

    def __init__(
        self,
        failures: FailedJobs,
        admission: Admission,
        clock: Clock,
        queue_for: Callable[[str], Queue],
        adopt: Callable[[Job[Any]], None],
    ) -> None:
        """``queue_for(name)`` is the open queue of that name (or raises, saying why not);
        ``adopt(job)`` makes the retried job belong to this executor in the current context."""
        self._failures = failures
        self._admission = admission
        self._clock = clock
        self._queue_for = queue_for
        self._adopt = adopt

    def retry(self, job: Job[Any] | str) -> Job[Any]:
        """See ``Backburner.retry``."""
        taken = self._failures.take(job)
        if taken is None:
            raise ValueError(f"job {job if isinstance(job, str) else job.id} is not in failures()")
        try:
            queue = self._queue_for(taken.queue)
            ended = taken.reopen(queue, self._clock.now())
            try:
                self._adopt(taken)
                self._admission.admit(taken, queue, stored=True, retry=True)
            except BaseException:
                taken.restore(ended)
                raise
        except BaseException:
            self._failures.add(taken)
            raise
        return taken

    def discard(self, job: Job[Any] | str) -> bool:
        """See ``Backburner.discard``."""
        return self._failures.take(job) is not None

    def retry_all(self) -> int:
        """See ``Backburner.retry_all``."""
        count = 0
        for job in list(self._failures):
            self.retry(job)
            count += 1
        return count

    def discard_all(self) -> int:
        """See ``Backburner.discard_all``."""
        return len(self._failures.take_all())
