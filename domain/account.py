"""Accounts, their sender domains and the sender API keys that send on a domain's behalf."""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from uuid import UUID, uuid5

from eventsourcing.domain import Aggregate, event

# Keys are 256-bit random tokens, so a plain SHA-256 is a sound one-way store and,
# used as the aggregate id's seed, lets a key be found without scanning or comparing secrets.
_KEY_NAMESPACE = UUID("6f0c9a51-5d0b-4c55-9a3a-6a1d1f6f4d2e")


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def aggregate_id_for_key(kind: str, digest: str) -> UUID:
    return uuid5(_KEY_NAMESPACE, f"{kind}:{digest}")


def domain_accepts_sender(domain_name: str, email: str) -> bool:
    """Mail may come from the sender domain itself or any of its subdomains."""
    host = email.rpartition("@")[2].lower().rstrip(".")
    name = domain_name.lower()
    return host == name or host.endswith("." + name)


DEFAULT_MAX_DOMAINS = 25


class DomainLimitReached(Exception):
    """The account has as many sender domains as it may have."""


def username_id(username: str) -> UUID:
    """The id of a username's claim: usernames are unique, case-insensitively."""
    return uuid5(_KEY_NAMESPACE, f"username:{username.strip().lower()}")


class UsernameClaim(Aggregate):
    """Makes a username unique across accounts: a second claim on it conflicts on save."""

    @event("Claimed")
    def __init__(self, id: UUID, account_id: UUID, user_id: UUID | None = None) -> None:
        self._id = id
        self.account_id = account_id
        self.user_id = user_id  # None: the account's own login
        self.is_released = False

    @event("Released")
    def release(self) -> None:
        """The user was deleted: the name is free again."""
        self.is_released = True

    @event("Reclaimed")
    def reclaim(self, account_id: UUID, user_id: UUID | None) -> None:
        self.account_id = account_id
        self.user_id = user_id
        self.is_released = False


class Account(Aggregate):
    """A customer of the platform; every other resource belongs to exactly one."""

    @event("Opened")
    def __init__(self, id: UUID, name: str, api_key_digest: str, opened_at: datetime) -> None:
        self._id = id
        self.name = name
        self.api_key_digest = api_key_digest
        self.opened_at = opened_at
        self.is_active = True
        self.is_verified = True
        self.daily_send_limit: int | None = None
        self.domain_ids: list[UUID] = []
        self.username: str | None = None
        self.password_hash: str | None = None
        self.max_domains = DEFAULT_MAX_DOMAINS
        self.custom_id_header = ""
        self.time_zone = "UTC"
        # Unix millisecond: sessions issued earlier no longer count (a logout). Logouts
        # recorded before sessions carried milliseconds hold seconds: earlier than any.
        self.sessions_ended_before = 0
        self.user_ids: list[UUID] = []
        self.key_ids: list[UUID] = []  # role-limited account keys (domain.users.AccountKey)
        self.agency_id: UUID | None = None  # the agency account this one is a client of
        self.client_ids: list[UUID] = []

    @event("DomainAttached")
    def attach_domain(self, domain_id: UUID) -> None:
        self.domain_ids.append(domain_id)

    def add_domain(self, domain_id: UUID) -> None:
        if len(self.domain_ids) >= self.max_domains:
            raise DomainLimitReached(self.max_domains)
        self.attach_domain(domain_id)

    @event("DomainDetached")
    def detach_domain(self, domain_id: UUID) -> None:
        self.domain_ids.remove(domain_id)

    @event("LoginSet")
    def set_login(self, username: str, password_hash: str) -> None:
        """``password_hash`` is a slow-KDF hash made outside the domain (no secrets here)."""
        self.username = username
        self.password_hash = password_hash

    @event("UserAdded")
    def add_user(self, user_id: UUID) -> None:
        self.user_ids.append(user_id)

    @event("UserRemoved")
    def remove_user(self, user_id: UUID) -> None:
        self.user_ids.remove(user_id)

    @event("KeyAdded")
    def add_key(self, key_id: UUID) -> None:
        self.key_ids.append(key_id)

    @event("KeyRemoved")
    def remove_key(self, key_id: UUID) -> None:
        self.key_ids.remove(key_id)

    @event("ClientAdded")
    def add_client(self, client_id: UUID) -> None:
        self.client_ids.append(client_id)

    @event("AgencySet")
    def set_agency(self, agency_id: UUID) -> None:
        self.agency_id = agency_id

    @event("SessionsEnded")
    def end_sessions(self, before: int) -> None:
        """A logout: every session issued before the Unix millisecond ``before`` ends."""
        self.sessions_ended_before = max(self.sessions_ended_before, before)

    @event("TimeZoneSet")
    def set_time_zone(self, name: str) -> None:
        """The IANA zone in which the account's report dates are read (checked outside)."""
        self.time_zone = name

    @event("CustomIdHeaderSet")
    def set_custom_id_header(self, name: str) -> None:
        """The header whose value is reported as each message's Custom ID (004)."""
        self.custom_id_header = name

    @event("DomainLimitSet")
    def set_max_domains(self, limit: int) -> None:
        self.max_domains = limit

    @event("Deactivated")
    def deactivate(self) -> None:
        self.is_active = False

    @event("Reactivated")
    def reactivate(self) -> None:
        self.is_active = True

    @event("VerificationRevoked")
    def mark_unverified(self) -> None:
        self.is_verified = False

    @event("Verified")
    def mark_verified(self) -> None:
        self.is_verified = True

    @event("SendLimitSet")
    def set_daily_send_limit(self, limit: int | None) -> None:
        self.daily_send_limit = limit


