"""The limits' counts: which jobs may go to their queue's workers now, and which are held.

A limited job passes this gate on its way into its queue (``JobQueue.submit_limited``), at
enqueue and again before each retry. If every limit it has lets it go, it takes a token of
each (a concurrency slot, a start in a rate window) and goes to its queue's waiting jobs; if
one refuses, it is held in that limit's bucket for its key, in enqueue order, as ``blocked``
(a concurrency limit: it waits for a token back) or ``throttled`` (a rate window, or a limit
backing off: one scheduler entry per bucket wakes it). A held job holds no worker, so jobs
with other keys run past it. Its concurrency tokens come back when its attempt ends, and the
bucket's held jobs then go, oldest first.

A limit with ``scope="host"`` is counted here too (its tokens in this process) and also in
the files it shares with the app's other processes on this host (``_hostlimits``): a job takes
its host tokens last, once every count here lets it go. A job a host limit refuses is held in
its bucket like any other, and a thread looks at the shared files every ``POLL`` seconds while
some are held (a token another process gives back is told to no one).

One lock guards the counts; it is taken after a queue's lock, never before (the gate calls
the queues only once it has let the lock go). Plain jobs never come here.
"""

from __future__ import annotations

import itertools
import logging
import math
import operator
import re
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from ._hostlimits import POLL, HostBuckets
from ._job import Job
from ._limitdefs import ConcurrencyLimit, Limit, LimitTicket, RateLimit
from ._scheduler import Scheduler
from ._stats import LimitStats
from ._status import JobStatus

__all__ = ["Limits", "keys_of"]

logger = logging.getLogger("backburner")

_BLOCKED, _THROTTLED, _PENDING = JobStatus.BLOCKED, JobStatus.THROTTLED, JobStatus.PENDING
_Admitted = tuple[Job[Any], Callable[[Job[Any]], None]]
# Every this many entries, buckets with nothing left in them are dropped (keys seen once).
_SWEEP_EVERY = 1024
_LEAKS = "its token may stay taken until this process ends"
_CANCELLED_SEQ = math.inf  # the place in line `_seq` gives a job cancelled while held
_ORDER = operator.itemgetter(0)  # sorts (`_held_order(...)`, job) pairs: oldest first


# Shared empty deques of a new bucket, replaced (never appended to) when it needs its own.
_NO_STARTS: deque[list[float]] = deque(maxlen=0)
_NO_JOBS: deque[Job[Any]] = deque(maxlen=0)
_NO_KWARGS: dict[str, Any] = {}  # never written: key_for only reads a job's keywords


class _Bucket:
    """One key of one limit: its tokens taken, its recent starts, its held jobs."""

    __slots__ = ("held", "running", "starts", "timer", "wake_at")

    def __init__(self) -> None:
        self.running = 0  # concurrency tokens taken (jobs waiting for a worker or running)
        # The starts in the rate window, oldest first, as [clock time]: a job let go counts
        # from then (as +inf, never leaving the window) until it starts, then from its start:
        # so a job that waits for a worker is never counted earlier than it runs.
        # (Both deques made when first needed: most buckets of a concurrency limit never
        # hold a job, and a bucket is made for each new key.)
        self.starts: deque[list[float]] = _NO_STARTS
        self.held: deque[Job[Any]] = _NO_JOBS  # cancelled ones are skipped when reached
        self.timer: Any = None  # the scheduler entry that wakes a throttled bucket
        self.wake_at: float | None = None


class _LimitState:
    __slots__ = ("backoff_until", "buckets", "held", "limit")

    def __init__(self, limit: Limit) -> None:
        self.limit = limit
        self.buckets: dict[str | None, _Bucket] = {}
        self.held = 0  # live held jobs, over every bucket
        self.backoff_until = 0.0  # a Snooze(limit=...) holds every job of the limit till then


def keys_of(job: Job[Any]) -> tuple[str | None, ...]:
    """A limited job's keys, one per limit, from its arguments (raising at the call site if a
    key function fails)."""
    fn, args, kwargs = job.fn, job.args, job.kwargs or _NO_KWARGS
    limits = job.options.limits
    if len(limits) == 1:  # the common case, without a list made and copied
        return (limits[0].key_for(fn, args, kwargs),)
    return tuple([limit.key_for(fn, args, kwargs) for limit in limits])


