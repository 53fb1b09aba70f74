"""``lookup(job_id)``: a snapshot of a job in every state, and finished jobs kept for a while."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import math
import threading
import types
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backburner import (
    Backburner,
    Job,
    JobInfo,
    JobStatus,
    QueueConfig,
    background,
    current_job,
    job,
)
from backburner._clock import SystemClock
from backburner._results import KeptResults, result_size
from backburner.testing import ManualClock

from .jobs import Gate, add, echo, fail, noop
from .steps import between_steps

pytestmark = pytest.mark.anyio


async def report_then_hold(gate: Gate) -> str:
    current_job().set_progress(3, 10, "three")
    await gate.hold()
    return "held"


async def test_a_running_job_is_found_with_its_progress() -> None:
    gate = Gate()
    async with Backburner() as bg:
        running = bg.enqueue(report_then_hold, gate)
        await gate.started.wait()
        info = await bg.lookup(running.id)
        assert info is not None
        assert (info.id, info.name, info.queue) == (running.id, "report_then_hold", "default")
        assert (info.status, info.attempt, info.position) == (JobStatus.RUNNING, 1, None)
        assert info.progress is not None
        assert (info.progress.done, info.progress.total, info.progress.message) == (3, 10, "three")
        assert info.started_at is not None
        assert info.finished_at is None
        assert (info.result, info.has_result, info.error, info.expires_at) == (
            None,
            False,
            None,
            None,
        )
        gate.opened.set()
        await running


async def test_pending_jobs_are_found_with_their_place_in_the_queue() -> None:
    gate = Gate()
    async with Backburner(workers=1) as bg:
        bg.enqueue(gate.hold)
        await gate.started.wait()
        waiting = [bg.enqueue(noop) for _ in range(3)]
        waiting[0].cancel()  # a cancelled job holds no place
        info = await bg.lookup(waiting[2].id)
        assert info is not None
        assert (info.status, info.position, info.started_at) == (JobStatus.PENDING, 1, None)
        first = await bg.lookup(waiting[1].id)
        assert first is not None
        assert first.position == 0
        gate.opened.set()


@pytest.fixture
async def busy() -> AsyncIterator[Backburner]:
    """An executor whose only worker is held: every job enqueued on it waits."""
    gate = Gate()
    async with Backburner(workers=1) as bg:
        bg.enqueue(gate.hold)
        await gate.started.wait()
        yield bg
        gate.opened.set()


def _number(job_id: str) -> int:
    return int(job_id.rpartition("-")[2])


async def test_searching_the_waiting_jobs_makes_no_id_for_them(busy: Backburner) -> None:
    # Ids are numbered in the order they are first asked for: a lookup that made one for
    # every waiting job it passed (each a number held and a string formatted, at every
    # request of a status endpoint) would number these in queue order.
    bg = busy
    first, second = bg.enqueue(noop), bg.enqueue(noop)
    later = bg.enqueue_in(60, noop)
    assert await bg.lookup("nope-1") is None
    made = second.id  # the first id made since: the search made none
    assert await bg.lookup(made) is not None
    assert _number(first.id) > _number(made)
    assert _number(later.id) > _number(made)


async def test_ids_this_process_never_made_name_no_job(busy: Backburner) -> None:
    bg = busy
    waiting = bg.enqueue(noop)
    job_id = waiting.id
    tag, _, digits = job_id.rpartition("-")
    for other in (
        f"{tag}-0{digits}",  # the same number, written another way
        f"{tag}-{int(digits) + 1000}",  # a number not made yet
        f"{tag}x-{digits}",  # another process's tag
        f"{tag}-{digits}-",
        f"{tag}-+{digits}",
        f"{tag}-{chr(0x661) * len(digits)}",  # digits (ARABIC-INDIC ONE), but not ASCII
    ):
        assert await bg.lookup(other) is None, other
    found = await bg.lookup(job_id)
    assert found is not None
    assert found.status is JobStatus.PENDING


async def test_a_job_is_found_by_its_id_from_the_moment_another_thread_can_read_it(
    busy: Backburner,
) -> None:
    # `job.id` draws a number under a lock, but a drawn id is read without it: once the job
    # holds its number, another thread may read the id and look it up at once, and must find
    # the job. A tracer runs that thread's part between two steps of the drawing thread's.
    bg = busy
    waiting = bg.enqueue(noop)
    found: list[object] = []
    code = Job.id.fget.__code__  # type: ignore[attr-defined]

    def look() -> None:
        if not found and getattr(waiting, "_seq", None) is not None:
            found.append(bg.find_job(waiting.id))  # the other thread, between two steps

    with between_steps(code, look):
        waiting.id  # noqa: B018 - drawn here, step by step
    assert found == [waiting]


async def test_an_id_with_thousands_of_digits_names_no_job_and_raises_nothing(
    busy: Backburner,
) -> None:
    # A status URL is anyone's to type: this process's tag (in every id it hands out) and
    # more digits than int() converts (4,300) must be an unknown id, not a ValueError (a 500).
    bg = busy
    waiting = bg.enqueue(noop)
    tag = waiting.id.rpartition("-")[0]
    for digits in ("1" * 5000, "9" * 25):
        assert await bg.lookup(f"{tag}-{digits}") is None
        assert bg.find_job(f"{tag}-{digits}") is None


async def test_scheduled_and_retrying_jobs_are_found_with_their_state() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        later = bg.enqueue_in(60, noop)
        retried = bg.options(retries=1, backoff=30, jitter=0).enqueue(fail, "first")
        await bg.join()  # (a job waiting for its retry does not count)
        scheduled = await bg.lookup(later.id)
        assert scheduled is not None
        assert (scheduled.status, scheduled.attempt, scheduled.position) == (
            JobStatus.SCHEDULED,
            0,
            None,
        )
        retrying = await bg.lookup(retried.id)
        assert retrying is not None
        assert (retrying.status, retrying.attempt) == (JobStatus.RETRYING, 1)
        assert retrying.error == "ValueError: first"  # the last attempt's error, while it waits
        clock.advance(60)
        await bg.join()


async def test_finished_jobs_are_found_with_their_result_or_error() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock, result_ttl=100) as bg:
        succeeded = bg.enqueue(add, 2, 3)
        failed = bg.enqueue(fail, "boom")
        dead = bg.options(retries=1, backoff=0, jitter=0).enqueue(fail, "again")
        await bg.join()
        clock.advance(0)
        await bg.join()
        assert await succeeded == 5
        await dead.wait()
        info = await bg.lookup(succeeded.id)
        assert info is not None
        assert (info.status, info.result, info.has_result, info.error) == (
            JobStatus.SUCCEEDED,
            5,
            True,
            None,
        )
        assert info.finished_at is not None
        assert info.expires_at == clock.now() + 100
        failed_info = await bg.lookup(failed.id)
        assert failed_info is not None
        assert (failed_info.status, failed_info.error, failed_info.has_result) == (
            JobStatus.FAILED,
            "ValueError: boom",
            False,
        )
        dead_info = await bg.lookup(dead.id)
        assert dead_info is not None
        assert (dead_info.status, dead_info.attempt) == (JobStatus.DEAD, 2)


async def test_cancelled_jobs_are_found_cancelled() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock) as bg:
        later = bg.enqueue_in(60, noop)
        later.cancel()
        info = await bg.lookup(later.id)
        assert info is not None
        assert info.status is JobStatus.CANCELLED


async def test_an_unknown_id_is_none_and_a_non_str_id_a_type_error() -> None:
    async with Backburner() as bg:
        assert await bg.lookup("nope-1") is None
        with pytest.raises(TypeError, match="job_id must be a job's id \\(a str\\), got int"):
            await bg.lookup(12)  # type: ignore[arg-type]


async def test_background_lookup_is_the_executors() -> None:
    async with Backburner() as bg:
        done = bg.enqueue(echo, "hi")
        await done
        info = await background.lookup(done.id)
        assert info is not None
        assert info.result == "hi"


async def test_a_finished_job_expires_after_its_ttl_then_is_forgotten_as_long_again() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock, result_ttl=600) as bg:
        done = bg.options(meta={"user": 7}).enqueue(add, 1, 1)
        await done
        finished_at = done.finished_at
        clock.advance(599.9)
        kept = await bg.lookup(done.id)
        assert kept is not None
        assert kept.status is JobStatus.SUCCEEDED
        assert kept.result == 2
        clock.advance(0.1)
        tomb = await bg.lookup(done.id)
        assert tomb is not None
        assert tomb.status is JobStatus.EXPIRED
        assert tomb.status.finished
        assert tomb.finished
        assert (tomb.id, tomb.name, tomb.queue, tomb.attempt) == (done.id, "add", "default", 1)
        assert (tomb.result, tomb.has_result, tomb.error, tomb.progress) == (
            None,
            False,
            None,
            None,
        )
        assert tomb.finished_at == finished_at
        assert tomb.meta == {"user": 7}  # who may see it can still be told
        assert tomb.expires_at == clock.now() + 600
        clock.advance(599.9)
        assert (await bg.lookup(done.id)) == tomb
        clock.advance(0.1)
        assert await bg.lookup(done.id) is None


async def test_a_failed_or_dead_job_expires_and_is_forgotten_though_failures_keeps_it() -> None:
    # The dead list is a view of its own (failures(), the dashboard): lookup must not answer
    # from it a job the store has let go, as if it had come back.
    clock = ManualClock()
    async with Backburner(clock=clock, result_ttl=10) as bg:
        failed = bg.enqueue(fail, "boom")
        dead = bg.options(retries=1, backoff=0, jitter=0).enqueue(fail, "again")
        await bg.join()
        clock.advance(0)
        await bg.join()
        handles = (failed, dead)
        seen = []
        for step in (0, 10, 10, 10):
            clock.advance(step)
            infos = [await bg.lookup(handle.id) for handle in handles]
            seen.append([info.status if info else None for info in infos])
        assert seen == [
            [JobStatus.FAILED, JobStatus.DEAD],
            [JobStatus.EXPIRED, JobStatus.EXPIRED],
            [None, None],
            [None, None],
        ]
        assert [job.id for job in bg.failures()] == [failed.id, dead.id]
        assert bg.find_job(failed.id) is failed  # what the executor holds, for the dashboard


async def test_with_keep_results_zero_a_failed_job_is_not_found_either() -> None:
    async with Backburner(keep_results=0) as bg:
        failed = bg.enqueue(fail, "boom")
        await failed.wait()
        assert await bg.lookup(failed.id) is None
        assert list(bg.failures()) == [failed]


async def test_past_keep_results_the_oldest_are_forgotten_first() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock, keep_results=3) as bg:
        handles = [bg.enqueue(echo, n) for n in range(5)]
        await bg.join()
        assert [await bg.lookup(h.id) is not None for h in handles] == [False, False] + [True] * 3
        more = [bg.enqueue(echo, n) for n in range(2)]  # settled after a lookup: the same
        await bg.join()
        kept = [await bg.lookup(h.id) is not None for h in handles[2:] + more]
        assert kept == [False, False, True, True, True]


async def test_expired_tombstones_are_bounded_by_keep_results_too() -> None:
    clock = ManualClock()
    async with Backburner(clock=clock, keep_results=2, result_ttl=10) as bg:
        old = [bg.enqueue(echo, n) for n in range(2)]
        await bg.join()
        assert all([await bg.lookup(h.id) is not None for h in old])
        clock.advance(10)
        newer = [bg.enqueue(echo, n) for n in range(2)]
        await bg.join()
        assert all([await bg.lookup(h.id) is not None for h in newer])
        clock.advance(10)
        statuses = [(await bg.lookup(h.id)) for h in old + newer]
        # The old ones' tombstones were forgotten 20s after they ended; the newer are tombs.
        assert [info.status if info else None for info in statuses] == [
            None,
            None,
            JobStatus.EXPIRED,
            JobStatus.EXPIRED,
        ]


async def test_keep_results_zero_keeps_no_finished_job() -> None:
    async with Backburner(keep_results=0) as bg:
        done = bg.enqueue(noop)
        await done
        assert await bg.lookup(done.id) is None


@job(keep_result=False)
async def secret() -> str:
    return "s3cr3t"


async def test_keep_result_false_keeps_the_status_but_never_the_result() -> None:
    async with Backburner() as bg:
        handle = bg.enqueue(secret)
        assert await handle == "s3cr3t"  # the handle still has it: the store does not
        info = await bg.lookup(handle.id)
        assert info is not None
        assert (info.status, info.result, info.has_result) == (JobStatus.SUCCEEDED, None, False)
        per_call = bg.options(keep_result=False).enqueue(echo, "also secret")
        await per_call
        info = await bg.lookup(per_call.id)
        assert info is not None
        assert (info.result, info.has_result) == (None, False)


async def big(size: int) -> bytes:
    return b"x" * size


async def test_a_result_past_max_result_bytes_is_dropped_with_one_warning_per_job_name(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="backburner")
    async with Backburner(max_result_bytes=100) as bg:
        small = bg.enqueue(big, 100)
        large = [bg.enqueue(big, 101), bg.enqueue(big, 5000)]
        await bg.join()
        info = await bg.lookup(small.id)
        assert info is not None
        assert info.result == b"x" * 100
        assert info.has_result
        for handle in large:
            info = await bg.lookup(handle.id)
            assert info is not None
            assert (info.status, info.result, info.has_result) == (
                JobStatus.SUCCEEDED,
                None,
                False,
            )
    warnings = [r for r in caplog.records if "max_result_bytes=100" in r.getMessage()]
    assert len(warnings) == 1
    assert "lookup() keeps its status, not its result" in warnings[0].getMessage()


async def test_a_failed_job_retried_by_hand_is_found_live_then_kept_again() -> None:
    async with Backburner() as bg:
        failed = bg.enqueue(fail, "once")
        await failed.wait()
        bg.retry(failed)
        info = await bg.lookup(failed.id)  # the kept entry is stale: the live job answers
        assert info is not None
        assert info.status is JobStatus.RUNNING
        await failed.wait()
        info = await bg.lookup(failed.id)
        assert info is not None
        assert (info.status, info.attempt) == (JobStatus.FAILED, 2)


async def test_a_lookup_is_a_snapshot_that_does_not_move_with_the_job() -> None:
    gate = Gate()
    async with Backburner() as bg:
        running = bg.enqueue(report_then_hold, gate)
        await gate.started.wait()
        info = await bg.lookup(running.id)
        gate.opened.set()
        await running
    assert info is not None
    assert info.status is JobStatus.RUNNING
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.status = JobStatus.SUCCEEDED  # type: ignore[misc]
    with pytest.raises(TypeError):
        info.meta["x"] = 1  # type: ignore[index]


async def test_meta_is_kept_read_only_and_shown_in_the_job_and_its_snapshots() -> None:
    given = {"user": 7, "tags": ["a"]}
    async with Backburner() as bg:
        handle = bg.options(meta=given).enqueue(whose)
        given["user"] = 8  # changing the caller's dict later changes nothing
        given["tags"].append("b")  # type: ignore[attr-defined]
        assert await handle == {"user": 7, "tags": ["a"]}
        info = await bg.lookup(handle.id)
        assert info is not None
        assert info.meta == {"user": 7, "tags": ["a"]}
        plain = bg.enqueue(whose)
        assert await plain == {}


async def whose() -> dict[str, Any]:
    return dict(current_job().meta)


@pytest.mark.parametrize(
    ("meta", "error", "words"),
    [
        (["user", 7], TypeError, "meta must be a mapping of str keys"),
        ({1: "x"}, TypeError, "meta must be plain JSON .* the int key 1"),
        ({"when": math.nan}, TypeError, "meta must be plain JSON .* nan"),
        ({"obj": object()}, TypeError, "meta must be plain JSON .* a object"),
        ({"blob": "x" * 20_000}, ValueError, "meta takes 20011 characters as JSON, more than"),
    ],
)
def test_bad_meta_is_refused_where_options_are_given(
    meta: Any, error: type[Exception], words: str
) -> None:
    bg = Backburner()
    with pytest.raises(error, match=words):
        bg.options(meta=meta)


@pytest.mark.parametrize(
    ("settings", "error", "words"),
    [
        ({"keep_results": -1}, ValueError, "keep_results must be at least 1"),
        ({"keep_results": 1.5}, TypeError, "keep_results must be an int"),
        ({"result_ttl": 0}, ValueError, "result_ttl must be more than 0 seconds"),
        ({"result_ttl": math.inf}, ValueError, "result_ttl must be a finite number"),
        ({"max_result_bytes": 0}, ValueError, "max_result_bytes must be at least 1"),
    ],
)
def test_bad_result_settings_are_refused_where_written(
    settings: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        Backburner(**settings)


async def test_lookup_from_another_event_loop_reads_the_queues_on_the_executors() -> None:
    gate = Gate()
    async with Backburner(queues={"other": QueueConfig(workers=1)}) as bg:
        running = bg.enqueue(report_then_hold, gate)
        await gate.started.wait()
        found: list[JobInfo | None] = []
        await asyncio.to_thread(lambda: found.append(asyncio.run(bg.lookup(running.id))))
        assert found[0] is not None
        assert found[0].status is JobStatus.RUNNING
        gate.opened.set()


def test_with_the_system_clock_keeping_a_job_runs_no_python_code() -> None:
    # Every job that ends is kept: on the hot path, that must stay a C call (a bounded
    # deque's append), whatever the store does when someone looks.
    store = KeptResults(10, 600.0, 65536, SystemClock())
    assert isinstance(store.keep, types.BuiltinMethodType)


async def test_jobs_cancelled_while_waiting_or_dropped_at_shutdown_are_found_cancelled() -> None:
    gate = Gate()
    clock = ManualClock()
    bg = Backburner(workers=1, clock=clock, shutdown_timeout=1, cancel_grace=0.5)
    await bg.start()
    bg.enqueue(gate.hold)
    await gate.started.wait()
    cancelled, dropped = bg.enqueue(noop), bg.enqueue(noop)
    later = bg.enqueue_in(60, noop)
    assert cancelled.cancel()
    gate.opened.set()
    bg.pause("default")  # the rest waits until shutdown drops it
    await bg.aclose()
    for handle in (cancelled, dropped, later):
        info = await bg.lookup(handle.id)  # the executor has closed: what it kept still answers
        assert info is not None
        assert info.status is JobStatus.CANCELLED


def test_a_results_size_is_counted_only_up_to_a_little_past_the_limit() -> None:
    huge = list(range(1_000_000))  # about 5 MB pickled: counting stops within a frame
    assert result_size(huge, 1000) < 200_000
    assert result_size([1, 2, 3], 1000) < 100
    assert result_size("x" * 5000, 1000) == 5000
    assert result_size(threading.Lock(), 1000) > 0  # not picklable: its own size


def test_text_is_counted_in_utf8_bytes_and_an_int_by_its_bytes() -> None:
    assert result_size("\u20ac" * 300, 1000) == 900  # 3 bytes each
    assert result_size("\u20ac" * 200, 1000) <= 1000  # cannot be over: not encoded
    assert result_size("x" * 999, 1000) == 999
    assert result_size("caf\udce9" * 100, 1000) == 600  # a lone surrogate: 3 bytes
    assert result_size(2**7999, 1000) == 1000
    assert result_size(-(2**7999), 1000) == 1000
    assert result_size(255, 1000) == 1


async def big_int(digits: int) -> int:
    return int(10**digits)


async def euros(count: int) -> str:
    return "\u20ac" * count


async def test_a_large_int_or_a_str_large_in_utf8_is_past_max_result_bytes() -> None:
    # An int was never measured, and a str was measured in characters: a megabyte int and
    # 3,000 bytes of euro signs passed a limit of 1,000 bytes.
    async with Backburner(max_result_bytes=1000) as bg:
        handles: list[Job[Any]] = [
            bg.enqueue(big_int, 2400),  # 997 bytes
            bg.enqueue(big_int, 2500),  # 1,039 bytes
            bg.enqueue(euros, 333),  # 999 bytes
            bg.enqueue(euros, 334),  # 1,002 bytes
        ]
        await bg.join()
        infos = [await bg.lookup(handle.id) for handle in handles]
    assert [info.has_result if info else None for info in infos] == [True, False, True, False]


class Holder:
    """A result pickle refuses (it holds a lock), however much else it holds."""

    def __init__(self, data: bytes) -> None:
        self.lock = threading.Lock()
        self.data = data


async def hold_a_lock(size: int) -> Any:
    return [threading.Lock(), b"x" * size] if size % 2 else Holder(b"x" * size)


async def test_a_result_pickle_refuses_is_measured_by_what_it_holds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # max_result_bytes bounds the memory kept results take: a large result that cannot be
    # pickled (it holds a lock, a connection, a file) must not pass as a few dozen bytes.
    assert result_size([threading.Lock(), b"x" * 1_000_000], 1000) > 1000
    assert result_size(Holder(b"x" * 1_000_000), 1000) > 1000
    assert result_size(Holder(b"x" * 10), 1000) <= 1000  # small: still kept
    caplog.set_level(logging.WARNING, logger="backburner")
    async with Backburner(max_result_bytes=1000) as bg:
        handles = [bg.enqueue(hold_a_lock, size) for size in (100_001, 100_000, 10)]
        await bg.join()
        infos = [await bg.lookup(handle.id) for handle in handles]
    assert [info.has_result if info else None for info in infos] == [False, False, True]


def sync_noop() -> None:
    pass


async def test_a_kept_job_holds_neither_its_context_nor_its_task() -> None:
    async with Backburner() as bg:
        jobs = [bg.enqueue(noop), bg.enqueue(sync_noop), bg.options(timeout=5).enqueue(noop)]
        for handle in jobs:
            await handle
        await bg.join()  # (each job's task ends right after the job is woken)
        held = [(handle.context, handle.task) for handle in jobs]
        assert held == [(None, None)] * 3  # type: ignore[comparison-overlap]  # (typed as set)


class Blob:
    """A result a weak reference can watch."""


async def make_blob() -> Blob:
    return Blob()


async def test_results_not_kept_or_past_their_ttl_are_let_go_without_any_lookup() -> None:
    # keep_result=False is for values that must not linger; max_result_bytes bounds memory.
    # Neither may wait for a lookup that may never come (a service that never polls).
    clock = ManualClock()
    async with Backburner(clock=clock, result_ttl=60) as bg:
        unkept = bg.options(keep_result=False).enqueue(make_blob)
        kept = bg.enqueue(make_blob)
        unkept_result, kept_result = weakref.ref(await unkept), weakref.ref(await kept)
        await bg.join()
        del unkept, kept  # only the executor holds the jobs now
        clock.advance(5)  # the executor's upkeep, every few seconds
        gc.collect()
        assert unkept_result() is None
        assert kept_result() is not None  # kept for lookup for its TTL
        clock.advance(60)
        gc.collect()
        assert kept_result() is None
