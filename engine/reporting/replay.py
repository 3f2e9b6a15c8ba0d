"""Rebuilds the reporting tables from the event store, with a progress bar.

The rebuild fills fresh shadow tables (``events__rebuild`` and its rollups, made
by the same migrations as the live ones) while the live tables keep serving,
swaps them in, then catches up on what arrived meanwhile. The catch-up writes
only events not stored yet, so nothing is counted twice.

Known window: the swap is one ``EXCHANGE`` per table. An insert by a running
projector in the instant between two exchanges may be counted in the old rollup
only; run a rebuild again if that matters, or stop the projector for it.
"""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from adapters.ports import ReportingStore
from engine.application import Sendstream
from engine.eventlog.followers import stream_of, to_envelope
from engine.reporting.projector import MessageFactsCache
from projections.events import EVENT_COLUMNS, encode_events, insert_new_encoded
from projections.schema import (
    ONE_SERVER,
    Topology,
    create_shadow_tables,
    migrate,
    swap_in_shadow_tables,
)

PAGE = 20_000


def _project_range(
    app: Sendstream,
    reporting: ReportingStore,
    table: str,
    start: int,
    facts: MessageFactsCache,
    bar: tqdm[Any] | None,
    check: bool,
) -> int:
    position = start
    while True:
        notifications = app.recorder.select_notifications(
            start=position, limit=PAGE, inclusive_of_start=False
        )
        if not notifications:
            return position
        envelopes = [
            to_envelope(app, n) for n in notifications if stream_of(n.topic)[0] == "message"
        ]
        encoded = encode_events(envelopes, facts, facts.remember)
        if encoded and check:
            insert_new_encoded(reporting, encoded, table)
        elif encoded:
            reporting.insert_tab_separated(table, EVENT_COLUMNS, "".join(encoded.lines).encode())
        position = notifications[-1].id
        if bar is not None:
            bar.update(len(notifications))


def replay(
    app: Sendstream,
    store: ReportingStore,
    progress: bool = False,
    topology: Topology = ONE_SERVER,
) -> int:
    """Returns the position in the event store's log up to which the tables are rebuilt."""
    migrate(store, topology=topology)
    total = app.recorder.max_notification_id() or 0
    names = create_shadow_tables(store, topology)
    facts = MessageFactsCache(app)
    with tqdm(total=total, unit="event", disable=not progress, desc="replay") as bar:
        # The shadow table is new and this is its only writer: no need to look for copies.
        position = _project_range(app, store, names["events"], 0, facts, bar, check=False)
        swap_in_shadow_tables(store, topology)
        position = _project_range(app, store, "events", position, facts, bar, check=True)
    if progress:
        rows = store.query("SELECT count() AS n FROM events")[0]["n"]
        print(f"replayed the event store up to position {position}: {rows} rows in table 'events'")
    return position
