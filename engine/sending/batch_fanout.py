"""Batches become messages: for each ``Batch.Accepted``, every recipient's submission and
Message, in chunks of ``CHUNK`` recipients per transaction.

It follows the stream (the notification log, or Kafka's ``batch`` topic) and commits its
position once a batch is wholly made. Ids come from the batch (``batch_submission_id``),
so a batch made again after a crash, in part or whole, creates only what is missing: a
chunk that meets one already stored is saved again recipient by recipient, each one
skipped if it exists.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from adapters.ports import EventSource
from domain.batch import batch_submission_id
from domain.content import Address, EmailContent
from engine.application import Sendstream
from engine.eventlog.followers import run_until_stopped
from engine.eventlog.writer import BatchWriter

log = logging.getLogger(__name__)

CHUNK = 250


class BatchFanOut:
    def __init__(self, app: Sendstream, source: EventSource, writer: BatchWriter) -> None:
        self._app = app
        self._source = source
        self._writer = writer
        self.made = 0  # recipients' messages made by this process

    def run_once(self, timeout: float = 0.5) -> int:
        envelopes = self._source.poll(8, timeout)
        if not envelopes:
            return 0
        try:
            for envelope in envelopes:
                if envelope.event_type == "Batch.Accepted":
                    self._make(envelope.aggregate_id, envelope.data)
        except Exception:
            self._source.rewind()
            raise
        self._source.commit()
        return len(envelopes)

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("batch-fanout", self.run_once, stop)

    def _make(self, batch_id: UUID, data: dict[str, Any]) -> None:
        sender = self._app.sender_context_for(
            _uuid(data["account_id"]), _uuid(data["domain_id"]), _uuid(data["key_id"])
        )
        shared = EmailContent.from_dict(data["content"])
        accepted_at = data["accepted_at"]
        if not isinstance(accepted_at, datetime):
            accepted_at = datetime.fromisoformat(str(accepted_at))

        def made(recipient: dict[str, Any]) -> list[Aggregate]:
            content = replace(
                shared,
                to=(Address(recipient["Email"], recipient["Name"]),),
                subject=recipient["Subject"], html=recipient["Html"], plain=recipient["Plain"],
            )  # fmt: skip
            submission, messages = self._app.prepare_submission(
                sender, content, accepted_at,
                submission_id=batch_submission_id(batch_id, recipient["Index"]),
                template=data["template"],
            )  # fmt: skip
            return [submission, *messages]

        recipients = data["recipients"]
        for start in range(0, len(recipients), CHUNK):
            chunk = recipients[start : start + CHUNK]
            try:
                self._writer.save([a for recipient in chunk for a in made(recipient)])
            except IntegrityError:
                # Made in part before (a crash mid-batch): each recipient on its own, made
                # anew (a failed save has taken the events of those it was given).
                for recipient in chunk:
                    try:
                        self._writer.save(made(recipient))
                    except IntegrityError:
                        continue
                    self.made += 1
            else:
                self.made += len(chunk)


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))
