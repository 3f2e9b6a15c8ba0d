"""The event-sourced application: commands that load aggregates, change them and save them."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import DomainEventProtocol
from eventsourcing.persistence import Recording

from domain.account import (
    Account,
    SenderApiKey,
    SenderDomain,
    SmtpCredential,
    aggregate_id_for_key,
    key_digest,
    smtp_credential_id,
)
from domain.content import EmailContent
from domain.creation import create
from domain.message import Message, message_id_for
from domain.submission import Submission
from domain.suppression import SuppressionList, suppression_list_id
from engine.ids import new_id
from engine.settings import Settings

AggregateT = TypeVar("AggregateT")

SENDER_KEY_KIND = "sender-api-key"
ACCOUNT_KEY_KIND = "account-api-key"
ROLE_KEY_KIND = "role-api-key"  # an account key limited to a role (domain.users.AccountKey)


KEY_PERMISSIONS = ("send", "events", "webhooks")


def new_sender_domain(account_id: UUID, name: str, now: datetime) -> SenderDomain:
    """A sender domain with its own DKIM key pair, selector and verification token."""
    from adapters.dkim import generate_key_pair

    domain_id = new_id()
    private_key, public_key = generate_key_pair()
    return SenderDomain(
        id=domain_id,
        account_id=account_id,
        name=name,
        dkim_selector="ss" + domain_id.hex[-8:],
        dkim_private_key=private_key,
        dkim_public_key=public_key,
        verification_token=secrets.token_hex(16),
        added_at=now,
    )


@dataclass(frozen=True)
class SenderContext:
    """Who is sending: resolved from a sender API key, checked on every request."""

    key_id: UUID
    account_id: UUID
    domain_id: UUID
    domain_name: str
    account_active: bool
    account_verified: bool
    domain_active: bool
    daily_send_limit: int | None
    custom_id_header: str = ""
    time_zone: str = "UTC"


def _replay(aggregate: Any, events: Iterable[Any]) -> Any:
    """Rebuild an aggregate from its events. The library's default does the same behind a
    typing-protocol check per event, which on CPython 3.11 costs more than the rebuild."""
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


class Sendstream(Application[UUID]):
    """All aggregates of one installation share one event store and one notification log."""

    name = "sendstream"

    def __init__(self, settings: Settings, env: dict[str, str] | None = None) -> None:
        self.settings = settings
        super().__init__(env={**settings.eventstore_env(), **(env or {})})

    def record(self, events: Iterable[DomainEventProtocol[UUID]]) -> list[Recording[UUID]]:
        """Store events already collected from their aggregates, in one transaction.

        What ``save()`` does for this application (it takes no snapshots and keeps no
        aggregate cache) without checking each object against the typing protocols,
        which costs more than storing it on CPython 3.11.
        """
        return self.events.put(list(events))

    # Accounts, domains and keys.

    def bootstrap(
        self, domain_name: str, now: datetime | None = None, agency: Account | None = None
    ) -> dict[str, Any]:
        """Open an account with a sender domain and a sender key, a client of ``agency``
        when given (in the same save, which conflicts if the agency changed meanwhile);
        secrets are shown only here."""
        now = now or datetime.now(UTC)
        account_key = "acc_" + secrets.token_urlsafe(32)
        sender_key = "snd_" + secrets.token_urlsafe(32)
        account = Account(
            id=aggregate_id_for_key(ACCOUNT_KEY_KIND, key_digest(account_key)),
            name=domain_name,
            api_key_digest=key_digest(account_key),
            opened_at=now,
        )
        if agency is not None:
            account.set_agency(agency.id)
            agency.add_client(account.id)
        domain = new_sender_domain(account.id, domain_name.lower(), now)
        account.attach_domain(domain.id)
        key = SenderApiKey(
            id=aggregate_id_for_key(SENDER_KEY_KIND, key_digest(sender_key)),
            account_id=account.id,
            domain_id=domain.id,
            digest=key_digest(sender_key),
            description="created by bootstrap",
            permissions=list(KEY_PERMISSIONS),
            issued_at=now,
            hint=sender_key[:10],
        )
        domain.attach_api_key(key.id)
        self.save(account, domain, key, *([agency] if agency is not None else []))
        return {
            "AccountID": str(account.id),
            "AccountAPIKey": account_key,
            "DomainID": str(domain.id),
            "DomainName": domain.name,
            "SenderAPIKeyID": str(key.id),
            "SenderAPIKey": sender_key,
        }

    def sender_context(self, secret: str) -> SenderContext | None:
        """The sender behind a key, or None when the key is unknown or revoked."""
        digest = key_digest(secret)
        try:
            key = self._get(aggregate_id_for_key(SENDER_KEY_KIND, digest), SenderApiKey)
        except AggregateNotFoundError:
            return None
        if key.is_revoked or not hmac.compare_digest(key.digest, digest):
            return None
        return self.sender_context_for(key.account_id, key.domain_id, key.id)

    def sender_context_for(self, account_id: UUID, domain_id: UUID, key_id: UUID) -> SenderContext:
        """The sender for a domain of an account (``key_id``: what its rate limit counts by)."""
        domain = self.domain(domain_id)
        account = self.account(account_id)
        return SenderContext(
            key_id=key_id,
            account_id=account.id,
            domain_id=domain.id,
            domain_name=domain.name,
            account_active=account.is_active,
            account_verified=account.is_verified,
            domain_active=domain.is_active and not domain.is_deleted,
            daily_send_limit=account.daily_send_limit,
            custom_id_header=account.custom_id_header,
            time_zone=account.time_zone,
        )

    def smtp_credential(self, username: str) -> SmtpCredential | None:
        """The live SMTP credential with this username, or None."""
        try:
            credential = self._get(smtp_credential_id(username), SmtpCredential)
        except AggregateNotFoundError:
            return None
        return None if credential.is_deleted else credential

    def _get(self, aggregate_id: UUID, kind: type[AggregateT]) -> AggregateT:
        """The aggregate, which must be of the given kind (ids of other kinds count as absent)."""
        found: Any = self.repository.get(aggregate_id, projector_func=_replay)
        if not isinstance(found, kind):
            raise AggregateNotFoundError(aggregate_id)
        return found

    def account(self, account_id: UUID) -> Account:
        return self._get(account_id, Account)

    def domain(self, domain_id: UUID) -> SenderDomain:
        return self._get(domain_id, SenderDomain)

    # Messages.

    def prepare_submission(
        self,
        sender: SenderContext,
        content: EmailContent,
        now: datetime,
        source: str = "api",
        submission_id: UUID | None = None,
        template: dict[str, Any] | None = None,
    ) -> tuple[Submission, list[Message]]:
        """Build (not save) the submission and a Message per recipient, queued unless scheduled."""
        submission_id = submission_id or new_id()
        messages: list[Message] = []
        custom_id = ""
        if sender.custom_id_header:
            wanted = sender.custom_id_header.lower()
            custom_id = next((v for k, v in content.headers if k.lower() == wanted), "")[:256]
        for index, (kind, address) in enumerate(content.recipients()):
            message = create(
                Message,
                "Accepted",
                id=message_id_for(submission_id, index),
                submission_id=submission_id,
                account_id=sender.account_id,
                domain_id=sender.domain_id,
                recipient=address.email,
                recipient_kind=kind.value,
                sender=content.sender.email,
                subject=content.subject,
                tags=list(content.tags),
                custom_id=custom_id,
            )
            if content.send_at is None or content.send_at <= now:
                message.queue()
            else:
                message.schedule(content.send_at)
            messages.append(message)
        submission = create(
            Submission,
            "Received",
            id=submission_id,
            account_id=sender.account_id,
            domain_id=sender.domain_id,
            source=source,
            content=content.to_dict(),
            message_ids=[m.id for m in messages],
            template=template,
        )
        return submission, messages

    def message(self, message_id: UUID) -> Message:
        return self._get(message_id, Message)

    def submission(self, submission_id: UUID) -> Submission:
        return self._get(submission_id, Submission)

    # Suppression.

    def suppression_list(self, account_id: UUID) -> SuppressionList | None:
        try:
            return self._get(suppression_list_id(account_id), SuppressionList)
        except AggregateNotFoundError:
            return None

    def suppress(self, account_id: UUID, email: str, reason: str, now: datetime) -> None:
        suppressions = self.suppression_list(account_id) or SuppressionList(
            id=suppression_list_id(account_id), account_id=account_id
        )
        suppressions.add(email, reason, now)
        self.save(suppressions)
