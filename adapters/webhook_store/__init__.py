"""The durable side of webhook delivery: pending calls, their retry times, the attempt log.

Webhook calls are made from events of the stream, long after (and far more often than)
anything worth an event of its own, so their changing state lives here rather than in
the event store: the pending deliveries with their due times, the consumer's stream
position, each webhook's run of consecutive failures, and the log of attempts that
customers read back.

What is atomic (one transaction per call, so a crash anywhere loses nothing and repeats
nothing beyond at-least-once):

* ``enqueue`` adds jobs and records the stream position together; a job already pending
  or already finished is ignored, so a stream read again after a crash delivers nothing
  twice.
* ``claim_due`` picks due jobs and pushes their due time out by a lease together, so two
  workers never take the same job and a worker that dies leaves its jobs due again.
* ``record`` appends the attempts to the log, counts failures, and reschedules or
  finishes the jobs together.

Order per message: jobs of one (webhook, message) are delivered in stream order. Each
job carries a ``head`` flag, true for the lowest position pending in its (webhook,
message) group; only heads are claimed, so a claim reads one index range of due heads
however many later jobs wait behind a failing one. The flag is set when jobs are added
and handed on when a head finishes, each time by an index lookup of the group. A claim
may skip webhooks (those of an endpoint already behind): their due heads are then read
in that index range and passed over, a cost in proportion to their backlog (about 10 ms
per 100,000 on SQLite), which is why the caller makes such claims at most ten a second.

Finished jobs are remembered by the attempt log itself: the attempt that finishes a job
is logged as ``finished``, and ``enqueue`` looks for such an attempt by (webhook, event)
in the log's job index, which numbering attempts needs anyway. So the memory of finished
jobs costs no table or write of its own, and lasts as long as their attempts are kept.

Two dialects, a module each, both passing one contract test (``tests/adapters``):
``sqlite`` (a file, the embedded default; several processes may share it) and
``postgres``. ``common`` holds what they share: the contract and the bookkeeping of
``record``.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from adapters.webhook_store.common import (
    MAX_SKIPPED,
    Attempt,
    AttemptResult,
    DeliveryJob,
    WebhookStore,
)
from adapters.webhook_store.postgres import PostgresWebhookStore
from adapters.webhook_store.sqlite import SqliteWebhookStore

__all__ = [
    "MAX_SKIPPED",
    "Attempt",
    "AttemptResult",
    "DeliveryJob",
    "PostgresWebhookStore",
    "SqliteWebhookStore",
    "WebhookStore",
    "open_webhook_store",
]


def open_webhook_store(path_or_url: str | Path) -> WebhookStore:
    """PostgreSQL for a ``postgresql://`` (or ``postgres://``) URL, SQLite otherwise.

    ``?schema=name`` on the URL picks the PostgreSQL schema (default ``public``); a
    ``sqlite:///path`` URL or a plain path names the SQLite file.
    """
    text = str(path_or_url)
    if isinstance(path_or_url, str) and text.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(text)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schema = dict(query).get("schema", "public")
        rest = urlencode([(k, v) for k, v in query if k != "schema"])
        conninfo = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment))
        return PostgresWebhookStore(conninfo, schema=schema)
    if isinstance(path_or_url, str) and text.startswith("sqlite:///"):
        return SqliteWebhookStore(Path(text.removeprefix("sqlite:///")))
    return SqliteWebhookStore(Path(path_or_url))
