"""Interleavings made deterministic: another thread's step between any two of a function's."""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any


@contextlib.contextmanager
def between_steps(code: types.CodeType, step: Callable[[], None]) -> Iterator[None]:
    """Call ``step()`` between every two bytecode steps of ``code`` run in this thread: what
    another thread may do at any of those moments (under the GIL, it may run at each)."""

    def opcode(frame: types.FrameType, event: str, arg: object) -> Any:
        if event == "opcode":
            step()
        return opcode

    def tracer(frame: types.FrameType, event: str, arg: object) -> Any:
        if frame.f_code is not code:
            return None
        frame.f_trace_opcodes = True
        frame.f_trace = opcode  # (on Python 3.13 returning it is not enough for opcode events)
        return opcode

    before = sys.gettrace()
    sys.settrace(tracer)
    try:
        yield
    finally:
        sys.settrace(before)
