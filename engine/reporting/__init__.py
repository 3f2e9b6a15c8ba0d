"""Reporting: the ClickHouse tables kept in step with the event stream.

The projector (``projector``) maps each ``Message`` event to a row of ``events`` (the
rollups follow by materialized views, see ``projections.schema``); ``replay`` rebuilds
every table from the event store while the old ones keep serving.

Reads every ``Message`` event (and the ``Submission``, ``SenderDomain`` and ``Campaign``
facts a row names). Writes no events: only the reporting tables.
"""