def _unset_admit(job: Any) -> None:  # pragma: no cover - the queue sets it before use
    raise RuntimeError("a limited job was let go before its queue took it")


class Limits:
    """The executor's limits: every ``ConcurrencyLimit`` and ``RateLimit`` its jobs named."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._clock = scheduler.clock
        self._lock = threading.Lock()
        self._states: dict[Limit, _LimitState] = {}
        # Each limited job's ticket, from admission until it ends (kept here, not on the job:
        # a plain job pays not even a slot for limits).
        self._tickets: dict[Job[Any], LimitTicket] = {}
        self._entries = 0
        self._closed = False  # from shutdown's take_held on: nothing more is let go
        #: True once any job had a RateLimit: until then no attempt's start needs telling
        #: (``started``). Written under the lock before such a job reaches a queue.
        self.rated = False
        #: The files host-scoped limits are counted in (the coordination directory's), or None.
        self.host: HostBuckets | None = None
        self._host_names: dict[tuple[str, str], Limit] = {}
        # Buckets a host limit holds jobs in: the poller looks at their files.
        self._host_held: dict[_Bucket, _LimitState] = {}
        self._poller: threading.Thread | None = None
        self._stop = threading.Event()

    def check_host(self, limits: tuple[Limit, ...]) -> None:
        """Admission: refuse host-scoped limits this executor cannot share (``ValueError``)."""
        host = [limit for limit in limits if limit.scope == "host"]
        if not host:
            return
        if self.host is None:
            raise ValueError(
                f"limits {[limit.name for limit in host]} have scope='host': they are counted "
                f"in the coordination directory that the app's processes on this host share, "
                f"and this executor has none (coordination=False, or the default directory "
                f"could not be used). Give Backburner(coordination='some/dir') or drop "
                f"scope='host'"
            )
        with self._lock:
            for limit in host:
                known = self._host_names.setdefault((limit.kind, limit.name), limit)
                if known is not limit:
                    raise ValueError(
                        f"two different host-scoped limits are named {limit.name!r}: the "
                        f"processes find a host limit's counts by its name, so these two would "
                        f"be one budget. Give each its own name= (or use the same object)"
                    )

    # Entering and leaving: any thread.

    def register(self, job: Job[Any], keys: tuple[str | None, ...]) -> None:
        """Admission: the job counts under these keys (one per limit) until it ends."""
        # One dict store, atomic: no lock pass (nothing else knows the job yet).
        self._tickets[job] = LimitTicket(keys, _unset_admit, 0)  # (its place: as it enters)

    def forget(self, job: Job[Any]) -> None:
        """Admission took the job back: it never entered."""
        with self._lock:
            self._tickets.pop(job, None)

    def held_by(self, job: Job[Any]) -> str | None:
        """The name of the limit holding ``job`` now, or None."""
        with self._lock:
            ticket = self._tickets.get(job)
            held_by = None if ticket is None or not job.status.held else ticket.held_by
            return None if held_by is None else held_by.name

    def enter(
        self,
        job: Job[Any],
        admit: Callable[[Job[Any]], None],
        keys: tuple[str | None, ...] | None = None,
    ) -> bool:
        """Take the job's tokens and return True, or hold it (blocked or throttled) until its
        limits let it go, then ``admit(job)`` (its queue's). ``keys``: a new job's (``register``
        in the same lock pass); None: it was registered."""
        lock = self._lock
        lock.acquire()  # (not `with`: half the cost, on a path every limited job takes)
        try:
            # Its place in line, the newest: a job held now goes to the end of its line.
            self._entries = seq = self._entries + 1
            if keys is None:
                ticket = self._tickets[job]
                ticket.admit = admit
                ticket.seq = seq
            else:
                ticket = self._tickets[job] = LimitTicket(keys, admit, seq)
            if seq % _SWEEP_EVERY == 0:
                self._sweep()
            options = job._spec.options  # (a friend: no property call)
            one = options.lone_limit or _one_local(options.limits)
            if one is None:
                refused = self._try_take(job, ticket, None)
                if refused is None:
                    return True
                self._hold(job, ticket, *refused, newest=True)
                return False
            # One ConcurrencyLimit, counted here: `_try_take_one` and `_hold` inlined (the
            # commonest case; the same decisions).
            state = self._states.get(one) or self._state(one)
            key = ticket.keys[0]
            bucket = state.buckets.get(key)
            if bucket is None:
                bucket = state.buckets[key] = _Bucket()
            if state.backoff_until and state.backoff_until > self._clock.now():
                self._hold(job, ticket, state, bucket, _THROTTLED, state.backoff_until, True)
                return False
            held = bucket.held
            status = _BLOCKED
            if bucket.running < one.max:
                while held and not _is_held(held[0]):  # cancelled while held
                    held.popleft()
                if not held:
                    bucket.running += 1
                    ticket.holding = True
                    ticket.reserved = ()
                    return True
                if bucket.wake_at is not None:  # older jobs of this key wait: behind them
                    status = _THROTTLED
            job._status = status  # (`hold` inlined)
            ticket.held_by = one
            if held is _NO_JOBS:
                held = bucket.held = deque()
            held.append(job)
            state.held += 1
            return False
        finally:
            lock.release()

    def release(
        self,
        job: Job[Any],
        done: bool | None = None,
        own: Callable[[Job[Any]], None] | None = None,
    ) -> Job[Any] | None:
        """The job's attempt ended (or it was cancelled): give its tokens back. ``done``:
        whether the job has ended (None: it is asked). Each job this lets go is handed to
        its queue's way in, but for one whose way in is ``own`` (the caller's): that one is
        returned, for the caller to take in its next lock pass."""
        admitted: list[_Admitted] | None = None  # (a list made only when one is let go)
        nxt: Job[Any] | None = None  # (or the one job its lone limit lets go: no list)
        lock = self._lock
        lock.acquire()  # (not `with`: see enter)
        try:
            tickets = self._tickets
            if job.done() if done is None else done:
                ticket = tickets.pop(job, None)  # it has ended: nothing more to count it under
            else:
                ticket = tickets.get(job)
            if ticket is None or not ticket.holding:
                return None
            ticket.holding = False
            lone = job._spec.options.lone_limit
            if lone is None:
                admitted = self._give_back(job, ticket)
            else:  # one ConcurrencyLimit, counted here only: no windows, no files
                state = self._states[lone]
                bucket = state.buckets[ticket.keys[0]]
                held = bucket.held
                if held and not self._closed:
                    nxt = held[0]
                    status = nxt._status  # (`_is_held` inlined; else cancelled while held)
                    if (
                        (status is _BLOCKED or status is _THROTTLED)
                        and nxt._spec.options.lone_limit is lone
                        and not state.backoff_until
                        and bucket.running <= lone.max  # (this job's token still counted)
                    ):  # `_drain` for the commonest case: the next job has this limit alone,
                        # and this job's token passes to it (the bucket's count stays)
                        nxt._status = _PENDING  # (`unhold` inlined)
                        held.popleft()
                        state.held -= 1
                        ticket = tickets[nxt]  # (now the next job's)
                        ticket.holding = True
                        ticket.held_by = None
                    else:
                        nxt = None
                        bucket.running -= 1
                        admitted = self._drain(state, bucket)
                else:
                    bucket.running -= 1
        finally:
            lock.release()
        if nxt is not None:
            if ticket.admit is own:
                return nxt
            ticket.admit(nxt)  # its queue's way in, called once the lock is let go
        elif admitted is not None:
            _admit_all(admitted)
        return None

    def _give_back(self, job: Job[Any], ticket: LimitTicket) -> list[_Admitted] | None:
        # `release` of any job under the lock: its reserved starts, its host tokens, each of
        # its ConcurrencyLimits' tokens; returns the jobs let go, if any.
        admitted: list[_Admitted] | None = None
        if ticket.reserved:  # cancelled before it started: it used none of its windows
            admitted = self._unreserve(ticket)  # (a list of its own)
            if self.host is not None:  # its host tokens and reservations, all of them
                self._host_call(_LEAKS, self.host.forget, _token(job), _host_items(job, ticket))
        elif self.host is not None and self._host_names:
            # (Only once a host-scoped limit was admitted: till then no job has a host
            # token.) Before the bucket drains: its next job takes it.
            self._host_release(job, ticket)
        for limit, key in zip(job.options.limits, ticket.keys, strict=True):
            if isinstance(limit, ConcurrencyLimit):
                state = self._states[limit]
                bucket = state.buckets[key]
                bucket.running -= 1
                if bucket.held and not self._closed:
                    drained = self._drain(state, bucket)
                    admitted = drained if admitted is None else admitted + drained
        return admitted

    def started(self, job: Job[Any]) -> None:
        """The job's attempt starts now: its rate windows count it from now on."""
        # Read without the lock first: a job with no rate limit (nothing reserved) takes none.
        # (Its reservation was made under the lock before the job reached its queue.)
        ticket = self._tickets.get(job)
        if ticket is None or not ticket.reserved:
            return
        with self._lock:
            if ticket.reserved:
                self._stamp(job, ticket)

    def _stamp(self, job: Job[Any], ticket: LimitTicket) -> None:
        reserved, ticket.reserved = ticket.reserved, ()
        if not reserved:
            return
        now = self._clock.now()
        if self.host is not None:
            items = [i for i in _host_items(job, ticket) if isinstance(i[0], RateLimit)]
            if items:
                self._host_call(_LEAKS, self.host.started, _token(job), items, now)
        for limit, bucket, entry in reserved:
            entry[0] = now
            if bucket.held and bucket.timer is None:
                first = bucket.starts[0][0]
                if first != math.inf:
                    self._arm(self._states[limit], bucket, first + limit.per)

    def _unreserve(self, ticket: LimitTicket) -> list[_Admitted]:
        # Take a job's reserved starts out of their windows (by identity: every reservation
        # is an equal [inf]), and let go what the room made allows. Rare: a cancel's path.
        reserved, ticket.reserved = ticket.reserved, ()
        admitted: list[_Admitted] = []
        for limit, bucket, entry in reserved:
            starts = bucket.starts
            for i, start in enumerate(starts):
                if start is entry:
                    del starts[i]
                    break
            if bucket.held and not self._closed:
                admitted += self._drain(self._states[limit], bucket)
        return admitted

    def cancel_held(self, job: Job[Any]) -> bool:
        """Cancel a held job (True), or False if it is held no longer."""
        with self._lock:
            if not job.status.held:
                return False
            job.try_cancel_waiting()  # left in its bucket's deque: skipped when reached
            ticket = self._tickets.pop(job)
            if ticket.held_by is not None:
                self._states[ticket.held_by].held -= 1
            return True

    def back_off(self, limit: Limit, until: float) -> None:
        """Hold every job of ``limit`` (all keys) until clock time ``until`` (a Snooze)."""
        with self._lock:
            state = self._state(limit)
            state.backoff_until = max(state.backoff_until, until)

    def take_held(self, queue: str) -> list[Job[Any]]:
        """Shutdown: let no more jobs go; return the held jobs of ``queue``, cancelled."""
        taken: list[tuple[tuple[float, int], Job[Any]]] = []
        with self._lock:
            self._closed = True
            self._stop.set()  # (the poller ends)
            self._poller = None
            self._host_held.clear()
            for state in self._states.values():
                for bucket in state.buckets.values():
                    if not bucket.held:
                        continue
                    keep: deque[Job[Any]] = deque()
                    for job in bucket.held:
                        if job.queue != queue:
                            keep.append(job)
                        elif job.try_cancel_waiting() is not None:
                            state.held -= 1
                            ticket = self._tickets.pop(job, None)
                            taken.append((_held_order(job, ticket), job))
                    bucket.held = keep
                    if bucket.timer is not None and not keep:
                        bucket.timer.cancel()
                        bucket.timer = bucket.wake_at = None
        taken.sort(key=_ORDER)
        return [job for _, job in taken]

    def reopen(self) -> None:
        """The executor starts again after a shutdown: let jobs go again."""
        with self._lock:
            self._closed = False
            self._stop.clear()

    # Watching: any thread.

    def stats(self) -> tuple[LimitStats, ...]:
        """Each limit's counts, in the order the limits were first used."""
        now = self._clock.now()
        with self._lock:
            return tuple(_stats_of(state, now) for state in self._states.values())

    def held_jobs(self, queue: str | None = None, limit: int | None = None) -> list[Job[Any]]:
        """The jobs a limit holds now (of ``queue``, or all), oldest first, at most ``limit``.

        O(keys holding jobs, and ``limit`` jobs from each) under the lock.
        """
        with self._lock:
            tickets = self._tickets
            jobs = [
                (_held_order(job, tickets.get(job)), job)
                for state in self._states.values()
                for bucket in state.buckets.values()
                if bucket.held
                for job in itertools.islice(
                    (j for j in bucket.held if j.status.held and queue in (None, j.queue)), limit
                )
            ]
        jobs.sort(key=_ORDER)
        return [job for _, job in jobs[:limit]]

    # Under the lock.

    def _state(self, limit: Limit) -> _LimitState:
        state = self._states.get(limit)
        if state is None:
            state = self._states[limit] = _LimitState(limit)
            if isinstance(limit, RateLimit):
                self.rated = True
        return state

    def _try_take(
        self, job: Job[Any], ticket: LimitTicket, draining: _Bucket | None
    ) -> tuple[_LimitState, _Bucket, JobStatus, float | None] | None:
        """Take a token of each of the job's limits, or return the first that refuses:
        (its state, its bucket, the status to hold the job as, when to look again)."""
        limits = job.options.limits  # (one local ConcurrencyLimit: `_try_take_one` instead)
        now = self._clock.now()
        found = []
        for limit, key in zip(limits, ticket.keys, strict=True):
            state = self._states.get(limit) or self._state(limit)
            bucket = state.buckets.get(key)
            if bucket is None:
                bucket = state.buckets[key] = _Bucket()
            found.append((limit, key, bucket))
            refusal = _refusal(limit, state, bucket, now)
            held = bucket.held
            if held and bucket is not draining:
                while held and not held[0].status.held:  # cancelled while held
                    held.popleft()
                if refusal is None and held and self._tickets[held[0]].seq < ticket.seq:
                    # Older jobs of this key wait already: this one waits behind them. (One
                    # that another limit held came later to this bucket, but is older.)
                    throttled = bucket.wake_at is not None or (
                        bucket in self._host_held and isinstance(limit, RateLimit)
                    )
                    status = _THROTTLED if throttled else _BLOCKED
                    return state, bucket, status, None
            if refusal is not None:
                status, when = refusal
                return state, bucket, status, when
        if self.host is not None:
            refused = self._host_take(job, found, now)
            if refused is not None:
                return refused
        reserved: list[Any] | tuple[()] = ()
        for limit, _key, bucket in found:
            if isinstance(limit, ConcurrencyLimit):
                bucket.running += 1
            else:
                entry = [math.inf]
                if bucket.starts is _NO_STARTS:
                    bucket.starts = deque()
                bucket.starts.append(entry)
                reserved = [*reserved, (limit, bucket, entry)]
        ticket.holding = True
        ticket.reserved = reserved
        return None

    def _try_take_one(
        self, limit: ConcurrencyLimit, ticket: LimitTicket, draining: _Bucket | None
    ) -> tuple[_LimitState, _Bucket, JobStatus, float | None] | None:
        # `_try_take` for the commonest case, one ConcurrencyLimit: the same decisions, without
        # the loops, the tuples and (unless the limit ever backed off) the clock read.
        state = self._states.get(limit) or self._state(limit)
        buckets = state.buckets
        key = ticket.keys[0]
        bucket = buckets.get(key)
        if bucket is None:
            bucket = buckets[key] = _Bucket()
        if state.backoff_until and state.backoff_until > self._clock.now():
            return state, bucket, _THROTTLED, state.backoff_until
        if bucket.running >= limit.max:
            return state, bucket, _BLOCKED, None
        held = bucket.held
        if held and bucket is not draining:
            while held and not _is_held(held[0]):  # cancelled while held
                held.popleft()
            if held and self._tickets[held[0]].seq < ticket.seq:
                # Older jobs of this key wait already: this one waits behind them.
                return state, bucket, _THROTTLED if bucket.wake_at is not None else _BLOCKED, None
        bucket.running += 1
        ticket.holding = True
        ticket.reserved = ()
        return None

    def _host_take(
        self, job: Job[Any], found: list[tuple[Limit, str | None, _Bucket]], now: float
    ) -> tuple[_LimitState, _Bucket, JobStatus, float | None] | None:
        """Take the job's host tokens in the shared files, or hold it in the first bucket
        that refuses (the poller looks again)."""
        items = [(limit, key) for limit, key, _ in found if limit.scope == "host"]
        if not items:
            return None
        assert self.host is not None
        refused = self._host_call("the job waits", self.host.take, _token(job), items, now)
        if refused is None:
            return None
        limit = items[refused][0]
        state = self._states[limit]
        bucket = next(b for lim, _, b in found if lim is limit)
        self._host_held[bucket] = state
        if self._poller is None:
            self._poller = threading.Thread(
                target=self._poll, name="backburner-host-limits", daemon=True
            )
            self._poller.start()
        status = _BLOCKED if isinstance(limit, ConcurrencyLimit) else _THROTTLED
        return state, bucket, status, None

    def _host_release(self, job: Job[Any], ticket: LimitTicket) -> None:
        assert self.host is not None
        items = [i for i in _host_items(job, ticket) if isinstance(i[0], ConcurrencyLimit)]
        if items:
            self._host_call(_LEAKS, self.host.release, _token(job), items)

    def _host_call(self, then: str, method: Callable[..., Any], *args: Any) -> Any:
        """A call to the shared files. One that fails is logged with ``then`` (what follows)
        and returns 0: a take then refuses (the poller tries again); a start or an end leaves
        its token to be freed when this process ends."""
        try:
            return method(*args)
        except OSError as exc:
            logger.warning(
                "host-scoped limits: the coordination directory failed: %s; %s", exc, then
            )
            return 0

    def _poll(self) -> None:
        # The poller's thread: while host limits hold jobs here, look at their files.
        me = threading.current_thread()
        while True:
            self._stop.wait(POLL)
            admitted: list[_Admitted] = []
            with self._lock:
                if self._poller is not me or self._closed:
                    return
                for bucket, state in list(self._host_held.items()):
                    if bucket.held:
                        admitted += self._drain(state, bucket)
                    if not bucket.held:
                        del self._host_held[bucket]
                if not self._host_held:
                    self._poller = None
            _admit_all(admitted)
            if self._poller is not me:
                return

    def _hold(
        self,
        job: Job[Any],
        ticket: LimitTicket,
        state: _LimitState,
        bucket: _Bucket,
        status: JobStatus,
        when: float | None,
        newest: bool = False,
    ) -> None:
        job.hold(status)
        ticket.held_by = state.limit
        held = bucket.held
        if held is _NO_JOBS:
            held = bucket.held = deque()
        at = len(held)
        if not newest:
            # Moved here from another limit's bucket (``_drain``): it takes its place in
            # line, before the newer jobs held here and the cancelled ones among them.
            # (Rare: a linear search from the end.)
            while at and self._seq(held[at - 1]) > ticket.seq:
                at -= 1
        if at == len(held):
            held.append(job)
        else:
            held.insert(at, job)
        state.held += 1
        if when is not None:
            self._arm(state, bucket, when)

    def _seq(self, job: Job[Any]) -> float:
        # A job's place in line; for one cancelled while held (its ticket gone), a place
        # after every other, so that a search for a job's place passes over it.
        ticket = self._tickets.get(job)
        return _CANCELLED_SEQ if ticket is None else ticket.seq

    def _arm(self, state: _LimitState, bucket: _Bucket, when: float) -> None:
        if bucket.timer is not None and bucket.wake_at is not None and bucket.wake_at <= when:
            return
        if bucket.timer is not None:
            bucket.timer.cancel()
        bucket.wake_at = when
        bucket.timer = self._scheduler.call_at(when, self._wake, (state, bucket))

    def _wake(self, arg: tuple[_LimitState, _Bucket]) -> None:
        # A throttled bucket's time came (scheduler, loop thread): let go what it allows.
        state, bucket = arg
        with self._lock:
            bucket.timer = bucket.wake_at = None
            admitted = [] if self._closed else self._drain(state, bucket)
        _admit_all(admitted)

    def _drain(self, state: _LimitState, bucket: _Bucket) -> list[_Admitted]:
        """Let the bucket's held jobs go, oldest first, while its limits allow; returns them
        with their queue's way in, to call once the lock is let go."""
        admitted: list[_Admitted] = []
        held = bucket.held
        limit = state.limit
        # A concurrency limit never backed off: its own room is one comparison, no clock read.
        cap = limit.max if isinstance(limit, ConcurrencyLimit) and not state.backoff_until else 0
        while held:
            job = held[0]
            status = job.status  # (`_is_held` inlined)
            if status is not _BLOCKED and status is not _THROTTLED:  # cancelled while held
                held.popleft()
                continue
            if cap:
                if bucket.running >= cap:
                    break  # (the common case, checked first: no room here yet)
            else:
                own = _refusal(limit, state, bucket, self._clock.now())
                if own is not None:
                    if own[1] is not None:
                        self._arm(state, bucket, own[1])
                    break
            ticket = self._tickets[job]
            limits = job.options.limits
            if cap and len(limits) == 1 and limit.scope == "process":
                # This limit is its only one, and has room here (and no other process to
                # ask): its token is taken here.
                bucket.running += 1
                ticket.holding = True
                ticket.reserved = ()
                refused = None
            elif (one := _one_local(limits)) is not None:  # (one call less)
                refused = self._try_take_one(one, ticket, bucket)
            else:
                refused = self._try_take(job, ticket, bucket)
            if refused is not None and refused[1] is bucket:
                if refused[3] is not None:
                    self._arm(state, bucket, refused[3])
                break
            held.popleft()
            state.held -= 1
            if refused is None:
                job.unhold()
                ticket.held_by = None
                admitted.append((job, ticket.admit))
            else:  # another of its limits holds it now
                self._hold(job, ticket, *refused)
        return admitted

    def _sweep(self) -> None:
        now = self._clock.now()
        for state in self._states.values():
            per = state.limit.per if isinstance(state.limit, RateLimit) else 0.0
            idle = [
                key
                for key, bucket in state.buckets.items()
                if not bucket.running
                and not bucket.held
                and bucket.timer is None
                # (every start, not the last: a job let go before one that started before
                # it is still +inf, and must be counted when it starts; a concurrency limit's
                # bucket has none, and skips making the generator)
                and (not bucket.starts or all(start[0] <= now - per for start in bucket.starts))
            ]
            for key in idle:
                del state.buckets[key]


