"""The JSON argument check every out-of-process engine makes at enqueue (``_jsonargs.py``)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backburner._jsonargs import check_json_arguments, json_problem

plain_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(plain_json)
def test_what_comes_back_from_json_as_it_went_in_is_accepted(value: Any) -> None:
    assert json_problem(value) is None
    assert json.loads(json.dumps(value)) == value


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ((1, 2), "a tuple (1, 2) (it would come back a list: pass a list)"),
        ({1: "a"}, "a dict with the int key 1 (JSON keys are str)"),
        ([1, {"x": float("inf")}], "a list whose item 1 is a dict whose item 'x' is the float inf"),
        ({1, 2}, "a set {1, 2}"),
    ],
)
def test_what_would_not_come_back_is_named(value: Any, problem: str) -> None:
    found = json_problem(value)
    assert found is not None
    assert found.startswith(problem)


def test_the_error_names_the_argument_the_function_and_who_needs_json() -> None:
    with pytest.raises(TypeError, match=r"keyword argument 'when' of send is a tuple.*the broker"):
        check_json_arguments("send", (1,), {"when": (1,)}, "the broker")
