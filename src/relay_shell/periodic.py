"""A background round run every so often until stopped: the session and job sweepers, the grant watch.

:class:`Periodic` sleeps ``interval_s``, runs its ``work``, and again, in one asyncio task;
a round that raises is logged and the next one still runs. :meth:`Periodic.start` is
idempotent; :meth:`Periodic.stop` cancels the task and waits for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


class Periodic:
    """``work`` every ``interval_s`` seconds from :meth:`start` to :meth:`stop` (see the module docstring)."""

    def __init__(
        self, name: str, interval_s: float, work: Callable[[], Awaitable[object]], log: logging.Logger
    ) -> None:
        self._name = name
        self._interval_s = interval_s
        self._work = work
        self._log = log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop unless it is running."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._forever(), name=f"relay-shell {self._name}")

    async def stop(self) -> None:
        """Cancel the loop (a round in progress too) and wait for it to end. Idempotent."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _forever(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self._work()
            except Exception:
                self._log.exception("%s failed", self._name)
