"""The Retry-After arithmetic: from progress, queue position and the queue's recent pace."""

from __future__ import annotations

import pytest

from backburner import JobStatus
from backburner._history import Sample
from backburner.status._estimate import Pace, check_bounds, pace_of, retry_after

NOW = 1_000.0


def sample(at: float, processed: int, busy: int, seconds: float = 5.0) -> Sample:
    return Sample(at, seconds, processed, 0, processed, None, 0, busy)


def test_a_running_job_with_progress_is_asked_again_at_its_eta() -> None:
    assert retry_after(JobStatus.RUNNING, eta=12.2) == 13  # rounded up: never too early


def test_a_running_job_without_progress_is_asked_again_when_a_mean_job_would_end() -> None:
    pace = Pace(throughput=2.0, service_time=10.0, workers=4)

    assert retry_after(JobStatus.RUNNING, running_for=3.0, pace=pace) == 7


def test_a_job_running_longer_than_the_mean_gets_the_default() -> None:
    pace = Pace(throughput=2.0, service_time=10.0, workers=4)

    assert retry_after(JobStatus.RUNNING, running_for=30.0, pace=pace) == 2


def test_a_waiting_job_waits_for_the_jobs_ahead_at_the_queues_pace() -> None:
    pace = Pace(throughput=2.0, service_time=2.0, workers=4)  # 4 workers end 2 jobs/s

    assert retry_after(JobStatus.PENDING, position=0, pace=pace) == 1
    assert retry_after(JobStatus.PENDING, position=19, pace=pace) == 10  # 20 jobs at 2/s
    assert retry_after(JobStatus.PENDING, position=10_000, pace=pace) == 60  # the upper bound


def test_a_job_in_a_paused_queue_gets_the_upper_bound() -> None:
    pace = Pace(throughput=2.0, service_time=2.0, workers=4)

    assert retry_after(JobStatus.PENDING, position=0, pace=pace, paused=True) == 60


def test_a_scheduled_job_is_asked_again_when_it_is_due() -> None:
    assert retry_after(JobStatus.SCHEDULED, due_in=7.5) == 8
    assert retry_after(JobStatus.RETRYING, due_in=0.2) == 1  # the lower bound


@pytest.mark.parametrize("status", [s for s in JobStatus if s.finished])
def test_a_finished_job_has_nothing_left_to_wait_for(status: JobStatus) -> None:
    assert retry_after(status, eta=100.0) == 0


def test_what_is_not_known_gives_the_default_within_the_bounds() -> None:
    assert retry_after(JobStatus.PENDING, position=3) == 2
    assert retry_after(JobStatus.RUNNING, eta=None) == 2
    assert retry_after(JobStatus.SCHEDULED) == 2
    assert retry_after(JobStatus.RUNNING, eta=None, bounds=(5, 10)) == 5


def test_the_bounds_hold_on_both_sides() -> None:
    assert retry_after(JobStatus.RUNNING, eta=0.01, bounds=(3, 30)) == 3
    assert retry_after(JobStatus.RUNNING, eta=1e9, bounds=(3, 30)) == 30


def test_the_pace_is_the_queues_capacity_by_littles_law() -> None:
    # 10 jobs ended a second with 2 of 8 workers busy: each held one 0.2 s, so all 8 workers
    # end 40 jobs a second, whatever the rate jobs arrived at.
    samples = [sample(NOW - 5 * i, processed=50, busy=2) for i in range(6)]

    pace = pace_of(samples, workers=8, now=NOW)

    assert pace is not None
    assert pace.throughput == pytest.approx(10.0)
    assert pace.service_time == pytest.approx(0.2)
    assert pace.wait(39) == pytest.approx(1.0)


def test_the_pace_reads_the_last_minute_when_jobs_ended_in_it() -> None:
    old = [sample(NOW - 300, processed=500, busy=1)]  # fast, long ago
    recent = [sample(NOW - 5, processed=5, busy=1)]

    pace = pace_of(old + recent, workers=1, now=NOW)

    assert pace is not None
    assert pace.throughput == pytest.approx(1.0)


def test_the_pace_reads_the_whole_history_when_no_job_ended_in_the_last_minute() -> None:
    samples = [sample(NOW - 300, processed=10, busy=1), sample(NOW - 5, processed=0, busy=1)]

    pace = pace_of(samples, workers=1, now=NOW)

    assert pace is not None
    assert pace.throughput == pytest.approx(1.0)


def test_no_pace_is_known_before_a_job_ended() -> None:
    assert pace_of([], workers=4, now=NOW) is None
    assert pace_of([sample(NOW, processed=0, busy=4)], workers=4, now=NOW) is None


@pytest.mark.parametrize(
    ("bounds", "error"),
    [((1,), TypeError), ("1-60", TypeError), ((1, "60"), TypeError), ((True, 60), TypeError),
     ((60, 1), ValueError), ((-1, 60), ValueError), ((1, float("inf")), ValueError)],
)  # fmt: skip
def test_bad_bounds_are_refused(bounds: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="bounds"):
        check_bounds(bounds)
