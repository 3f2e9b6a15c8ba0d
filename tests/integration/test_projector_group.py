"""Several projectors in one consumer group, as the at-scale mode's projector processes
run: the group shares the partitions among them, each event is written by one of them,
and the rollups count it once, while members join and leave in the middle of a stream.

The projectors here are threads of one process: the embedded ClickHouse (chdb) lets one
process own its folder, and no ClickHouse server can run on these machines. Each has its
own Kafka consumer, group membership and writer, as a process of its own would."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from adapters.kafka import KafkaEventSource
from domain.envelope import EventEnvelope
from engine.reporting.projector import Projector
from engine.runtime.composition import Engine, Role
from tests.integration.conftest import KAFKA_MODE, wait_for
from tests.services import write_burst

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not KAFKA_MODE, reason="projectors share work through a consumer group"),
]

PARTITIONS = 6
BURST = 1500  # messages; each is reported as accepted and queued (no delivery here)


class CountingSource(KafkaEventSource):
    """A group member that counts the events it was given (read again after a move too)."""

    read = 0

    def poll(self, max_records: int, timeout: float) -> list[EventEnvelope]:
        envelopes = super().poll(max_records, timeout)
        self.read += len(envelopes)
        return envelopes


class RunningProjector:
    """A projector with its own group member, in a thread it stops and leaves the group from."""

    def __init__(self, engine: Engine) -> None:
        settings = engine.settings
        self.source = CountingSource(
            settings.kafka_bootstrap_servers,
            group_id=f"{settings.kafka_topic_prefix}-projector",
            streams=("message",),
            topic_prefix=settings.kafka_topic_prefix,
            partitions=PARTITIONS,
        )
        self.projector = Projector(
            engine.app, self.source, engine.reporting, batch_size=500, interval=0.2
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.projector.run(self._stop)
        finally:
            self.source.close()  # leaves the group: its partitions move at once

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()


def counted(engine: Engine) -> dict[str, int]:
    """Events per type as the daily rollup counts them (what the statistics read)."""
    rows = engine.reporting.query(
        "SELECT event_type, toUInt64(sum(events)) AS n FROM rollup_daily GROUP BY event_type"
    )
    return {str(row["event_type"]): int(row["n"]) for row in rows}


def stored(engine: Engine) -> tuple[int, int]:
    """Physical rows of ``events`` and distinct events among them."""
    rows = engine.reporting.query(
        "SELECT toUInt64(count()) AS rows, toUInt64(uniqExact(event_id)) AS events FROM events"
    )
    return int(rows[0]["rows"]), int(rows[0]["events"])


def test_projectors_joining_and_leaving_a_group_count_each_event_once(
    make_engine: Callable[..., Engine],
) -> None:
    engine = make_engine(roles=frozenset({Role.RELAY}), KAFKA_PARTITIONS=str(PARTITIONS))
    key = engine.app.bootstrap("example.com")["SenderAPIKey"]
    first = RunningProjector(engine)
    second: RunningProjector | None = None
    try:
        first.source.wait_until_assigned(timeout=60)
        write_burst(engine, key, BURST, "First burst")
        wait_for(lambda: stored(engine)[1] > BURST // 2, timeout=60)

        # A second member joins while the stream flows: the first hands its partitions
        # over mid-batch, finishing what it read before the second reads it.
        second = RunningProjector(engine)
        write_burst(engine, key, BURST, "Second burst", batch=100)
        second.source.wait_until_assigned(timeout=60)
        # The first leaves while events are still coming: the second takes everything.
        write_burst(engine, key, BURST, "Third burst", batch=100)
        first.stop()

        total = 3 * BURST
        wait_for(lambda: counted(engine).get("queued", 0) >= total, timeout=120)
    finally:
        first.stop()
        if second is not None:
            second.stop()

    # Both had a share of the stream, and between them read all of it.
    assert first.source.read > 0 and second.source.read > 0
    assert first.source.read + second.source.read >= 2 * total
    assert counted(engine) == {"accepted": total, "queued": total}
    assert stored(engine) == (2 * total, 2 * total), "an event was written twice"
