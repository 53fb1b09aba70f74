"""The journal's statements: a batch written in bulk leaves the rows one written row by row does.

The bulk forms (one statement per run of operations of a kind, padded with rows of NULLs to
one of a few sizes) are checked against the row-by-row statements on two fresh journals.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backburner._journal import _sql
from backburner._journal._file import open_file

_OWNER = "host:1:feed"
_COLUMNS = (
    "id, name, queue, payload, state, owner, lease_until, run_at, attempt, unique_key, "
    "enqueued_at, finished_at, error, trace, started_at, progress, result"
)


@pytest.fixture
def journals(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, sqlite3.Connection]]:
    bulk, rows = (
        open_file(tmp_path / "bulk.sqlite3", "NORMAL"),
        open_file(tmp_path / "rows.sqlite3", "NORMAL"),
    )
    try:
        yield bulk, rows
    finally:
        bulk.close()
        rows.close()


def _insert(n: int) -> tuple[int, tuple[Any, ...]]:
    return _sql.INSERT, (f"j-{n}", "tests.job", "default", '{"args":[1]}', _OWNER, 30.0 + n,
                         None, None, float(n), None)  # fmt: skip


def _apply(
    connection: sqlite3.Connection, ops: list[tuple[int, tuple[Any, ...]]], bulk: bool
) -> list[tuple[Any, ...]]:
    connection.execute("BEGIN IMMEDIATE")
    _sql.write_ops(connection, ops, bulk)
    connection.execute("COMMIT")
    rows: list[tuple[Any, ...]] = connection.execute(
        f"SELECT {_COLUMNS} FROM jobs ORDER BY id"
    ).fetchall()
    return rows


def _other_op(kind: int, n: int) -> tuple[int, tuple[Any, ...]]:
    job_id = f"j-{n}"
    params: dict[int, tuple[Any, ...]] = {
        _sql.STARTED: (2, _OWNER, 60.0, 50.0 + n, job_id),
        _sql.FINISH: ("succeeded", 70.0 + n, None, 2, "[1]", None, job_id),
        _sql.RETRY: (90.0, 1, "ValueError: no", job_id),
        _sql.PROGRESS: ('[1, 2, "half", 5.0, null]', job_id),
        _sql.INVALID: (80.0, "unknown job", job_id),
        _sql.UNCLAIM: (job_id, _OWNER, _OWNER),
        _sql.DELETE: (job_id,),
    }
    return kind, params[kind]


_KINDS = (
    _sql.STARTED,
    _sql.FINISH,
    _sql.RETRY,
    _sql.PROGRESS,
    _sql.INVALID,
    _sql.UNCLAIM,
    _sql.DELETE,
)


@pytest.mark.parametrize("size", [1, 2, 3, 63, 64, 65, 130])
def test_a_run_of_any_length_is_written_whole(
    journals: tuple[sqlite3.Connection, sqlite3.Connection], size: int
) -> None:
    """Runs shorter than a statement's rows, as long, and longer (several statements) leave
    the same rows as one statement per operation."""
    bulk, rows = journals
    inserts = [_insert(n) for n in range(size)]
    assert _apply(bulk, inserts, True) == _apply(rows, inserts, False)
    assert len(_apply(bulk, [], True)) == size
    for kind in _KINDS:
        ops = [_other_op(kind, n) for n in range(0, size, 1 if kind != _sql.DELETE else 2)]
        assert _apply(bulk, ops, True) == _apply(rows, ops, False), kind


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.sampled_from(_KINDS), st.integers(0, 80)),
        max_size=150,
    ),
    st.integers(0, 80),
)
def test_a_mixed_batch_leaves_the_rows_that_one_statement_per_operation_leaves(
    journals: tuple[sqlite3.Connection, sqlite3.Connection],
    operations: list[tuple[int, int]],
    inserted: int,
) -> None:
    """Any order of kinds and jobs (ids missing included), after a batch of inserts."""
    bulk, rows = journals
    for connection in journals:
        connection.execute("DELETE FROM jobs")
    inserts = [_insert(n) for n in range(inserted)]
    ops = inserts + [_other_op(kind, n) for kind, n in operations]
    assert _apply(bulk, ops, True) == _apply(rows, ops, False)