def _refusal(
    limit: Limit, state: _LimitState, bucket: _Bucket, now: float
) -> tuple[JobStatus, float | None] | None:
    """Why ``limit`` holds a job of ``bucket`` now (status, when to look again), or None."""
    if state.backoff_until > now:
        return _THROTTLED, state.backoff_until
    if isinstance(limit, ConcurrencyLimit):
        return (_BLOCKED, None) if bucket.running >= limit.max else None
    assert isinstance(limit, RateLimit)
    starts = bucket.starts
    horizon = now - limit.per
    while starts and starts[0][0] <= horizon:
        starts.popleft()
    if len(starts) >= limit.limit:
        first = starts[0][0]  # +inf: it waits for a worker; its start will look again
        return _THROTTLED, None if first == math.inf else first + limit.per
    return None


def _host_items(job: Job[Any], ticket: LimitTicket) -> list[tuple[Limit, str | None]]:
    return [
        (limit, key)
        for limit, key in zip(job.options.limits, ticket.keys, strict=True)
        if limit.scope == "host"
    ]


def _token(job: Job[Any]) -> str:
    """The job's name in the shared files (an id given by hand may hold spaces)."""
    return re.sub(r"\s", "_", job.id)


def _held_order(job: Job[Any], ticket: LimitTicket | None) -> tuple[float, int]:
    # Oldest first: by enqueue time, and within one millisecond (jobs accepted in it share
    # one time) by their place in the gate's line.
    return (job.enqueued_at, 0 if ticket is None else ticket.seq)


