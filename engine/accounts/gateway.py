"""The account layer of ``POST /api.php``: logins, sender domains, their DNS and DKIM, sender
API keys and SMTP credentials (``EmailGateway.*`` and ``User.Login`` in 002 and 000).

Every command takes the caller's ``Account`` and answers only about that account's
resources: anything else is "not found", worded as each command's document words it,
so one account can neither see nor infer another's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from adapters.ports import ReportingStore
from domain import errors as E
from domain.account import (
    Account,
    DomainLimitReached,
    SenderApiKey,
    SenderDomain,
    SmtpCredential,
    UsernameClaim,
    aggregate_id_for_key,
    key_digest,
    smtp_credential_id,
    username_id,
)
from domain.errors import ErrorText, RequestRejected
from domain.message import QUEUE_CLEARED, MessageStatus
from domain.users import AccountKey, Role, User
from engine.accounts.callers import Caller
from engine.accounts.domain_names import DomainNameInvalid, normalise_domain_name
from engine.accounts.passwords import hash_password, new_password, verify_password
from engine.application import (
    ACCOUNT_KEY_KIND,
    KEY_PERMISSIONS,
    ROLE_KEY_KIND,
    SENDER_KEY_KIND,
    Sendstream,
    new_sender_domain,
)
from engine.idempotency import answered
from engine.keys import session_secret
from engine.params import (
    MAX_PAGED_RECORDS,
    count_param,
    date_param,
    event_param,
    flag_param,
    iso_time,
    text_param,
    time_zone_param,
    uuid_param,
)
from engine.rate_limit import Rate, RateLimiter, RequestLimit, seconds_to_wait

AggregateT = TypeVar("AggregateT", bound=Aggregate)

_READ_CACHE_SECONDS = 2.0
_PENDING = (MessageStatus.ACCEPTED, MessageStatus.SCHEDULED, MessageStatus.QUEUED,
            MessageStatus.DEFERRED)  # fmt: skip


class Sessions:
    """``SessionID``s that carry their account, their user and when they were issued (to
    the millisecond), signed with a server secret.

    Nothing to store or share between API processes but the secret, and a session
    cannot outlive its lifetime, whatever happens to the process that issued it. A
    logout or a new password ends the sessions issued before it, to the millisecond, so
    that logging in again at once works.
    """

    _LAYOUT = struct.Struct(">16s16sQ")

    def __init__(self, secret: bytes, lifetime_seconds: int) -> None:
        self._secret = secret
        self._lifetime = lifetime_seconds

    def issue(
        self, account_id: UUID, user_id: UUID | None = None, now: float | None = None
    ) -> tuple[str, datetime]:
        """``user_id``: the user logged in; the account's own login is the account's id."""
        issued = now_millisecond(now)
        body = self._LAYOUT.pack(account_id.bytes, (user_id or account_id).bytes, issued)
        token = base64.urlsafe_b64encode(body + self._sign(body)).decode().rstrip("=")
        return "ses_" + token, datetime.fromtimestamp(issued / 1000 + self._lifetime, UTC)

    def holder_of(self, session_id: str, now: float | None = None) -> tuple[UUID, UUID, int] | None:
        """The account and user of a valid session, and the Unix millisecond it was issued."""
        body = self._body(session_id)
        if body is None:
            return None
        account_bytes, user_bytes, issued = self._LAYOUT.unpack(body)
        if issued / 1000 + self._lifetime < (now or time.time()):
            return None
        return UUID(bytes=account_bytes), UUID(bytes=user_bytes), int(issued)

    def account_of(self, session_id: str, now: float | None = None) -> UUID | None:
        holder = self.holder_of(session_id, now)
        return holder[0] if holder else None

    def _body(self, session_id: str) -> bytes | None:
        if not session_id.startswith("ses_") or len(session_id) > 160:
            return None
        try:
            raw = base64.urlsafe_b64decode(session_id[4:] + "=" * (-len(session_id[4:]) % 4))
        except (ValueError, TypeError):
            return None
        body, signature = raw[: self._LAYOUT.size], raw[self._LAYOUT.size :]
        if len(body) != self._LAYOUT.size or not hmac.compare_digest(signature, self._sign(body)):
            return None
        return body

    def _sign(self, body: bytes) -> bytes:
        return hmac.new(self._secret, body, hashlib.sha256).digest()[:20]


def now_millisecond(now: float | None = None) -> int:
    return int((now or time.time()) * 1000)


class Gateway:
    """The ``EmailGateway.*`` commands of the account layer, and ``User.Login``."""

    def __init__(
        self,
        app: Sendstream,
        forget_senders: Callable[[], None],
        pending_messages: Callable[[UUID], list[UUID]] | None = None,
        reporting: Callable[[], ReportingStore] | None = None,
        check_pool: Callable[[Account, Any], str] | None = None,
    ) -> None:
        self._app = app
        self._check_pool = check_pool
        self._reporting = reporting
        self._settings = app.settings
        self._forget_senders = forget_senders
        self._pending_messages = pending_messages
        self._sessions = Sessions(
            session_secret(app.settings), app.settings.session_lifetime_seconds
        )
        self._limiter = RequestLimit(app.settings.api_rate_limit)
        self._login_failures = RateLimiter(Rate.parse(app.settings.login_failure_limit))
        self._cache: dict[UUID, tuple[float, Aggregate | None]] = {}
        self._cache_lock = threading.Lock()

    # Reading, with a short cache: the same few aggregates answer most requests.

    def _load(self, aggregate_id: UUID, kind: type[AggregateT]) -> AggregateT | None:
        now = time.monotonic()
        cached = self._cache.get(aggregate_id)
        if cached is not None and now - cached[0] < _READ_CACHE_SECONDS:
            found = cached[1]
        else:
            try:
                found = self._app._get(aggregate_id, Aggregate)
            except AggregateNotFoundError:
                found = None
            with self._cache_lock:
                if len(self._cache) > 50_000:
                    self._cache.clear()
                self._cache[aggregate_id] = (now, found)
        return found if isinstance(found, kind) else None

    def _fresh(self, aggregate_id: UUID, kind: type[AggregateT]) -> AggregateT | None:
        """As stored now, never from the cache: users and role keys, whose deletion, role
        change or new password must count from the next request, in every process."""
        try:
            found = self._app._get(aggregate_id, Aggregate)
        except AggregateNotFoundError:
            return None
        return found if isinstance(found, kind) else None

    def save(self, *aggregates: Aggregate) -> None:
        self._save(*aggregates)

    def _save(self, *aggregates: Aggregate) -> None:
        """Save, and forget what this process had cached of them."""
        try:
            self._app.save(*aggregates)
        finally:
            with self._cache_lock:
                for aggregate in aggregates:
                    self._cache.pop(aggregate.id, None)

    # Who is calling.

    def authenticate(self, params: dict[str, Any]) -> Account:
        return self.identify(params).account

    def identify(self, params: dict[str, Any]) -> Caller:
        """Who calls with ``APIKey`` or ``SessionID``, after its account's rate limit, and as
        which client when an agency names one (``ClientAccountID``). A key given as anything
        but text is refused, even beside a good one: it is no key."""
        for name in ("APIKey", "SessionID"):
            given = params.get(name)
            if given is not None and not isinstance(given, str):
                raise RequestRejected(E.Command.INVALID_CREDENTIALS)
        api_key, session_id = text_param(params.get("APIKey")), text_param(params.get("SessionID"))
        caller: Caller | None = None
        if api_key:
            caller = self._key_holder(api_key)
        if caller is None and session_id:
            caller = self._session_holder(session_id)
        if caller is None:
            if not api_key and not session_id:
                raise RequestRejected(E.Command.NOT_AUTHENTICATED)
            raise RequestRejected(E.Command.INVALID_CREDENTIALS)
        self._limiter.check(str(caller.account.id), E.Command.TOO_MANY_REQUESTS)
        client = params.get("ClientAccountID")
        if client is not None and client != "":
            caller = self._as_client(caller, client)
        return caller

    def _key_holder(self, api_key: str) -> Caller | None:
        digest = key_digest(api_key)
        account = self._load(aggregate_id_for_key(ACCOUNT_KEY_KIND, digest), Account)
        if account is not None and hmac.compare_digest(account.api_key_digest, digest):
            return Caller(account, Role.OWNER, "account-key", name="account key")
        key = self._fresh(aggregate_id_for_key(ROLE_KEY_KIND, digest), AccountKey)
        if key is None or key.is_revoked or not hmac.compare_digest(key.digest, digest):
            return None
        account = self._load(key.account_id, Account)
        if account is None:
            return None
        return Caller(account, key.role, "role-key", key_id=key.id, name=key.description)

    def _session_holder(self, session_id: str) -> Caller | None:
        holder = self._sessions.holder_of(session_id)
        if holder is None:
            return None
        account = self._load(holder[0], Account)
        issued = holder[2]
        if account is None:
            return None
        if holder[1] == account.id:  # the account's own login
            if issued < account.sessions_ended_before:
                return None  # logged out
            return Caller(account, Role.OWNER, "session", user_id=account.id,
                          name=account.username or "")  # fmt: skip
        user = self._fresh(holder[1], User)
        if (
            user is None
            or user.is_deleted
            or user.account_id != account.id
            or issued < user.sessions_ended_before
        ):
            return None
        return Caller(account, user.role, "session", user_id=user.id, name=user.username)

    def _as_client(self, agency: Caller, value: Any) -> Caller:
        """The agency's caller acting on its client ``value``, with the same role."""
        client_id = uuid_param(value)
        client = self._load(client_id, Account) if client_id else None
        if client is None or client.agency_id != agency.account.id:
            raise RequestRejected(E.Agencies.INVALID_AGENCY)
        return replace(agency, account=client, acting_agency_id=agency.account.id)

    def logout(self, caller: Caller) -> None:
        """End every session of the caller's login issued up to now (the console's logout)."""
        before = now_millisecond()
        if caller.user_id is None or caller.user_id == caller.account.id:
            fresh = self._app.account(caller.account.id)
            fresh.end_sessions(before)
            self._save(fresh)
            return
        user = self._app._get(caller.user_id, User)
        user.end_sessions(before)
        self._save(user)

    def login(self, params: dict[str, Any]) -> dict[str, Any]:
        username, password = text_param(params.get("Username")), params.get("Password")
        for name, value in (("Username", username), ("Password", password)):
            if not value or not isinstance(value, str):
                raise RequestRejected(E.UserLogin.MISSING_PARAMETER.format(name=name))
        assert username is not None and isinstance(password, str)
        # Locked out after repeated failures, known username or not, right password or not.
        failures_key = username.lower()[:256]
        locked = self._login_failures.wait(failures_key)
        if locked > 0:
            seconds = seconds_to_wait(locked)
            raise RequestRejected(
                E.Command.TOO_MANY_REQUESTS.format(
                    seconds=seconds, attempts=self._login_failures.rate.amount
                ),
                retry_after=seconds,
            )
        claim = self._fresh(username_id(username), UsernameClaim) if len(username) <= 256 else None
        if claim is not None and claim.is_released:
            claim = None
        account = self._load(claim.account_id, Account) if claim else None
        user = self._fresh(claim.user_id, User) if claim and claim.user_id else None
        if user is not None and (
            user.is_deleted or claim is None or user.account_id != claim.account_id
        ):
            user = None
        stored = user.password_hash if user else account.password_hash if account else None
        # A missing user costs a hash too, so that timing does not tell which usernames exist.
        if (
            not verify_password(stored or _DUMMY_HASH, password[:1024])
            or account is None
            or stored is None
            or (claim is not None and claim.user_id is not None and user is None)
        ):
            self._login_failures.acquire(failures_key)
            raise RequestRejected(E.Command.LOGIN_FAILED)
        self._limiter.check(str(account.id), E.Command.TOO_MANY_REQUESTS)
        session_id, expires = self._sessions.issue(account.id, user.id if user else None)
        return {
            "SessionID": session_id,
            "ExpiresAt": iso_time(expires),
            "AccountID": str(account.id),
            "UserID": str(user.id if user else account.id),
            "Role": (user.role if user else Role.OWNER).value,
        }

    def username_taken(self, username: str) -> bool:
        claim = self._fresh(username_id(username), UsernameClaim)
        return claim is not None and not claim.is_released

    def set_login(self, account_id: UUID, username: str, password: str) -> None:
        """Give an account its username (unique across accounts) and password."""
        account = self._app.account(account_id)
        claim = UsernameClaim(id=username_id(username), account_id=account.id)
        account.set_login(username.strip(), hash_password(password))
        try:
            self._save(claim, account)
        except IntegrityError:
            raise ValueError(f"the username {username!r} is taken") from None

    # The account itself.

    def get_account(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "Account": {
                "AccountID": str(account.id),
                "Name": account.name,
                "Username": account.username,
                "IsActive": account.is_active,
                "IsVerified": account.is_verified,
                "DailySendLimit": account.daily_send_limit,
                "MaxDomains": account.max_domains,
                "Domains": len(account.domain_ids),
                "CustomIDHeader": account.custom_id_header,
                "TimeZone": account.time_zone,
            }
        }

    def update_account(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        """``CustomIDHeader``: the header whose value events report as the Custom ID (004);
        empty to stop. ``TimeZone``: the IANA zone in which report dates are read."""
        name = params.get("CustomIDHeader")
        zone_value = params.get("TimeZone")
        if name is None and zone_value is None:
            raise RequestRejected(E.UserLogin.MISSING_PARAMETER.format(name="CustomIDHeader"))
        if name is not None and (
            not isinstance(name, str)
            or len(name) > 64
            or not all(33 <= ord(c) <= 126 and c != ":" for c in name.strip())
        ):
            raise RequestRejected(E.Command.INVALID_OPTION.format(name="CustomIDHeader"))
        zone = None if zone_value is None else time_zone_param(zone_value)
        if zone_value is not None and zone is None:
            raise RequestRejected(E.Command.INVALID_OPTION.format(name="TimeZone"))
        account = self._app.account(account.id)
        changed = False
        if name is not None and account.custom_id_header != name.strip():
            account.set_custom_id_header(name.strip())
            changed = True
        if zone is not None and account.time_zone != zone:
            account.set_time_zone(zone)
            changed = True
        if changed:
            self._save(account)
        # The send path caches who a key belongs to for a moment; this changes that.
        self._forget_senders()
        return {"CustomIDHeader": account.custom_id_header, "TimeZone": account.time_zone}

    # Sender domains.

    def _own_domain(self, account: Account, value: Any, error: ErrorText) -> SenderDomain:
        domain_id = uuid_param(value)
        domain = self._load(domain_id, SenderDomain) if domain_id else None
        if domain is None or domain.account_id != account.id or domain.is_deleted:
            raise RequestRejected(error)
        return domain

    def _domain_param(
        self, account: Account, params: dict[str, Any], missing: ErrorText, not_found: ErrorText
    ) -> SenderDomain:
        """The caller's domain named by ``DomainID``, or the command's own errors."""
        if text_param(params.get("DomainID")) is None:
            raise RequestRejected(missing)
        return self._own_domain(account, params["DomainID"], not_found)

    def _records(self, domain: SenderDomain) -> list[Any]:
        from domain.dns_records import required_records

        return required_records(
            domain.name,
            verification_token=domain.verification_token,
            dkim_selector=domain.dkim_selector,
            dkim_public_key=domain.dkim_public_key,
            spf_include=self._settings.spf_include,
            mail_hostname=self._settings.mail_hostname,
            tracking_subdomain=domain.subdomain,
        )

    def _describe_records(self, domain: SenderDomain) -> list[dict[str, Any]]:
        return [
            {
                "Purpose": r.purpose,
                "Host": r.host,
                "Type": r.type,
                "Value": r.value,
                "Verified": domain.last_checked.get(r.purpose, False),
            }
            for r in self._records(domain)
        ]

    def add_domain(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        name = text_param(params.get("DomainName"))
        if name is None:
            raise RequestRejected(E.AddDomain.MISSING_DOMAIN_NAME)
        try:
            name = normalise_domain_name(name)
        except DomainNameInvalid:
            raise RequestRejected(E.AddDomain.INVALID_DOMAIN_NAME) from None
        account = self._app.account(account.id)  # fresh: the limit counts every domain
        existing = [self._load(d, SenderDomain) for d in account.domain_ids]
        if any(d is not None and d.name == name and not d.is_deleted for d in existing):
            raise RequestRejected(E.AddDomain.INVALID_DOMAIN_NAME)
        domain = new_sender_domain(account.id, name, datetime.now(UTC))
        try:
            account.add_domain(domain.id)
        except DomainLimitReached:
            raise RequestRejected(E.AddDomain.LIMIT_REACHED) from None
        answer = {
            "NewSenderDomainID": str(domain.id),
            "Domain": {**self._status(domain), "DNSRecords": self._describe_records(domain)},
        }
        self._save(account, domain, *answered(answer))
        return answer

    @staticmethod
    def _status(domain: SenderDomain) -> dict[str, Any]:
        return {
            "DomainName": domain.name,
            "VerificationStatus": domain.verification_status,
            "DKIMStatus": domain.dkim_status,
            "SPFStatus": domain.spf_status,
        }

    def _settings_of(self, domain: SenderDomain) -> dict[str, Any]:
        return {
            "LinkTracking": "1" if domain.link_tracking else "0",
            "OpenTracking": "1" if domain.open_tracking else "0",
            "UnsubscribeLink": "1" if domain.unsubscribe_link else "0",
            "HostingProvider": domain.hosting_provider,
            "Subdomain": domain.subdomain,
            "IPPool": domain.ip_pool,
        }

    def get_domain(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        domain = self._domain_param(
            account, params, E.GetDomain.MISSING_DOMAIN_ID, E.GetDomain.DOMAIN_NOT_FOUND
        )
        return {
            "Domain": {
                "DomainID": str(domain.id),
                "IsActive": domain.is_active,
                **self._status(domain),
                **self._settings_of(domain),
                "DNSRecords": self._describe_records(domain),
            }
        }

    def get_domains(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        domains = []
        for domain_id in account.domain_ids:
            domain = self._load(domain_id, SenderDomain)
            if domain is None or domain.is_deleted:
                continue
            domains.append(
                {
                    "DomainID": str(domain.id),
                    **self._status(domain),
                    "Verified": domain.is_verified,
                    "Active": domain.is_active,
                }
            )
        return {"Domains": domains}

    def update_domain(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        domain = self._domain_param(
            account, params, E.UpdateDomain.MISSING_DOMAIN_ID, E.UpdateDomain.DOMAIN_NOT_FOUND
        )
        domain = self._app.domain(domain.id)
        provider = params.get("HostingProvider", domain.hosting_provider)
        subdomain = params.get("Subdomain", domain.subdomain)
        if not isinstance(provider, str) or len(provider) > 255 or "\x00" in provider:
            raise RequestRejected(E.Command.INVALID_OPTION.format(name="HostingProvider"))
        if not isinstance(subdomain, str) or len(subdomain) > 63:
            raise RequestRejected(E.Command.INVALID_OPTION.format(name="Subdomain"))
        subdomain = subdomain.strip().lower()
        if subdomain and not _is_label(subdomain):
            raise RequestRejected(E.Command.INVALID_OPTION.format(name="Subdomain"))
        pool = domain.ip_pool
        if "IPPool" in params and self._check_pool is not None:
            pool = self._check_pool(account, params["IPPool"])
        domain.update_settings(
            link_tracking=flag_param(params, "LinkTracking", domain.link_tracking),
            open_tracking=flag_param(params, "OpenTracking", domain.open_tracking),
            unsubscribe_link=flag_param(params, "UnsubscribeLink", domain.unsubscribe_link),
            hosting_provider=provider.strip(),
            subdomain=subdomain,
        )
        if pool != domain.ip_pool:
            domain.set_ip_pool(pool)
        self._save(domain)
        return {"Domain": {"DomainID": str(domain.id), **self._settings_of(domain)}}

    def delete_domain(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        domain = self._domain_param(
            account, params, E.DeleteDomain.MISSING_DOMAIN_ID, E.DeleteDomain.DOMAIN_NOT_FOUND
        )
        domain = self._app.domain(domain.id)
        account = self._app.account(account.id)
        now = datetime.now(UTC)
        changed: list[Aggregate] = [domain, account]
        for key_id in domain.api_key_ids:
            key = self._app._get(key_id, SenderApiKey)
            if not key.is_revoked:
                key.revoke()
                changed.append(key)
        for credential_id in domain.smtp_credential_ids:
            credential = self._app._get(credential_id, SmtpCredential)
            if not credential.is_deleted:
                credential.delete(now)
                changed.append(credential)
        domain.delete(now)
        account.detach_domain(domain.id)
        self._save(*changed)
        self._forget_senders()
        self._fail_pending(domain)
        return {}

    def clear_domain_queue(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        domain = self._domain_param(
            account,
            params,
            E.ClearDomainQueue.MISSING_DOMAIN_ID,
            E.ClearDomainQueue.DOMAIN_NOT_FOUND,
        )
        domain = self._app.domain(domain.id)
        domain.clear_queue(datetime.now(UTC))
        self._save(domain)
        failed = self._fail_pending(domain)
        return {"ClearedMessages": failed}

    def _fail_pending(self, domain: SenderDomain) -> int:
        """Fail the domain's waiting messages now, as events. Those the reporting tables do
        not know of yet are stopped by the delivery worker, which honours the domain's
        ``queue_cleared_at`` before it sends anything."""
        if self._pending_messages is None:
            return 0
        failed = 0
        for message_id in self._pending_messages(domain.id):
            for _ in range(3):
                message = self._app.message(message_id)
                if message.status not in _PENDING:
                    break
                message.fail(reason=QUEUE_CLEARED, reply_text="the domain's queue was cleared")
                try:
                    self._app.save(message)
                except IntegrityError:
                    continue  # a worker moved it meanwhile: look again
                failed += 1
                break
        return failed

    def verify_domain(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        from adapters.dns import DnsLookup
        from engine.accounts.dns_check import check_records

        domain = self._domain_param(
            account, params, E.VerifyDomain.MISSING_DOMAIN_ID, E.VerifyDomain.DOMAIN_NOT_FOUND
        )
        domain = self._app.domain(domain.id)
        results = check_records(DnsLookup(self._settings.dns_resolver), self._records(domain))
        published: dict[str, bool] = {}
        for record, found in results:
            published[record.purpose] = published.get(record.purpose, True) and found
        domain.record_dns_check(published, datetime.now(UTC))
        self._save(domain)
        return {
            "Domain": {
                "DomainID": str(domain.id),
                "DomainName": domain.name,
                "Status": "Enabled" if domain.is_verified else "Pending",
                "VerificationStatus": domain.verification_status,
                "DKIMStatus": domain.dkim_status,
                "SPFStatus": domain.spf_status,
            },
            "DNSVerificationResults": [
                {
                    "Purpose": r.purpose,
                    "Host": r.host,
                    "Type": r.type,
                    "Value": r.value,
                    "Verified": found,
                }
                for r, found in results
            ],
        }

    def get_events(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        """The domain's events, newest first, filtered by date, type and ``Query``."""
        from projections.events import list_event_rows
        from projections.query import QueryError, parse_query

        domain = self._domain_param(
            account,
            params,
            E.GatewayGetEvents.MISSING_DOMAIN_ID,
            E.GatewayGetEvents.DOMAIN_NOT_FOUND,
        )
        if params.get("StartFrom") in (None, ""):
            raise RequestRejected(E.GatewayGetEvents.MISSING_START_FROM)
        if params.get("RetrieveCount") in (None, ""):
            raise RequestRejected(E.GatewayGetEvents.MISSING_RETRIEVE_COUNT)
        start_from = count_param(params["StartFrom"], 0, "StartFrom")
        # More than the documented maximum is served as the maximum, as paging APIs do.
        retrieve_count = min(count_param(params["RetrieveCount"], 0, "RetrieveCount"), 100)
        if start_from + retrieve_count > MAX_PAGED_RECORDS:
            raise RequestRejected(E.Extensions.TOO_MANY_RECORDS)
        try:
            terms = parse_query(str(params.get("Query") or ""))
        except QueryError as error:
            raise RequestRejected(
                E.Command.INVALID_OPTION.format(name=f"Query ({error})")
            ) from None
        if self._reporting is None:
            return {"TotalRecords": 0, "Events": []}
        total, rows = list_event_rows(
            self._reporting(),
            domain_id=domain.id,
            start_from=start_from,
            retrieve_count=retrieve_count,
            start=date_param(params.get("StartDate"), end_of_day=False, zone=account.time_zone),
            end=date_param(params.get("EndDate"), end_of_day=True, zone=account.time_zone),
            event_type=event_param(params.get("Event")),
            terms=terms,
        )
        return {
            "TotalRecords": total,
            "Events": [
                {
                    "event_id": str(row["event_id"]),
                    "event_type": row["event_type"],
                    "timestamp": row["occurred_at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "recipient": row["recipient"],
                    "message_id": str(row["submission_id"]),
                    "campaign_id": row["campaign_id"] or None,
                    "message": {
                        "headers": {
                            "subject": row["subject"],
                            "from": row["sender"],
                            "to": row["recipient"],
                        }
                    },
                }
                for row in rows
            ],
        }

    def date_range(self, account: Account, params: dict[str, Any]) -> tuple[datetime, datetime]:
        """StartDate and EndDate (inclusive, in the account's time zone); by default the
        last 30 days."""
        zone = account.time_zone
        end = date_param(params.get("EndDate"), end_of_day=True, zone=zone) or datetime.now(UTC)
        start = date_param(params.get("StartDate"), end_of_day=False, zone=zone)
        start = start or end - timedelta(days=30)
        if start > end:
            raise RequestRejected(E.Command.INVALID_OPTION.format(name="StartDate"))
        return start, end

    def aggregated_events(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        from projections.stats import AGGREGATIONS, aggregated_events

        domain = self._domain_param(
            account, params, E.AggrEvents.MISSING_DOMAIN_ID, E.AggrEvents.DOMAIN_NOT_FOUND
        )
        field = (text_param(params.get("AggregatedField")) or "eventType").lower()
        field = field.replace("_", "").replace(" ", "")
        if field not in AGGREGATIONS:
            raise RequestRejected(E.Command.INVALID_OPTION.format(name="AggregatedField"))
        size = min(count_param(params.get("AggregateSize"), 10, "AggregateSize"), 1000)
        start, end = self.date_range(account, params)
        if self._reporting is None:
            return {"AggBuckets": []}
        buckets = aggregated_events(
            self._reporting(), domain.id, field, size, start, end, account.time_zone
        )
        return {"AggBuckets": buckets}

    def domain_stats(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        from projections.stats import domain_stats

        domain = self._domain_param(
            account, params, E.DomainStats.MISSING_DOMAIN_ID, E.DomainStats.DOMAIN_NOT_FOUND
        )
        start, end = self.date_range(account, params)
        if self._reporting is None:
            return {"Stats": {}, "ComparisonStats": {}, "TagStats": {}}
        return domain_stats(self._reporting(), domain.id, start, end)

    # Sender API keys.

    def add_api(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        description = params.get("Description")
        if not isinstance(description, str) or not description.strip() or len(description) > 255:
            raise RequestRejected(E.AddApi.MISSING_DESCRIPTION)
        if (
            uuid_param(params.get("DomainID")) is None
            and text_param(params.get("DomainID")) is None
        ):
            raise RequestRejected(E.AddApi.MISSING_DOMAIN_ID)
        domain = self._own_domain(account, params.get("DomainID"), E.AddApi.DOMAIN_NOT_FOUND)
        domain = self._app.domain(domain.id)
        secret = "snd_" + secrets.token_urlsafe(32)
        digest = key_digest(secret)
        key = SenderApiKey(
            id=aggregate_id_for_key(SENDER_KEY_KIND, digest),
            account_id=account.id,
            domain_id=domain.id,
            digest=digest,
            description=description.strip(),
            permissions=list(KEY_PERMISSIONS),
            issued_at=datetime.now(UTC),
            hint=secret[:10],
        )
        domain.attach_api_key(key.id)
        self._save(key, domain)
        return {
            "NewAPIKeyID": str(key.id),
            "APIKey": {
                "Key": secret,
                "Permissions": ",".join(key.permissions),
                "DomainID": str(domain.id),
                "Description": key.description,
            },
        }

    def get_apis(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        domain = self._domain_param(
            account, params, E.GetApis.MISSING_DOMAIN_ID, E.GetApis.DOMAIN_NOT_FOUND
        )
        keys = []
        for key_id in domain.api_key_ids:
            key = self._load(key_id, SenderApiKey)
            if key is None or key.is_revoked:
                continue
            keys.append(
                {
                    "KeyID": str(key.id),
                    "DomainID": str(key.domain_id),
                    "UserID": str(key.account_id),
                    # Only the hash is kept: the key itself was shown once, at creation.
                    "Key": f"{key.hint}…" if key.hint else "",
                    "Description": key.description,
                    "Permissions": ",".join(key.permissions),
                    "CreationDate": iso_time(key.issued_at),
                    "LastUsedDate": key.last_used_on,
                }
            )
        return {"APIKeys": keys}

    def delete_api(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        if text_param(params.get("ApiKeyId")) is None:
            raise RequestRejected(E.DeleteApi.MISSING_KEY_ID)
        key_id = uuid_param(params["ApiKeyId"])
        key = self._load(key_id, SenderApiKey) if key_id else None
        if key is None or key.account_id != account.id or key.is_revoked:
            raise RequestRejected(E.DeleteApi.KEY_NOT_FOUND)
        key = self._app._get(key.id, SenderApiKey)
        key.revoke()
        changed: list[Aggregate] = [key]
        domain = self._load(key.domain_id, SenderDomain)
        if domain is not None:
            domain = self._app.domain(domain.id)
            domain.detach_api_key(key.id)
            changed.append(domain)
        self._save(*changed)
        # The send path caches who a key belongs to for a moment: not a revoked one.
        self._forget_senders()
        return {}

    # SMTP credentials.

    def _smtp_info(self) -> dict[str, Any]:
        ports = self._settings.submission_ports + self._settings.submission_tls_ports
        return {"SMTPHost": self._settings.mail_hostname, "SMTPPorts": [str(p) for p in ports]}

    def add_smtp(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        domain = self._domain_param(
            account, params, E.AddSmtp.MISSING_DOMAIN_ID, E.AddSmtp.DOMAIN_NOT_FOUND
        )
        domain = self._app.domain(domain.id)
        username = f"smtp-{secrets.token_hex(6)}@{domain.name}"
        password = new_password()
        credential = SmtpCredential(
            id=smtp_credential_id(username),
            account_id=account.id,
            domain_id=domain.id,
            username=username,
            password_hash=hash_password(password),
            issued_at=datetime.now(UTC),
        )
        domain.attach_smtp_credential(credential.id)
        self._save(credential, domain)
        return {
            "NewSMTPID": str(credential.id),
            "SMTP": {
                **self._smtp_info(),
                "Username": username,
                "Password": password,
                "OtherSMTPInfo": "AUTH PLAIN or LOGIN; STARTTLS where offered. "
                "The password is shown only now.",
            },
        }

    def get_smtps(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        domain = self._domain_param(
            account, params, E.GetSmtps.MISSING_DOMAIN_ID, E.GetSmtps.DOMAIN_NOT_FOUND
        )
        found = []
        for credential_id in domain.smtp_credential_ids:
            credential = self._load(credential_id, SmtpCredential)
            if credential is None or credential.is_deleted:
                continue
            found.append(
                {
                    "SMTPID": str(credential.id),
                    **self._smtp_info(),
                    "Username": credential.username,
                    # Only a hash is kept; ResetSMTPPassword issues a new password.
                    "Password": None,
                    "IsActive": domain.is_active,
                    "CreationDate": iso_time(credential.issued_at),
                }
            )
        return {"SMTPs": found}

    def _own_credential(self, account: Account, value: Any, error: ErrorText) -> SmtpCredential:
        credential_id = uuid_param(value)
        credential = self._load(credential_id, SmtpCredential) if credential_id else None
        if credential is None or credential.account_id != account.id or credential.is_deleted:
            raise RequestRejected(error)
        return self._app._get(credential.id, SmtpCredential)

    def delete_smtp(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        if text_param(params.get("smtpid")) is None:
            raise RequestRejected(E.DeleteSmtp.MISSING_SMTP_ID)
        credential = self._own_credential(account, params["smtpid"], E.DeleteSmtp.SMTP_NOT_FOUND)
        credential.delete(datetime.now(UTC))
        changed: list[Aggregate] = [credential]
        domain = self._load(credential.domain_id, SenderDomain)
        if domain is not None:
            domain = self._app.domain(domain.id)
            domain.detach_smtp_credential(credential.id)
            changed.append(domain)
        self._save(*changed)
        return {}

    def reset_smtp_password(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        if text_param(params.get("smtpid")) is None:
            raise RequestRejected(E.ResetSmtpPassword.MISSING_SMTP_ID)
        credential = self._own_credential(
            account, params["smtpid"], E.ResetSmtpPassword.SMTP_NOT_FOUND
        )
        password = new_password()
        credential.reset_password(hash_password(password), datetime.now(UTC))
        self._save(credential)
        ports = self._settings.submission_ports + self._settings.submission_tls_ports
        return {
            "SMTP": {
                "SMTPID": str(credential.id),
                "Server": self._settings.mail_hostname,
                "Port": ports[-1] if ports else None,
                "Username": credential.username,
                "Password": password,
            }
        }


def _is_label(text: str) -> bool:
    return (
        0 < len(text) <= 63
        and all(c.isascii() and (c.isalnum() or c == "-") for c in text)
        and not text.startswith("-")
        and not text.endswith("-")
    )


# A real Argon2id hash of a random password, checked when the username is unknown.
_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
