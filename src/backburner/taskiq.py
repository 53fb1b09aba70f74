"""The taskiq engine: the same ``@job`` functions, run by ``taskiq worker`` processes.

``pip install 'backburner[taskiq]'``. One module of your app builds the engine; the web app
and the workers both import it::

    # yourapp/jobs.py
    from backburner import job
    from backburner.taskiq import redis_engine

    engine = redis_engine("redis://127.0.0.1:6379/0")
    broker = engine.broker          # taskiq worker yourapp.jobs:broker
    scheduler = engine.scheduler    # taskiq scheduler yourapp.jobs:scheduler (delays, retries)

    @job(name="send_welcome", retries=3)
    async def send_welcome(user_id: int) -> None: ...

    # yourapp/app.py
    app.add_middleware(BackburnerMiddleware, engine=engine)   # or QueueConfig(engine=engine)

Every registered ``@job`` function becomes a taskiq task of the same name on the workers. At
enqueue the job must be registered, with JSON arguments, and with options the engine can carry:
retries (backburner's backoff, through a retry middleware this engine adds to the broker),
``timeout`` (taskiq's ``timeout`` label), delays and retry backoffs (taskiq's schedule source and
``taskiq scheduler``). ``unique=`` and per-call ``retry_on`` are refused. See "When you outgrow
one process" in the docs (docs/how-to/scaling-out.md).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from taskiq import AsyncBroker, ScheduleSource, TaskiqEvents, TaskiqScheduler
from taskiq.kicker import AsyncKicker
from taskiq.middlewares import SimpleRetryMiddleware, SmartRetryMiddleware
from taskiq.result_backends.dummy import DummyResultBackend

from ._checks import check_timeout
from ._errors import BrokerUnavailable
from ._job import traceparent_of
from ._options import JobOptions, options_of
from ._registry import registered
from ._settings import QueueConfig

if TYPE_CHECKING:
    from taskiq import TaskiqMessage, TaskiqState

    from ._executor import Backburner
    from ._job import Job

__all__ = ["TaskiqEngine", "redis_engine"]

logger = logging.getLogger("backburner")

_FIRST_POLL, _MAX_POLL = 0.02, 0.5  # seconds between looks for a result


class TaskiqEngine:
    """A remote engine over a taskiq broker you supply: ``Backburner(engine=TaskiqEngine(b))``.

    :param broker: any taskiq broker (``taskiq_redis.RedisStreamBroker(url)``, say). Give it a
        result backend (``broker.with_result_backend(...)``) for ``await job`` to return the
        job's value; without one, ``await job`` raises saying so.
    :param schedule_source: where delayed jobs and retry backoffs wait
        (``taskiq_redis.ListRedisScheduleSource(url)``), run by ``taskiq scheduler`` on
        ``engine.scheduler``. Without one, ``enqueue_in``/``enqueue_at`` and retries with a
        backoff are refused at enqueue.
    :param send_timeout: seconds one send to the broker may take before it counts as failed.
    :param retry_sends_for: seconds a job from sync ``enqueue`` keeps being sent again while
        the broker is unreachable, before it fails (logged, in ``failures()``).
    :param worker_queues: on a worker, ``background.enqueue`` inside a job sends follow-up
        jobs through this broker; name here the queues they use besides ``"default"``.
    """

    def __init__(
        self,
        broker: AsyncBroker,
        *,
        schedule_source: ScheduleSource | None = None,
        send_timeout: float = 5.0,
        retry_sends_for: float = 30.0,
        worker_queues: tuple[str, ...] | list[str] = (),
    ) -> None:
        """Wire the engine into ``broker``: a retry middleware, and tasks on worker startup."""
        if not isinstance(broker, AsyncBroker):
            raise TypeError(f"broker must be a taskiq AsyncBroker, got {broker!r}")
        if schedule_source is not None and not isinstance(schedule_source, ScheduleSource):
            raise TypeError(
                f"schedule_source must be a taskiq ScheduleSource, got {schedule_source!r}"
            )
        for middleware in broker.middlewares:
            if isinstance(middleware, (SimpleRetryMiddleware, SmartRetryMiddleware)):
                raise ValueError(
                    f"the broker already has a {type(middleware).__name__}: remove it, the "
                    f"engine adds its own, which follows each @job's retries and backoff"
                )
        _check_schedule_prefix(schedule_source)
        self.broker = broker
        self.schedule_source = schedule_source
        self.send_timeout = check_timeout("send_timeout", send_timeout)
        self.retry_sends_for = check_timeout("retry_sends_for", retry_sends_for)
        self.worker_queues = tuple(worker_queues)
        #: What carries the jobs, for stats, logs and error messages.
        self.name = _describe(broker)
        #: ``taskiq scheduler module:scheduler`` runs delayed jobs and retry backoffs.
        self.scheduler = (
            None
            if schedule_source is None
            else TaskiqScheduler(broker=broker, sources=[schedule_source])
        )
        broker.add_middlewares(BackoffRetries(schedule_source))
        broker.add_event_handler(TaskiqEvents.WORKER_STARTUP, self._worker_startup)
        broker.add_event_handler(TaskiqEvents.WORKER_SHUTDOWN, self._worker_shutdown)
        self._opened = 0
        self._worker_executor: Backburner | None = None

    def __repr__(self) -> str:
        return f"<TaskiqEngine {self.name}>"

    # The executor's side (see backburner._remote.Engine).

    async def open(self) -> None:
        """Start the broker's client side (once, however many executors use the engine)."""
        self._opened += 1
        if self._opened == 1 and not self.broker.is_worker_process:
            try:
                await self.broker.startup()
                if self.schedule_source is not None:
                    await self.schedule_source.startup()
            except Exception as exc:
                self._opened -= 1
                raise BrokerUnavailable(
                    f"cannot start {self.name}: {type(exc).__name__}: {exc}. Start the broker, "
                    f"or check its URL, before the app"
                ) from exc
            except BaseException:
                self._opened -= 1
                raise

    async def close(self) -> None:
        """Shut the broker's client side down when its last user closes."""
        self._opened -= 1
        if self._opened == 0 and not self.broker.is_worker_process:
            try:
                await self.broker.shutdown()
            finally:
                if self.schedule_source is not None:  # its own connections, on this loop
                    await _shutdown_source(self.schedule_source)

    def check(self, label: str, options: JobOptions, delayed: bool) -> None:
        """Refuse, before anything is sent, what this engine cannot carry."""
        if self.schedule_source is not None:
            return
        if delayed:
            raise ValueError(
                f"{label}: a delayed job needs a schedule source on {self.name}: give "
                f"TaskiqEngine(broker, schedule_source=ListRedisScheduleSource(url)) and run "
                f"'taskiq scheduler yourapp.jobs:scheduler' beside the workers"
            )
        if options.retries and options.backoff > 0:
            raise ValueError(
                f"{label}: retries={options.retries} with a backoff of {options.backoff}s need a "
                f"schedule source on {self.name} to wait in: give TaskiqEngine(broker, "
                f"schedule_source=...) and run 'taskiq scheduler', or set backoff=0"
            )

    async def send(self, job: Job[Any], task_name: str, due: float | None) -> None:
        """Kick the task (its id is the job's), or add it to the schedule source for ``due``."""
        kicker: AsyncKicker[Any, Any] = AsyncKicker(
            task_name=task_name, broker=self.broker, labels=_labels(job)
        ).with_task_id(job.id)
        kwargs = job.kwargs or {}
        if due is None:
            await kicker.kiq(*job.args, **kwargs)
        else:
            assert self.schedule_source is not None  # check() refused the job otherwise
            when = datetime.fromtimestamp(due, timezone.utc)
            await kicker.schedule_by_time(self.schedule_source, when, *job.args, **kwargs)

    async def outcome(self, job: Job[Any]) -> tuple[bool, Any, int]:
        """Wait for the job's result in the broker's result backend."""
        backend = self.broker.result_backend
        if isinstance(backend, DummyResultBackend):
            raise RuntimeError(
                f"job {job.id} ({job.name}) was sent to {self.name}, which has no result "
                f"backend, so its result stays on the worker. Give the broker one "
                f"(broker.with_result_backend(RedisAsyncResultBackend(url))) to await jobs"
            )
        pause = _FIRST_POLL
        while not await backend.is_result_ready(job.id):
            await asyncio.sleep(pause)
            pause = min(pause * 2, _MAX_POLL)
        result = await backend.get_result(job.id)
        attempts = int(result.labels.get("_retries", 0)) + 1
        if result.is_err:
            return False, result.error, attempts
        return True, result.return_value, attempts

    # The worker's side.

    def register_jobs(self) -> list[str]:
        """Register every ``@job`` function imported so far as a task of the same name.

        Called when a ``taskiq worker`` starts (after it imported your modules); call it
        yourself if you run the broker's receiver another way. Returns the new task names.
        """
        added = []
        for entry in registered():
            if self.broker.find_task(entry.name) is None:
                retry_on = options_of(entry.fn).retry_on
                self.broker.register_task(entry.fn, entry.name, types_of_exceptions=retry_on)
                added.append(entry.name)
        return added

    async def _worker_startup(self, state: TaskiqState) -> None:
        names = self.register_jobs()
        logger.info("taskiq worker: %d backburner jobs registered as tasks", len(names))
        # Jobs that enqueue follow-up jobs (background.enqueue) send them through the broker.
        from ._executor import Backburner

        queues = {name: QueueConfig() for name in self.worker_queues}
        self._worker_executor = Backburner(engine=self, queues=queues)
        await self._worker_executor.start()

    async def _worker_shutdown(self, state: TaskiqState) -> None:
        executor, self._worker_executor = self._worker_executor, None
        if executor is not None:
            await executor.aclose()


