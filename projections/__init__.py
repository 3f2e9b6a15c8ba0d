"""Read models in ClickHouse: each module holds a table's DDL, the event → row mapping that
fills it, and the reporting queries on it. Idempotent (keyed by event id) and rebuildable from
the event store.
"""
