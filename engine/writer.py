"""Group commit: many callers' aggregates saved in one event-store transaction.

SQLite commits are the bottleneck of a busy API (each costs an fsync), and a
PostgreSQL round trip per request is not much better. One writer thread drains
whatever callers have handed it since its last commit and saves it all at once,
so throughput grows with load while each caller still learns its own outcome.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from uuid import UUID

from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Recording

from engine.application import Sendstream

log = logging.getLogger(__name__)

_STOP = object()


class BatchWriter:
    def __init__(
        self,
        app: Sendstream,
        max_batch: int = 2000,
        on_commit: Callable[[Sequence[Recording[UUID]]], None] | None = None,
    ) -> None:
        self._app = app
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    def submit(self, aggregates: Sequence[Aggregate]) -> Future[None]:
        """Queue aggregates for saving; the future completes once they are durable."""
        # Events are taken out now, in the caller's thread, so that a failed batch can be
        # retried caller by caller with exactly the events each one produced.
        events = [e for aggregate in aggregates for e in aggregate.collect_events()]
        future: Future[None] = Future()
        self._queue.put((events, future))
        return future

    def save(self, aggregates: Sequence[Aggregate]) -> None:
        """Blocking form of :meth:`submit`, for worker threads."""
        self.submit(aggregates).result()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            batch = [item]
            size = len(item[0])  # type: ignore[index]
            stop = False
            while size < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.append(more)
                size += len(more[0])  # type: ignore[index]
            recordings = self._commit(batch)  # type: ignore[arg-type]
            if self._on_commit is not None:
                self._on_commit(recordings)
            if stop:
                return

    def _commit(
        self, batch: list[tuple[list[DomainEventProtocol[UUID]], Future[None]]]
    ) -> list[Recording[UUID]]:
        """Save the batch; returns what was recorded (for in-process followers)."""
        recordings: list[Recording[UUID]] = []
        try:
            recordings = self._app.save(*(e for events, _ in batch for e in events))
        except IntegrityError:
            # One caller raced another on the same aggregate: save each caller's share
            # on its own so that only the loser sees the conflict.
            if len(batch) == 1:
                batch[0][1].set_exception(IntegrityError("aggregate changed concurrently"))
                return recordings
            for events, future in batch:
                try:
                    recordings += self._app.save(*events)
                except Exception as error:
                    future.set_exception(error)
                else:
                    future.set_result(None)
            return recordings
        except Exception as error:
            log.exception("event store write failed")
            for _, future in batch:
                future.set_exception(error)
            return recordings
        for _, future in batch:
            future.set_result(None)
        return recordings
