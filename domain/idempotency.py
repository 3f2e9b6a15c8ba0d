"""Idempotent requests: the first answer to a request made with an ``Idempotency-Key``,
which a retry of the same request gets again instead of the request being done twice.

One aggregate per account and key, recorded in the same transaction as what the request
did, so that a request is never done without its answer being kept, nor its answer kept
without it being done. A key is kept for a day (``KEPT_FOR``); after that it may be used
again for a new request, as with Stripe's keys.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

_NAMESPACE = UUID("5b0f3c0e-6f4e-4d1b-9a57-2f6c1d8e7a34")
KEPT_FOR = timedelta(hours=24)
# Stripe's limit; a key is opaque text the client chose (a UUID, usually).
MAX_KEY_LENGTH = 255


def idempotent_request_id(account_id: UUID, key: str) -> UUID:
    return uuid5(_NAMESPACE, f"{account_id}\n{key}")


def is_valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all(" " <= c <= "~" for c in key)


def fingerprint(endpoint: str, canonical_body: bytes) -> str:
    """What makes two requests the same request: the endpoint and the body (its JSON in a
    canonical form: the same fields and values in any order are the same body)."""
    digest = hashlib.sha256(endpoint.encode())
    digest.update(b"\n")
    digest.update(canonical_body)
    return digest.hexdigest()


class IdempotentRequest(Aggregate):
    @event("Answered")
    def __init__(
        self, id: UUID, account_id: UUID, fingerprint: str, answer: dict[str, Any],
        answered_at: datetime,
    ) -> None:  # fmt: skip
        self._id = id
        self.account_id = account_id
        self.fingerprint = fingerprint
        self.answer = answer
        self.answered_at = answered_at

    def is_kept(self, now: datetime) -> bool:
        return now - self.answered_at < KEPT_FOR

    @event("AnsweredAnew")
    def answer_anew(self, fingerprint: str, answer: dict[str, Any], answered_at: datetime) -> None:
        """The key used again once its day was over: a new request's answer."""
        self.fingerprint = fingerprint
        self.answer = answer
        self.answered_at = answered_at
