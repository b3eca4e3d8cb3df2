"""Stopping a component's background task."""

from __future__ import annotations

import asyncio
from typing import Any


async def stop_task(task: asyncio.Future[Any] | None) -> None:
    """Cancel `task` and wait until it has ended. The task's own CancelledError is expected
    and dropped; a cancellation aimed at the caller while it waits is raised, never lost
    (suppressing every CancelledError here would hide the caller's own stop)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
