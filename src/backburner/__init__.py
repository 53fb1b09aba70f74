"""background jobs inside your ASGI server's own process.

::

    from backburner import BackburnerMiddleware, background

    app.add_middleware(BackburnerMiddleware, workers=8)

    async def signup(request):
        background.enqueue(send_welcome_email, address)
        return RedirectResponse("/welcome", 303)
"""

from ._asgi import BackburnerMiddleware as BackburnerMiddleware
from ._asgi import queue_full_handler as queue_full_handler
from ._clock import Clock as Clock
from ._enqueue import Enqueuer as Enqueuer
from ._errors import BackburnerError as BackburnerError
from ._errors import BrokerUnavailable as BrokerUnavailable
from ._errors import DuplicateJob as DuplicateJob
from ._errors import JobCancelled as JobCancelled
from ._errors import JobTimeout as JobTimeout
from ._errors import JournalError as JournalError
from ._errors import NotInJob as NotInJob
from ._errors import NotRunning as NotRunning
from ._errors import QueueFull as QueueFull
from ._errors import ShuttingDown as ShuttingDown
from ._executor import Backburner as Backburner
from ._handle import CurrentJob as CurrentJob
from ._handle import current_job as current_job
from ._info import JobInfo as JobInfo
from ._job import Job as Job
from ._job import JobHooks as JobHooks
from ._journal import JournalConfig as JournalConfig
from ._limitdefs import ConcurrencyLimit as ConcurrencyLimit
from ._limitdefs import RateLimit as RateLimit
from ._limitdefs import Snooze as Snooze
from ._options import JobOptions as JobOptions
from ._options import job as job
from ._periodic import Periodic as Periodic
from ._ports import Engine as Engine
from ._pressure import YieldToRequests as YieldToRequests
from ._progress import Progress as Progress
from ._proxy import BackgroundProxy as BackgroundProxy
from ._proxy import background as background
from ._settings import BackburnerSettings as BackburnerSettings
from ._settings import QueueConfig as QueueConfig
from ._shutdown import ShutdownReport as ShutdownReport
from ._stats import ExecutorStats as ExecutorStats
from ._stats import JournalStats as JournalStats
from ._stats import LimitStats as LimitStats
from ._stats import PeriodicStats as PeriodicStats
from ._stats import QueueStats as QueueStats
from ._stats import YieldStats as YieldStats
from ._status import JobStatus as JobStatus

__all__ = [
    "Backburner",
    "BackburnerError",
    "BackburnerMiddleware",
    "BackburnerSettings",
    "BackgroundProxy",
    "BrokerUnavailable",
    "Clock",
    "ConcurrencyLimit",
    "CurrentJob",
    "DuplicateJob",
    "Engine",
    "Enqueuer",
    "ExecutorStats",
    "Job",
    "JobCancelled",
    "JobHooks",
    "JobInfo",
    "JobOptions",
    "JobStatus",
    "JobTimeout",
    "JournalConfig",
    "JournalError",
    "JournalStats",
    "LimitStats",
    "NotInJob",
    "NotRunning",
    "Periodic",
    "PeriodicStats",
    "Progress",
    "QueueConfig",
    "QueueFull",
    "QueueStats",
    "RateLimit",
    "ShutdownReport",
    "ShuttingDown",
    "Snooze",
    "YieldStats",
    "YieldToRequests",
    "background",
    "current_job",
    "job",
    "queue_full_handler",
]

__version__ = "0.1.0"

# Reprs and tracebacks say `backburner.Job`, not `backburner._job.Job`.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
