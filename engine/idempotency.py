"""``Idempotency-Key``: a request retried with the same key gets its first answer again
and is not done twice (domain/idempotency.py).

The caller asks for an earlier answer first; without one it does the request and saves
``record(...)`` in the same transaction as what it did. A command of ``/api.php`` does
so by adding ``answered(its answer)`` to its save: the call it runs for is the context's
(:meth:`IdempotentCall.perform` sets it). Two retries racing each other both
find no answer, and both try to save the key's first event: the store lets one win, and
the other, told of the conflict, finds the winner's answer and gives that.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from domain.creation import create
from domain.errors import Extensions, RequestRejected
from domain.idempotency import (
    IdempotentRequest,
    fingerprint,
    idempotent_request_id,
    is_valid_key,
)
from engine.application import Sendstream

_CURRENT: ContextVar[IdempotentCall | None] = ContextVar("idempotent_call", default=None)
# What names the caller or the key, not the request: a retry may come with another session
# or a rotated key, and still be the same request.
_NOT_OF_THE_REQUEST = frozenset(
    {"APIKey", "SessionID", "SenderAPIKey", "Command", "IdempotencyKey"}
)


def answered(answer: dict[str, Any]) -> list[IdempotentRequest]:
    """What a command saves with its effects for the request it runs for: the answer
    under the request's Idempotency-Key, if it came with one (nothing otherwise)."""
    call = _CURRENT.get()
    return [] if call is None else [call.record(answer, datetime.now(UTC))]


class IdempotentCall:
    """One request made with a key: its identity, and what to record with its effects."""

    def __init__(self, account_id: UUID, key: str, endpoint: str, body: dict[str, Any]) -> None:
        if not is_valid_key(key):
            raise RequestRejected(Extensions.INVALID_IDEMPOTENCY_KEY)
        self.account_id = account_id
        self.key = key
        request = {k: v for k, v in body.items() if k not in _NOT_OF_THE_REQUEST}
        self.fingerprint = fingerprint(endpoint, orjson.dumps(request, option=orjson.OPT_SORT_KEYS))
        self.aggregate_id = idempotent_request_id(account_id, key)
        # What the key held when the request looked (None: nothing yet). The record is
        # made from that state, so that a request that answered meanwhile makes its save
        # conflict, rather than being taken for a key whose day is over.
        self._seen: IdempotentRequest | None = None
        self._recorded = False

    def earlier_answer(self, app: Sendstream, now: datetime) -> dict[str, Any] | None:
        """The answer the same request got in the last day, if any. The key used in that
        day for another request is refused (422)."""
        earlier = self._seen = self._earlier(app)
        if earlier is None or not earlier.is_kept(now):
            return None
        if earlier.fingerprint != self.fingerprint:
            raise RequestRejected(Extensions.IDEMPOTENCY_KEY_REUSED)
        return dict(earlier.answer)

    def record(self, answer: dict[str, Any], now: datetime) -> IdempotentRequest:
        """The aggregate to save with the request's effects (after :meth:`earlier_answer`
        found none): the key's first answer, or a new answer for a key whose day is over."""
        if self._recorded:
            # A second save under one key would make the first one's answer the request's.
            raise RuntimeError("a request's answer is recorded once, with all it did")
        self._recorded = True
        earlier = self._seen
        if earlier is None:
            return create(
                IdempotentRequest, "Answered", id=self.aggregate_id, account_id=self.account_id,
                fingerprint=self.fingerprint, answer=answer, answered_at=now,
            )  # fmt: skip
        earlier.answer_anew(self.fingerprint, answer, now)
        return earlier

    def perform(
        self, app: Sendstream, do: Callable[[], dict[str, Any]]
    ) -> tuple[dict[str, Any], bool]:
        """The answer of ``do`` (which saves ``answered(...)`` with its effects), or of the
        same request done before; and whether it is that earlier answer."""
        if (earlier := self.earlier_answer(app, datetime.now(UTC))) is not None:
            return earlier, True
        token = _CURRENT.set(self)
        try:
            return do(), False
        except IntegrityError:
            # The same request, retried while this one was being done, was saved first.
            if (earlier := self.earlier_answer(app, datetime.now(UTC))) is None:
                raise
            return earlier, True
        finally:
            _CURRENT.reset(token)

    def _earlier(self, app: Sendstream) -> IdempotentRequest | None:
        try:
            return app._get(self.aggregate_id, IdempotentRequest)
        except AggregateNotFoundError:
            return None