async def _shutdown_source(source: ScheduleSource) -> None:
    await source.shutdown()
    # taskiq-redis 1.2's ListRedisScheduleSource.shutdown() leaves its connections open: left
    # to the garbage collector, they outlive the event loop (uvloop then hangs in close()).
    pool = getattr(source, "_connection_pool", None)
    disconnect = getattr(pool, "disconnect", None)
    if disconnect is not None:
        await disconnect()


class BackoffRetries(SmartRetryMiddleware):
    """taskiq's retry middleware, with each job's own retries, backoff and ``retry_on``.

    ``retries=N`` allows N more attempts after the first; the delay before attempt k + 1 is
    ``JobOptions.retry_delay(k)`` (``backoff * 2 ** (k - 1)``, capped, spread by ``jitter``),
    waited in the schedule source (so to within ``taskiq scheduler``'s one-second tick).
    """

    def __init__(self, schedule_source: ScheduleSource | None) -> None:
        """Retry only jobs whose labels ask for it (the engine sets them from the options)."""
        super().__init__(
            default_retry_count=1,
            default_retry_label=False,
            no_result_on_retry=True,
            schedule_source=schedule_source,
        )

    def make_delay(self, message: TaskiqMessage, retries: int) -> float:
        """The job's own backoff before the next attempt."""
        labels = message.labels
        options = JobOptions(
            backoff=float(labels.get("backoff", 1.0)),
            backoff_max=float(labels.get("backoff_max", 300.0)),
            jitter=float(labels.get("jitter", 0.25)),
        )
        return options.retry_delay(retries)


