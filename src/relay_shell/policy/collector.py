"""The cyclic garbage collector held off while one large text is classified.

Classifying a long script allocates a few dozen objects per command and keeps most of them
until the analysis is built; the collector would scan the growing heap of survivors over
and over (about a quarter of the time on a megabyte). Classification makes no reference
cycles that need collecting before it ends (reference counting frees the rest), so
:func:`collector_paused` holds the collector off for the block and lets it run again after.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.Lock()
_state = {"holders": 0, "resume": False}


@contextmanager
def collector_paused() -> Iterator[None]:
    """Hold the cyclic collector off for the block (the process's: it is one for all threads).

    Blocks may nest and overlap across threads: the collector runs again when the last one
    ends, and only if it was enabled when the first one began (a process that switched it
    off itself keeps it off)."""
    with _LOCK:
        if _state["holders"] == 0:
            _state["resume"] = gc.isenabled()
            gc.disable()
        _state["holders"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _state["holders"] -= 1
            if _state["holders"] == 0 and _state["resume"]:
                gc.enable()
