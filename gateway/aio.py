"""asyncio helpers the gateway's loops share."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """True once event is set, False after timeout seconds; a cancel of the caller is never lost."""
    # Not asyncio.wait_for: before CPython 3.12 it returns the result when the caller is cancelled in the
    # moment the event is set (gh-86296), so a loop cancelled right after a wake-up ran on. asyncio.wait
    # never swallows a cancel.
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        done, _ = await asyncio.wait((waiter,), timeout=timeout)
    finally:
        if not waiter.done():
            waiter.cancel()
    return bool(done)


async def cancel_and_wait(task: asyncio.Task | None) -> None:
    """Cancel task (None: nothing) and wait until it has ended (a stop() that returns leaves nothing running)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