def _labels(job: Job[Any]) -> dict[str, Any]:
    options = job.options
    labels: dict[str, Any] = {"backburner_queue": job.queue}
    if options.retries:
        labels.update(
            retry_on_error=True,
            max_retries=options.retries + 1,  # taskiq counts every attempt
            backoff=options.backoff,
            backoff_max=options.backoff_max,
            jitter=options.jitter,
        )
    if options.timeout is not None:
        labels["timeout"] = options.timeout
    # The trace it was enqueued in (W3C, the key OpenTelemetry's propagator reads): taskiq's
    # OpenTelemetryMiddleware on the workers continues it.
    traceparent = traceparent_of(job)
    if traceparent is not None:
        labels["traceparent"] = traceparent
    return labels


def _check_schedule_prefix(source: ScheduleSource | None) -> None:
    """Refuse a ``ListRedisScheduleSource`` whose key prefix holds a colon.

    taskiq-redis (1.2) finds a past minute's schedules by parsing the time out of each key
    after its second colon: under a prefix with a colon of its own no past key parses, so a
    schedule added after the scheduler's last look in its minute (a retry due at second 59,
    say) is never sent, and nothing says so. Seen in this project's CI as a job that hung.
    """
    try:
        from taskiq_redis import ListRedisScheduleSource
    except ImportError:  # another broker's package: its sources are not this one
        return
    prefix = (
        getattr(source, "_prefix", None) if isinstance(source, ListRedisScheduleSource) else None
    )
    if isinstance(prefix, str) and ":" in prefix:
        raise ValueError(
            f"ListRedisScheduleSource prefix {prefix!r} holds a ':': taskiq-redis cannot read "
            f"the time of a past minute's key under it, so a delayed job or retry whose "
            f"minute passed before the scheduler looked would never be sent. Use a prefix "
            f"without ':' ({prefix.replace(':', '-')!r}, say)"
        )


