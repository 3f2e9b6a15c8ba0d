"""A server on an asyncio loop of its own thread, started and stopped from ordinary threads:
the SMTP servers of the engine (submission, bounces) share this life cycle."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from adapters.thread_names import NamedThread

log = logging.getLogger(__name__)

START_TIMEOUT = 10.0
DRAIN_TIMEOUT = 5.0  # how long stop() lets work in progress finish


class LoopThreadServer:
    """Subclasses bind in ``_bind`` (on the loop), appending to ``_servers``, track their
    open sessions in ``connections`` and their work in progress in ``_in_flight()``, and
    reset what they keep in ``_stopped`` (after the thread has ended)."""

    thread_name = "server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._servers: list[asyncio.Server] = []
        self.connections: set[Any] = set()

    async def _bind(self) -> None:
        raise NotImplementedError

    def _in_flight(self) -> set[asyncio.Future[str]]:
        return set()

    async def _shutdown(self) -> None:
        """Stop listening, let work in progress finish (a while), then close what is open."""
        for server in self._servers:
            server.close()
        if self._in_flight():
            await asyncio.wait(set(self._in_flight()), timeout=DRAIN_TIMEOUT)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers = []
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _stopped(self) -> None:
        """Called once the loop's thread has ended."""

    def start(self) -> None:
        """Bind every port and serve; raises (with nothing left running) if one cannot bind."""
        if self._thread is not None:
            raise RuntimeError(f"the {self.thread_name} server is running already")
        loop = asyncio.new_event_loop()
        thread = NamedThread(target=_run, args=(loop,), name=self.thread_name, daemon=True)
        self._loop, self._thread = loop, thread
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._bind(), loop).result(START_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop listening, let work in progress finish, close every connection."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(DRAIN_TIMEOUT + 5)
            except Exception:
                # The loop stops all the same.
                log.exception("the %s server did not shut down cleanly", self.thread_name)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = self._thread = None
        self._stopped()


def _run(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.close()