def _admit_all(admitted: list[_Admitted]) -> None:
    for job, admit in admitted:
        admit(job)


def _one_local(limits: tuple[Limit, ...]) -> ConcurrencyLimit | None:
    # The commonest case, that `_try_take_one` serves: one ConcurrencyLimit, counted here only.
    if len(limits) == 1:
        limit = limits[0]
        if isinstance(limit, ConcurrencyLimit) and limit.scope == "process":
            return limit
    return None


def _is_held(job: Job[Any]) -> bool:
    # `job.status.held` without the enum's property call: this runs for every held job.
    status = job.status
    return status is _BLOCKED or status is _THROTTLED


def _stats_of(state: _LimitState, now: float) -> LimitStats:
    limit = state.limit
    buckets = state.buckets.values()
    if isinstance(limit, ConcurrencyLimit):
        size, per = limit.max, None
        running = sum(bucket.running for bucket in buckets)
    else:
        assert isinstance(limit, RateLimit)
        size, per = limit.limit, limit.per
        running = sum(1 for b in buckets for start in b.starts if start[0] > now - limit.per)
    wakes = [b.wake_at for b in buckets if b.wake_at is not None]
    return LimitStats(
        name=limit.name,
        kind=limit.kind,
        scope=limit.scope,
        max=size,
        per=per,
        running=running,
        held=state.held,
        keys=len(state.buckets),
        next_free=min(wakes) if wakes else None,
        backoff_until=state.backoff_until if state.backoff_until > now else None,
    )
