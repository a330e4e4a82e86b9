"""Watched folders: watchdog's thread hands touched paths to the loop; observers retry."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from drivers.transport import Backoff

Touch = Callable[[Path, float | None], None]  # (path, delay or None for the default)


class Forward(FileSystemEventHandler):
    """Runs on watchdog's thread: hands every touched path to the loop, nothing else."""

    def __init__(self, loop: asyncio.AbstractEventLoop, touch: Touch) -> None:
        self.loop = loop
        self.touch = touch

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in {"created", "modified", "moved", "closed"}:
            return
        path = event.dest_path if event.event_type == "moved" else event.src_path
        try:
            self.loop.call_soon_threadsafe(self.touch, Path(os.fsdecode(path)), None)
        except RuntimeError:
            pass  # the loop is closing; files left behind are found again at the next start


async def start_observer(
    folder: Path,
    touch: Touch,
    backoff: Backoff,
    rng: random.Random,
    unavailable: Callable[[int, OSError], Awaitable[None]],
) -> tuple[BaseObserver, int]:
    """Watch `folder` (not recursively), calling `unavailable(failures, error)` and backing off
    until it can; the running observer and how many attempts failed first."""
    loop = asyncio.get_running_loop()
    failures = 0
    while True:
        observer = Observer()
        try:
            observer.schedule(Forward(loop, touch), str(folder), recursive=False)
            await asyncio.to_thread(observer.start)
        except OSError as err:
            failures += 1
            await unavailable(failures, err)
            await asyncio.sleep(backoff.delay(failures, rng))
            continue
        return observer, failures


async def stop_watching(observer: BaseObserver, timers: dict[Any, asyncio.TimerHandle]) -> None:
    """Cancel the pending checks, stop the observer and wait for watchdog's thread to end."""
    for timer in timers.values():
        timer.cancel()
    timers.clear()
    observer.stop()
    await asyncio.to_thread(observer.join)
