import asyncio

import pytest

from lamina.tasks import stop_task


async def _forever() -> None:
    await asyncio.Event().wait()


def test_stop_task_ends_the_task_and_returns() -> None:
    async def main() -> bool:
        task = asyncio.create_task(_forever())
        await asyncio.sleep(0)
        await stop_task(task)
        return task.cancelled()

    assert asyncio.run(main())


def test_stop_task_of_nothing_returns() -> None:
    asyncio.run(stop_task(None))


def test_a_cancellation_aimed_at_the_caller_is_not_lost() -> None:
    """The caller is cancelled while it waits for a task that is slow to end: the caller's
    cancellation must come out of stop_task, not be taken for the task's own."""

    async def slow_to_end() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.05)

    async def closer(task: asyncio.Task[None]) -> str:
        await stop_task(task)
        return "went on as if nothing happened"

    async def main() -> None:
        task = asyncio.create_task(slow_to_end())
        await asyncio.sleep(0)
        stopping = asyncio.create_task(closer(task))
        await asyncio.sleep(0.01)
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping

    asyncio.run(main())
