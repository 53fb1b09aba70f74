"""A sibling process for ``tests/test_coordination.py``: ``python -m tests.coordination_child DIR
COMMAND...`` opens the coordination directory ``DIR`` as another process of the app would, then
runs each command, printing what happened:

``claim:NAME:TICK`` claims a tick (prints ``claim NAME TICK: True``); ``hold:NAME`` takes the
lock of NAME's tick file and keeps it, as a process SIGKILLed in the middle of a claim would
(prints ``holding NAME``); ``wait`` prints ``waiting`` and sleeps until killed.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time

from backburner._coordination import Coordination, tick_file


def main(directory: str, commands: list[str]) -> None:
    coordination = Coordination(directory)
    coordination.open()
    held = []
    for command in commands:
        kind, _, rest = command.partition(":")
        if kind == "claim":
            name, _, tick = rest.rpartition(":")
            claim = coordination.claim_tick(name, float(tick))
            print(f"claim {name} {float(tick)}: {claim.won}", flush=True)
        elif kind == "hold":
            fd = os.open(tick_file(coordination.directory, rest), os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            held.append(fd)
            print(f"holding {rest}", flush=True)
        elif kind == "wait":
            print("waiting", flush=True)
    while True:  # until killed: the test decides when this process dies
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
