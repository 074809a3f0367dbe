"""Background loops of listener components."""

from __future__ import annotations

import asyncio


async def stop_task(task: asyncio.Task[None] | None, stopping: asyncio.Event, grace: float = 10.0) -> None:
    """Ask a component's loop to stop (``stopping``), wait up to ``grace`` seconds, then cancel it."""
    stopping.set()
    if task is None:
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), grace)
    except asyncio.TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def wait_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stopping`` is set first; whether it was."""
    try:
        await asyncio.wait_for(stopping.wait(), seconds)
    except asyncio.TimeoutError:
        return False
    return True
