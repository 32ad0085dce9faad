"""Server-sent events: thread-safe publish from jobs and dataset changes to every browser."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

HEARTBEAT_S = 15.0


class EventHub:
    def __init__(self) -> None:
        self._subs: set[asyncio.Queue[tuple[str, str] | None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Callable from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        payload = (event, json.dumps(data, ensure_ascii=False, default=str))
        try:
            loop.call_soon_threadsafe(self._put, payload)
        except RuntimeError:  # loop shut down meanwhile
            pass

    def _put(self, payload: tuple[str, str] | None) -> None:
        for q in list(self._subs):
            if q.full():
                continue  # a stalled browser loses events rather than holding memory
            q.put_nowait(payload)

    def close(self) -> None:
        self._put(None)

    async def stream(self, is_disconnected: Any) -> AsyncIterator[str]:
        q: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue(maxsize=1000)
        self._subs.add(q)
        try:
            yield ": connected\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(q.get(), timeout=HEARTBEAT_S)
                except TimeoutError:
                    if await is_disconnected():
                        return
                    yield ": keep-alive\n\n"
                    continue
                if item is None:
                    return
                event, data = item
                yield f"event: {event}\ndata: {data}\n\n"
        finally:
            self._subs.discard(q)