class SenderDomain(Aggregate):
    """A domain an account sends from: its DKIM key, the DNS records its owner must publish,
    what was last found in DNS, its tracking settings, and the keys that send for it."""

    @event("Added")
    def __init__(
        self,
        id: UUID,
        account_id: UUID,
        name: str,
        dkim_selector: str = "",
        dkim_private_key: str = "",
        dkim_public_key: str = "",
        verification_token: str = "",
        added_at: datetime | None = None,
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.name = name
        self.dkim_selector = dkim_selector
        self.dkim_private_key = dkim_private_key
        self.dkim_public_key = dkim_public_key
        self.verification_token = verification_token
        self.added_at = added_at
        self.is_active = True
        self.is_deleted = False
        self.verification_status = "Pending"
        self.dkim_status = "Pending"
        self.spf_status = "Pending"
        self.last_checked: dict[str, bool] = {}
        self.link_tracking = False
        self.open_tracking = False
        self.unsubscribe_link = False
        self.hosting_provider = ""
        self.subdomain = ""
        self.api_key_ids: list[UUID] = []
        self.smtp_credential_ids: list[UUID] = []
        self.queue_cleared_at: datetime | None = None
        self.webhook_ids: list[UUID] = []
        self.webhook_signing_key = ""
        self.ip_pool = ""  # the account's pool its mail leaves through; "" the default

    @property
    def is_verified(self) -> bool:
        return self.verification_status == VERIFIED

    @property
    def signs_with_dkim(self) -> bool:
        return self.dkim_status == VERIFIED and bool(self.dkim_private_key)

    @event("Deactivated")
    def deactivate(self) -> None:
        self.is_active = False

    @event("Activated")
    def activate(self) -> None:
        self.is_active = True

    @event("SettingsUpdated")
    def update_settings(
        self,
        link_tracking: bool,
        open_tracking: bool,
        unsubscribe_link: bool,
        hosting_provider: str,
        subdomain: str,
    ) -> None:
        self.link_tracking = link_tracking
        self.open_tracking = open_tracking
        self.unsubscribe_link = unsubscribe_link
        self.hosting_provider = hosting_provider
        self.subdomain = subdomain

    @event("IpPoolSet")
    def set_ip_pool(self, name: str) -> None:
        self.ip_pool = name

    def record_dns_check(self, published: dict[str, bool], checked_at: datetime) -> None:
        """``published`` maps each record's purpose (see ``dns_records``) to whether DNS has it.

        The domain is verified by its verification record, and SPF and DKIM by theirs;
        a later check that no longer finds a record takes the status back to Failed.
        """
        self._dns_checked(published=dict(published), checked_at=checked_at)

    @event("DnsChecked")
    def _dns_checked(self, published: dict[str, bool], checked_at: datetime) -> None:
        self.last_checked = published
        self.verification_status = VERIFIED if published.get("verification") else FAILED
        self.dkim_status = VERIFIED if published.get("dkim") else FAILED
        self.spf_status = VERIFIED if published.get("spf") else FAILED

    @event("ApiKeyAttached")
    def attach_api_key(self, key_id: UUID) -> None:
        self.api_key_ids.append(key_id)

    @event("ApiKeyDetached")
    def detach_api_key(self, key_id: UUID) -> None:
        if key_id in self.api_key_ids:
            self.api_key_ids.remove(key_id)

    @event("SmtpCredentialAttached")
    def attach_smtp_credential(self, credential_id: UUID) -> None:
        self.smtp_credential_ids.append(credential_id)

    @event("SmtpCredentialDetached")
    def detach_smtp_credential(self, credential_id: UUID) -> None:
        if credential_id in self.smtp_credential_ids:
            self.smtp_credential_ids.remove(credential_id)

    @event("WebhookAttached")
    def attach_webhook(self, webhook_id: UUID) -> None:
        self.webhook_ids.append(webhook_id)

    @event("WebhookDetached")
    def detach_webhook(self, webhook_id: UUID) -> None:
        if webhook_id in self.webhook_ids:
            self.webhook_ids.remove(webhook_id)

    def set_webhook_signing_key(self, key: str) -> None:
        """Set once: receivers keep it to verify every call (GetWebhooks shows it)."""
        if not self.webhook_signing_key:
            self._webhook_signing_key_set(key=key)

    @event("WebhookSigningKeySet")
    def _webhook_signing_key_set(self, key: str) -> None:
        self.webhook_signing_key = key

    @event("QueueCleared")
    def clear_queue(self, cleared_at: datetime) -> None:
        """Messages of this domain accepted up to now are never sent (ClearDomainQueue)."""
        self.queue_cleared_at = cleared_at

    def delete(self, deleted_at: datetime) -> None:
        if not self.is_deleted:
            self._deleted(deleted_at=deleted_at)

    @event("Deleted")
    def _deleted(self, deleted_at: datetime) -> None:
        self.is_deleted = True
        self.is_active = False
        self.queue_cleared_at = deleted_at


VERIFIED = "Verified"
FAILED = "Failed"
PENDING = "Pending"


class SenderApiKey(Aggregate):
    """A secret that lets software send and read events for one sender domain."""

    @event("Issued")
    def __init__(
        self,
        id: UUID,
        account_id: UUID,
        domain_id: UUID,
        digest: str,
        description: str,
        permissions: list[str],
        issued_at: datetime,
        hint: str = "",
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.domain_id = domain_id
        self.digest = digest
        self.description = description
        self.permissions = permissions
        self.issued_at = issued_at
        self.is_revoked = False
        self.last_used_on: str | None = None  # YYYY-MM-DD, UTC
        # A short, non-secret beginning of the key, so that its owner can tell keys apart.
        self.hint = hint

    @event("Revoked")
    def revoke(self) -> None:
        self.is_revoked = True

    def note_use(self, on: date) -> None:
        """Remember the day of use; at most one event per key per day."""
        if self.last_used_on != on.isoformat():
            self._used(on=on.isoformat())

    @event("Used")
    def _used(self, on: str) -> None:
        self.last_used_on = on


class SmtpCredential(Aggregate):
    """A username and password that submit mail over SMTP for one sender domain."""

    @event("Issued")
    def __init__(
        self,
        id: UUID,
        account_id: UUID,
        domain_id: UUID,
        username: str,
        password_hash: str,
        issued_at: datetime,
    ) -> None:
        self._id = id
        self.account_id = account_id
        self.domain_id = domain_id
        self.username = username
        self.password_hash = password_hash
        self.issued_at = issued_at
        self.is_deleted = False

    @event("PasswordReset")
    def reset_password(self, password_hash: str, reset_at: datetime) -> None:
        self.password_hash = password_hash

    @event("Deleted")
    def delete(self, deleted_at: datetime) -> None:
        self.is_deleted = True


def smtp_credential_id(username: str) -> UUID:
    """Credentials are found by username at AUTH time, without an index."""
    return uuid5(_KEY_NAMESPACE, f"smtp:{username.strip().lower()}")
