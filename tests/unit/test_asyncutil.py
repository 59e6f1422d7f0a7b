"""Stopping a component never hangs, even when a task swallowed its cancellation (Python 3.11's wait_for can)."""

import asyncio

from swarmctl.asyncutil import cancel, wait_event


def test_cancel_ends_a_task_that_swallowed_one_cancellation():
    async def main():
        swallowed = []

        async def stubborn():
            while True:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    if not swallowed:
                        swallowed.append(1)
                        asyncio.current_task().uncancel()
                        continue  # as wait_for did: the cancel is lost and the loop goes on
                    raise
        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0.01)
        await asyncio.wait_for(cancel(task), 5)
        return task.cancelled(), swallowed
    cancelled, swallowed = asyncio.run(main())
    assert cancelled and swallowed == [1]


def test_cancel_retrieves_what_a_task_raised():
    async def main():
        async def failing():
            try:
                await asyncio.sleep(10)
            finally:
                raise RuntimeError("on the way out")
        task = asyncio.create_task(failing())
        await asyncio.sleep(0.01)
        await cancel(task, None)
        return task.done()
    assert asyncio.run(main())


def test_wait_event_times_out_or_returns_when_set():
    async def main():
        event = asyncio.Event()
        first = await wait_event(event, 0.05)
        asyncio.get_running_loop().call_later(0.01, event.set)
        second = await wait_event(event, 5)
        return first, second
    assert asyncio.run(main()) == (False, True)
