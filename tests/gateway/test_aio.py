"""wait_event: the gateway loops' idle wait never loses a cancel that arrives as its event is set."""

from __future__ import annotations

import asyncio

from fogline.gateway.aio import cancel_and_wait, wait_event


async def _cancel_at_each_wake_step(wait) -> list[tuple[bool, int]]:
    ev = asyncio.Event()
    passes: list[int] = []

    async def idle():  # a relay pump's idle loop
        while len(passes) < 3:
            await wait(ev, 0.1)
            passes.append(1)

    ended = []
    for settle in range(4):  # the cancel lands at each step of the waiter's wake-up
        passes.clear()
        ev.clear()
        t = asyncio.create_task(idle())
        for _ in range(settle):
            await asyncio.sleep(0)
        ev.set()
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
        ended.append((t.cancelled(), len(passes)))
    return ended


def test_a_cancel_at_wake_up_is_never_lost():
    assert asyncio.run(_cancel_at_each_wake_step(wait_event)) == [(True, 0)] * 4


def test_set_timeout_and_already_set():
    async def main():
        ev = asyncio.Event()
        assert await wait_event(ev, 0.01) is False
        asyncio.get_running_loop().call_soon(ev.set)
        assert await wait_event(ev, 3600) is True
        assert await wait_event(ev, 0) is True  # already set: no wait
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert pending == []  # no waiter left behind
    asyncio.run(main())


def test_cancel_and_wait_returns_only_once_the_task_has_ended():
    async def main():
        ended = []

        async def worker():
            try:
                await asyncio.sleep(3600)
            finally:
                await asyncio.sleep(0)  # clean-up that itself awaits
                ended.append(True)

        t = asyncio.create_task(worker())
        await asyncio.sleep(0)
        await cancel_and_wait(t)
        assert t.done() and t.cancelled() and ended == [True]
        await cancel_and_wait(None)
    asyncio.run(main())
