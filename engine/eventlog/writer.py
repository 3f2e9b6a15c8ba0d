"""Group commit: many callers' aggregates saved in one event-store transaction.

SQLite commits are the bottleneck of a busy API (each costs an fsync), and a
PostgreSQL round trip per request is not much better. One writer thread drains
whatever callers have handed it since its last commit and saves it all at once,
so throughput grows with load while each caller still learns its own outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from uuid import UUID

from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import IntegrityError, Recording

from adapters.event_metadata import stamp
from adapters.faults import storage_fault
from adapters.thread_names import NamedThread
from engine.application import Sendstream

log = logging.getLogger(__name__)

_STOP = object()
# After a COMMIT whose answer was lost, how long to wait between asking whether it
# landed (about 8 s in all: a database restart).
_ASK_AGAIN_AFTER = (0.25, 0.5, 1.0, 2.0, 4.0)
_FIRST_RETRY_SECONDS = 0.5
_LAST_RETRY_SECONDS = 10.0

# Who waits for a caller's share of a batch: a thread (through a Future) or a coroutine
# (through an asyncio future that belongs to its loop).
Waiter = Future[None] | tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]


def _settle(outcomes: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    for future, error in outcomes:
        if future.done():  # the caller gave up (cancelled) meanwhile
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


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
        self._thread = NamedThread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    def submit(self, aggregates: Sequence[Aggregate]) -> Future[None]:
        """Queue aggregates for saving; the future completes once they are durable."""
        future: Future[None] = Future()
        self._queue.put((self._pending_events(aggregates), future))
        return future

    async def save_async(self, aggregates: Sequence[Aggregate]) -> None:
        """Save from a coroutine: returns once the aggregates are durable.

        The writer settles all of one loop's callers of a batch with one wake-up of that
        loop, rather than one thread-safe call per caller (measured: a tenth of the CPU
        of a busy API went into waking it per caller).
        """
        await self._offer(self._pending_events(aggregates))

    async def _offer(self, events: list[DomainEventProtocol[UUID]]) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((events, (loop, future)))
        try:
            await future
        except Exception as error:
            # A connection lost during COMMIT leaves its outcome unknown: the events may be
            # stored. Then the save succeeded, and saying otherwise would make the caller
            # do again what is done (a second submission, a message never sent).
            if not events or storage_fault(error) is None:
                raise
            stored = await self._ask_whether_stored(events)
            if stored is None:  # still unknown: refused, as the database is
                raise error from None
            if not stored:
                raise

    async def _ask_whether_stored(self, events: list[DomainEventProtocol[UUID]]) -> bool | None:
        """Whether ``events`` were stored, asked until the database answers (it may be
        restarting: a few seconds), rather than answer "nothing was stored" without
        knowing; None if it does not answer in time."""
        for delay in _ASK_AGAIN_AFTER:
            try:
                return await asyncio.to_thread(self._were_stored, events)
            except Exception:
                await asyncio.sleep(delay)
        return None

    def _were_stored(self, events: Sequence[DomainEventProtocol[UUID]]) -> bool:
        """Whether ``events`` (saved together, so all or none) are in the store: their
        first one is, with the same state."""
        first = events[0]
        mine = self._app.mapper.to_stored_event(first)
        found = self._app.recorder.select_events(
            first.originator_id, gt=first.originator_version - 1,
            lte=first.originator_version, limit=1,
        )  # fmt: skip
        return bool(found) and found[0].state == mine.state and found[0].topic == mine.topic

    async def save_until_stored(self, aggregates: Sequence[Aggregate]) -> None:
        """As :meth:`save_async`, but a storage fault (a full disk, a database restarting)
        is waited out: the same events are offered again, at growing intervals, until they
        are stored. For what records something already done in the world (a message
        handed to a mail server, a claim before one), which must not be forgotten because
        the disk was full."""
        events = self._pending_events(aggregates)
        delay = _FIRST_RETRY_SECONDS
        faulted = False
        while True:
            try:
                await self._offer(events)
                return
            except IntegrityError:
                # An earlier offer's COMMIT may have landed after all (its answer was lost).
                if not faulted or not await asyncio.to_thread(self._were_stored, events):
                    raise
                return
            except Exception as error:
                if storage_fault(error) is None:
                    raise
                faulted = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, _LAST_RETRY_SECONDS)

    def save(self, aggregates: Sequence[Aggregate]) -> None:
        """Blocking form of :meth:`submit`, for worker threads."""
        self.submit(aggregates).result()

    @staticmethod
    def _pending_events(aggregates: Sequence[Aggregate]) -> list[DomainEventProtocol[UUID]]:
        # Events are taken out now, in the caller's thread, so that a failed batch can be
        # retried caller by caller with exactly the events each one produced.
        events: list[DomainEventProtocol[UUID]] = [
            e for aggregate in aggregates for e in aggregate.collect_events()
        ]
        stamp(events)  # the request's metadata, while this is still its thread
        return events

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
        self, batch: list[tuple[list[DomainEventProtocol[UUID]], Waiter]]
    ) -> list[Recording[UUID]]:
        """Save the batch, tell each caller its outcome; returns what was recorded."""
        recordings: list[Recording[UUID]] = []
        outcomes: list[tuple[Waiter, BaseException | None]] = []
        try:
            recordings = self._app.record(e for events, _ in batch for e in events)
        except IntegrityError:
            # One caller raced another on the same aggregate: save each caller's share
            # on its own so that only the loser sees the conflict.
            if len(batch) == 1:
                outcomes.append((batch[0][1], IntegrityError("aggregate changed concurrently")))
            else:
                for events, waiter in batch:
                    try:
                        recordings += self._app.record(events)
                    except Exception as error:
                        outcomes.append((waiter, error))
                    else:
                        outcomes.append((waiter, None))
        except Exception as error:
            fault = storage_fault(error)
            if fault is None:
                log.exception("event store write failed")
            else:
                log.warning("event store write failed: it is %s (%s)", fault.value, error)
            outcomes = [(waiter, error) for _, waiter in batch]
        else:
            outcomes = [(waiter, None) for _, waiter in batch]
        self._tell(outcomes)
        return recordings

    @staticmethod
    def _tell(outcomes: list[tuple[Waiter, BaseException | None]]) -> None:
        by_loop: defaultdict[
            asyncio.AbstractEventLoop, list[tuple[asyncio.Future[None], BaseException | None]]
        ] = defaultdict(list)
        for waiter, error in outcomes:
            if isinstance(waiter, Future):
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
            else:
                loop, future = waiter
                by_loop[loop].append((future, error))
        for loop, settled in by_loop.items():
            # A closed loop raises RuntimeError: nobody there is waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, settled)