def _describe(broker: AsyncBroker) -> str:
    parts = [f"taskiq {type(broker).__name__}"]
    pool = getattr(broker, "connection_pool", None)
    connection = getattr(pool, "connection_kwargs", None)
    if isinstance(connection, dict) and "host" in connection:
        parts.append(f"at {connection['host']}:{connection.get('port', 6379)}")
    queue_name = getattr(broker, "queue_name", None)
    if isinstance(queue_name, str):
        parts.append(f"queue {queue_name!r}")
    return " ".join(parts)


def redis_engine(
    url: str,
    *,
    queue_name: str = "backburner",
    results: bool = True,
    result_ttl: int = 3600,
    redeliver_after: float = 600.0,
    send_timeout: float = 5.0,
    retry_sends_for: float = 30.0,
    worker_queues: tuple[str, ...] | list[str] = (),
) -> TaskiqEngine:
    """A ``TaskiqEngine`` over Redis, set up the way backburner's tests run it.

    A ``RedisStreamBroker`` (a Redis stream with a consumer group: a job is acknowledged once
    its result is saved, and one a dead worker held is delivered again after
    ``redeliver_after`` seconds), a JSON result backend (results kept ``result_ttl`` seconds;
    ``results=False`` for none) and a ``ListRedisScheduleSource`` for delays and retries, its
    keys under ``<queue_name>-schedule``; ``queue_name`` may not hold a ``:``, as taskiq-redis
    parses those keys by their colons.
    """
    from taskiq.serializers import JSONSerializer
    from taskiq_redis import ListRedisScheduleSource, RedisAsyncResultBackend, RedisStreamBroker

    if ":" in queue_name:  # it prefixes the schedule source's keys: see _check_schedule_prefix
        raise ValueError(
            f"queue_name {queue_name!r} holds a ':', which the schedule source's keys cannot "
            f"(taskiq-redis reads a past minute's key by its colons, and would never send a "
            f"delayed job or retry from it). Use {queue_name.replace(':', '-')!r}, say"
        )
    broker: AsyncBroker = RedisStreamBroker(
        url, queue_name=queue_name, idle_timeout=int(redeliver_after * 1000)
    )
    if results:
        backend: RedisAsyncResultBackend[Any] = RedisAsyncResultBackend(
            url, result_ex_time=result_ttl, serializer=JSONSerializer(), prefix_str=queue_name
        )
        broker = broker.with_result_backend(backend)
    source = ListRedisScheduleSource(url, prefix=f"{queue_name}-schedule")
    return TaskiqEngine(
        broker,
        schedule_source=source,
        send_timeout=send_timeout,
        retry_sends_for=retry_sends_for,
        worker_queues=worker_queues,
    )
