"""Rebuilds the reporting tables from the event store, with a progress bar.

The rebuild fills a fresh table while the live one keeps serving, swaps them
atomically, then catches up on what arrived meanwhile. Rows are keyed by event
id, so anything projected twice is counted once.
"""

from __future__ import annotations

from typing import Any

from tqdm import tqdm

from engine.projector import MessageFactsCache
from engine.runtime import Engine
from engine.stream import stream_of, to_envelope
from projections.events import rebuild_table_ddl, rows_for, swap_in_rebuilt_table

PAGE = 5000


def _project_range(
    engine: Engine, table: str, start: int, facts: MessageFactsCache, bar: tqdm[Any] | None
) -> int:
    position = start
    while True:
        notifications = engine.app.recorder.select_notifications(
            start=position, limit=PAGE, inclusive_of_start=False
        )
        if not notifications:
            return position
        envelopes = [
            to_envelope(engine.app, n) for n in notifications if stream_of(n.topic)[0] == "message"
        ]
        rows = rows_for(envelopes, facts)
        if rows:
            engine.reporting.insert(table, rows)
        position = notifications[-1].id
        if bar is not None:
            bar.update(len(notifications))


def replay(engine: Engine, progress: bool = False) -> int:
    """Returns the position in the event store's log up to which the tables are rebuilt."""
    store = engine.reporting
    total = engine.app.recorder.max_notification_id() or 0
    for statement in rebuild_table_ddl():
        store.command(statement)
    facts = MessageFactsCache(engine.app)
    with tqdm(total=total, unit="event", disable=not progress, desc="replay") as bar:
        position = _project_range(engine, "events_rebuild", 0, facts, bar)
        swap_in_rebuilt_table(store)
        position = _project_range(engine, "events", position, facts, bar)
    if progress:
        rows = store.query("SELECT count() AS n FROM events FINAL")[0]["n"]
        print(f"replayed the event store up to position {position}: {rows} rows in table 'events'")
    return position
