"""Direct delivery: each message to its recipient domain's own mail servers (RFC 5321 5.1).

The route comes from DNS (``adapters.dns.MailRoutes``: MX hosts in preference order, equal
ones shuffled; the domain itself when it has no MX; a verdict for a null MX or a domain
that does not exist). Hosts are tried in turn, each of its addresses in turn, while they
cannot be reached: no connection, a timeout, a 421 greeting, a failed EHLO. The first
server that answers a mail transaction decides the outcome, which names it
(``mx1.example.net[192.0.2.10]``).

Sessions are kept per server address, so domains that share MX hosts share them, and one
idle for ``idle_seconds`` is closed. How many are open at once, how many messages each
carries and how fast mail goes are the traffic-shaping rules' (``domain.shaping``): per
provider, for the MX hosts a provider's patterns claim (all of Google's together), else
per MX host. STARTTLS is used whenever a server offers it, without checking its
certificate (opportunistic TLS, RFC 7435); a server whose TLS handshake fails is asked
again in the clear. Where the recipient domain publishes an MTA-STS policy (RFC 8461,
``adapters.mta_sts``) in ``enforce`` mode, only the MX hosts it names are tried, over TLS
with a certificate valid for the host, or the message waits (``4.7.5``); in ``testing``
mode mail goes as usual and what the policy would have refused is reported. The TLS
version, and the policy applied, are reported with each outcome.

Every wait is bounded: aiosmtplib times each command out (``timeout``) and refuses a reply
longer than 32 KiB, so a server that never greets, stalls or talks without end costs one
timeout and no memory, and ends as a deferral naming it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import ssl
import time
from dataclasses import dataclass, field

import aiosmtplib

from adapters.dns import MailHost, MailRoutes
from adapters.mta_sts import MtaStsPolicies
from adapters.ports import RouteChange, SmtpOutcome
from adapters.smtp_out.session import (
    NO_ANSWER,
    SERVICE_CLOSING,
    SMTPUTF8_REQUIRED,
    checked_envelope,
    describe_error,
    greet,
    mail_transaction,
    reply_outcome,
    transaction_options,
)
from adapters.throttle import KeyedThrottle
from domain.mta_sts import POLICY_STATUS, MtaStsPolicy
from domain.routing import (
    NO_ROUTE_STATUS,
    NULL_MX_STATUS,
    SourceAddress,
    pick_source,
    refused_address,
)
from domain.shaping import ShapingRule, ShapingRules, reply_class

_REAP_INTERVAL = 1.0  # seconds between looks for idle sessions to close
_LONGEST_WAIT = 1.0  # a pause longer than this defers the message instead of holding it
_LONGEST_LOCAL_WAIT = 10.0  # likewise for our own limits: rates, sessions at once
_PACED = "paced by the receiver"
PACED_STATUS = "4.7.0"  # the receiver asked us to slow down or stop: try later
DEFAULT_SHAPING = ShapingRules(
    default=ShapingRule(
        name="default", mx=(), max_connections=10, messages_per_connection=100,
        messages_per_second=0, messages_per_hour=0,
    ),
    providers=(),
)  # fmt: skip


@dataclass
class _Session:
    client: aiosmtplib.SMTP
    remote: str  # "host[address]", as outcomes name it
    tls: str  # the TLS version, or "" in the clear
    verified: str = ""  # the host name its certificate was checked against, if it was
    rule: str = ""  # the shaping key whose sessions it counts among
    source: str = ""  # the address it was opened from, if one was chosen
    sent: int = 0
    idle_since: float = 0.0


@dataclass
class _Pace:
    """Where a shaping key stands after its servers' replies (see ``_note_reply``)."""

    paused_until: float = 0.0  # time.monotonic(): no new transaction before then
    level: int = 0  # "slow down" replies in a row: the pause doubles with each
    suspended_until: float = 0.0
    reason: str = ""


@dataclass
class _Destination:
    """The sessions to one server address."""

    idle: list[_Session] = field(default_factory=list)
    busy: int = 0


class _Unreachable(Exception):
    """This address gave no session: the next one is worth trying. ``reply`` is what the
    server said when it turned us away (a 421 or 554 greeting, a refused EHLO), if it did."""

    def __init__(self, text: str, reply: SmtpOutcome | None = None) -> None:
        super().__init__(text)
        self.reply = reply


class _TlsFailed(_Unreachable):
    """STARTTLS was offered and failed: worth a session in the clear."""


def _tls_version(client: aiosmtplib.SMTP) -> str:
    ssl_object = client.transport.get_extra_info("ssl_object") if client.transport else None
    return (ssl_object.version() or "") if ssl_object is not None else ""


class DirectTransport:
    """``MailTransport`` to the recipients' own mail servers (see the module's docstring)."""

    renders_messages = True

    def __init__(
        self,
        routes: MailRoutes,
        *,
        helo_name: str,
        port: int = 25,
        allow_private_addresses: bool = False,
        shaping: ShapingRules = DEFAULT_SHAPING,
        idle_seconds: float = 5.0,
        timeout: float = 30.0,
        rng: random.Random | None = None,
        policies: MtaStsPolicies | None = None,
        verify_context: ssl.SSLContext | None = None,
        sources: tuple[SourceAddress, ...] = (),
    ) -> None:
        self._sources = sources
        self._routes = routes
        self._helo_name = helo_name
        self._port = port
        self._allow_private = allow_private_addresses
        self._shaping = shaping
        self._throttles: dict[str, tuple[KeyedThrottle, KeyedThrottle | None]] = {
            rule.name: (
                KeyedThrottle(rule.max_connections, rule.messages_per_second),
                KeyedThrottle(0, rule.messages_per_hour / 3600, burst=rule.messages_per_hour)
                if rule.messages_per_hour
                else None,
            )
            for rule in (shaping.default, *shaping.providers)
        }
        self._paces: dict[str, _Pace] = {}
        self._quitting: set[asyncio.Task[None]] = set()
        self._idle_seconds = idle_seconds
        self._timeout = timeout
        self._rng = rng or random.Random()
        self._destinations: dict[str, _Destination] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._closed = False
        # Opportunistic: encrypt against passive reading, accept any certificate.
        self._tls_context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._tls_context.check_hostname = False
        self._tls_context.verify_mode = ssl.CERT_NONE
        # Where a policy demands it: the certificate must be valid for the MX host's name.
        self._policies = policies
        self._verify_context = verify_context or ssl.create_default_context()

    def __repr__(self) -> str:
        return f"DirectTransport(port={self._port}, hosts={len(self._destinations)})"

    async def send(
        self,
        mail_from: str,
        recipient: str,
        message: bytes,
        sources: tuple[SourceAddress, ...] | None = None,
    ) -> SmtpOutcome:
        """``sources``: the addresses this message may leave from (its pool); None for
        the transport's own (``SENDING_ADDRESSES``), empty for the machine's default."""
        outcome, changes = await self._send(mail_from, recipient, message, sources)
        if changes:
            outcome = dataclasses.replace(outcome, route_changes=tuple(changes))
        return outcome

    async def _send(
        self,
        mail_from: str,
        recipient: str,
        message: bytes,
        sources: tuple[SourceAddress, ...] | None,
    ) -> tuple[SmtpOutcome, list[RouteChange]]:
        changes: list[RouteChange] = []
        if self._closed:
            raise RuntimeError("DirectTransport is closed")
        checked = checked_envelope(mail_from, recipient)
        if isinstance(checked, SmtpOutcome):
            return checked, changes
        sender, rcpt = checked
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_idle_sessions())
        domain = rcpt.rpartition("@")[2]
        route = await self._routes.route(domain)
        if route.status:
            if route.status.startswith("5"):
                # RFC 7505 3.3: 556 for a domain that takes no mail.
                code = 556 if route.status == NULL_MX_STATUS else 550
            else:
                code = 451
            return SmtpOutcome(code, route.status, route.reason), changes
        policy = await self._policies.policy(domain) if self._policies is not None else None
        if policy is not None and policy.mode == "none":
            policy = None
        enforce = policy is not None and policy.mode == "enforce"
        # One source per message: its sessions, budgets and pauses are its own.
        candidates = self._sources if sources is None else sources
        source = pick_source(candidates, self._rng) if candidates else None
        failures: list[str] = []
        reached_none = True
        for host in route.hosts(self._rng):
            outside = policy is not None and not policy.allows(host.name)
            if outside and enforce:
                failures.append(f"{host.name} not tried: not an MX host of the MTA-STS policy")
                continue
            for address in host.addresses:
                remote = f"{host.name}[{address}]"
                refusal = None if self._allow_private else refused_address(address)
                if refusal is not None:
                    failures.append(f"{remote} not tried: {refusal}")
                    continue
                if source is not None and (":" in source.address) != (":" in address):
                    failures.append(f"{remote} not tried: not reachable from {source.address}")
                    continue
                rule, key = self._shaping_key(host.name)
                if source is not None:
                    key = f"{source.address}|{key}"
                waiting = await self._wait_for_pace(key)
                if waiting:
                    failures.append(f"{remote} not tried: {waiting}")
                    continue
                reached_none = False
                try:
                    outcome = await self._deliver(
                        host.name, address, sender, rcpt, message, verify=enforce,
                        rule=rule, key=key, source=source,
                    )  # fmt: skip
                except _Unreachable as exc:
                    failures.append(str(exc))
                    if exc.reply is not None:
                        changes += self._note_reply(rule, key, exc.reply, host.name, source)
                    continue
                changes += self._note_reply(rule, key, outcome, host.name, source)
                return _with_policy(outcome, policy, host, outside), changes
        text = "; ".join(failures) or "no host to try"
        if failures and all(_PACED in failure for failure in failures):
            return SmtpOutcome(0, PACED_STATUS, text), changes
        if enforce:
            policy_text = f"MTA-STS policy of {domain} (enforce): {text}"
            return SmtpOutcome(0, POLICY_STATUS, policy_text), changes
        return SmtpOutcome(0, NO_ROUTE_STATUS if reached_none else NO_ANSWER, text), changes

    async def close(self) -> None:
        """QUIT the idle sessions; sessions in use close when their send ends."""
        if self._closed:
            return
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        sessions = [s for d in self._destinations.values() for s in d.idle]
        for destination in self._destinations.values():
            destination.idle.clear()
        await asyncio.gather(*(self._quit(session) for session in sessions), *self._quitting)
        if self._policies is not None:
            await self._policies.close()

    def _shaping_key(self, host: str) -> tuple[ShapingRule, str]:
        """The rule for ``host``, and the key its budget is kept under: the provider's name,
        or the host itself when no provider claims it."""
        rule = self._shaping.for_host(host)
        return rule, (host if rule is self._shaping.default else rule.name)

    async def _wait_for_pace(self, key: str) -> str:
        """Wait out a short pause of ``key``; for a long one, or a suspension, say why not
        to try now (the message is deferred and retried on its schedule)."""
        pace = self._paces.get(key)
        if pace is None:
            return ""
        now = time.monotonic()
        if pace.suspended_until > now:
            return f"{_PACED}: suspended for {pace.suspended_until - now:.0f} s ({pace.reason})"
        if pace.paused_until > now + _LONGEST_WAIT:
            return f"{_PACED}: slowed down for {pace.paused_until - now:.0f} s ({pace.reason})"
        if pace.paused_until > now:
            await asyncio.sleep(pace.paused_until - now)
        return ""

    def _note_reply(
        self,
        rule: ShapingRule,
        key: str,
        outcome: SmtpOutcome,
        host: str,
        source: SourceAddress | None,
    ) -> list[RouteChange]:
        """Slow a key down on "slow down" replies (the pause doubling, with jitter, up to
        the rule's longest), stop it on a block reply, and speed it up again on success;
        what changed, for the message's history."""
        kind = reply_class(outcome.code, outcome.enhanced_status, outcome.text)
        pace = self._paces.get(key)
        route = host if rule is self._shaping.default else rule.name
        address = source.address if source is not None else ""
        if not kind:
            if pace is not None and outcome.is_success:
                pace.level = 0
                now = time.monotonic()
                if pace.paused_until <= now and pace.suspended_until <= now:
                    del self._paces[key]
                    return [RouteChange("resumed", route, address, 0.0, outcome.text[:300])]
            return []
        if pace is None:
            pace = self._paces[key] = _Pace()
        now = time.monotonic()
        pace.reason = f"{outcome.remote}: {outcome.code} {outcome.text}"[:300]
        if kind == "block":
            already = pace.suspended_until > now
            pace.suspended_until = now + rule.suspend_seconds
            if already:
                return []
            return [RouteChange("suspended", route, address, rule.suspend_seconds, pace.reason)]
        if pace.paused_until > now:
            return []  # the same episode: replies from sessions already under way
        pace.level += 1
        pause = rule.backoff_seconds * 2 ** (pace.level - 1) * self._rng.uniform(0.5, 1.5)
        pause = min(rule.max_backoff_seconds, pause)
        pace.paused_until = now + pause
        return [RouteChange("throttled", route, address, round(pause, 3), pace.reason)]

    async def _deliver(
        self,
        host: str,
        address: str,
        sender: str,
        rcpt: str,
        message: bytes,
        *,
        verify: bool,
        rule: ShapingRule,
        key: str,
        source: SourceAddress | None,
    ) -> SmtpOutcome:
        where = f"{source.address}>{address}" if source is not None else address
        destination = self._destinations.get(where)
        if destination is None:
            destination = self._destinations[where] = _Destination()
        sessions, hourly = self._throttles[rule.name]
        destination.busy += 1  # waiting counts: the reaper must not drop a destination in use
        try:
            async with contextlib.AsyncExitStack() as limits:
                try:
                    async with asyncio.timeout(_LONGEST_LOCAL_WAIT):
                        if hourly is not None:
                            await limits.enter_async_context(hourly.slot(key))
                        await limits.enter_async_context(sessions.slot(key))
                except TimeoutError:
                    # The message was claimed: it must not hold a delivery slot for long.
                    text = f"{host}: shaped here, over the '{rule.name}' rule's limits; later"
                    return SmtpOutcome(0, PACED_STATUS, text)
                waiting = await self._wait_for_pace(key)  # a pause that began while we queued
                if waiting:
                    return SmtpOutcome(0, PACED_STATUS, f"{host}: {waiting}")
                return await self._transaction(
                    destination, where, host, address, sender, rcpt, message, verify, rule, key,
                    source,
                )  # fmt: skip
        finally:
            destination.busy -= 1

    async def _transaction(
        self,
        destination: _Destination,
        where: str,
        host: str,
        address: str,
        sender: str,
        rcpt: str,
        message: bytes,
        verify: bool,
        rule: ShapingRule,
        key: str,
        source: SourceAddress | None,
    ) -> SmtpOutcome:
        retried = False
        while True:
            session = _take_idle(destination, host if verify else "")
            reused = session is not None
            if session is None or not session.client.is_connected:
                if rule.max_connections:
                    # This key holds a slot, so fewer than max_connections of its sessions
                    # are in use: closing an idle one elsewhere keeps it within the limit.
                    await self._close_idle_of(key, where)
                session = await self._open(host, address, verify, source)
                session.rule = key
                reused = False
            session.sent += 1
            try:
                options = transaction_options(session.client, sender, rcpt, message)
                outcome = await mail_transaction(session.client, sender, rcpt, message, options)
            except aiosmtplib.SMTPServerDisconnected as exc:
                session.client.close()
                if reused and not retried:
                    retried = True  # most likely a session the server closed while idle
                    continue
                return self._outcome(session, 0, NO_ANSWER, describe_error(exc))
            except aiosmtplib.SMTPResponseException as exc:
                session.client.close()
                # An idle session timed out (421 4.4.2) is worth a fresh one; "slow down"
                # (421 4.7.x) is not.
                slow = reply_outcome(exc.code, exc.message).enhanced_status.startswith("4.7.")
                if exc.code == SERVICE_CLOSING and reused and not retried and not slow:
                    retried = True
                    continue
                if exc.code < 200:  # aiosmtplib's own code for an unreadable reply
                    return self._outcome(session, 0, NO_ANSWER, describe_error(exc))
                return self._outcome(session, exc.code, "", exc.message)
            except aiosmtplib.SMTPNotSupported as exc:
                self._keep_or_quit(destination, session, rule)
                return SmtpOutcome(
                    553, SMTPUTF8_REQUIRED, f"not sent: {exc}", session.remote, session.tls,
                    session.source,
                )  # fmt: skip
            except (aiosmtplib.SMTPException, OSError) as exc:
                session.client.close()  # a timeout mid-command: the session's state is unknown
                return self._outcome(session, 0, NO_ANSWER, describe_error(exc))
            except BaseException:
                session.client.close()  # cancelled mid-transaction: never to be reused
                raise
            self._keep_or_quit(destination, session, rule)
            return SmtpOutcome(
                outcome.code, outcome.enhanced_status, outcome.text,
                remote=session.remote, tls=session.tls, source=session.source,
            )  # fmt: skip

    def _outcome(self, session: _Session, code: int, status: str, text: str) -> SmtpOutcome:
        if code:
            reply = reply_outcome(code, text)
            return SmtpOutcome(
                code, reply.enhanced_status, text, session.remote, session.tls, session.source
            )
        return SmtpOutcome(
            0, status, f"{session.remote}: {text}", session.remote, session.tls, session.source
        )

    def _keep_or_quit(
        self, destination: _Destination, session: _Session, rule: ShapingRule
    ) -> None:
        if (
            session.client.is_connected
            and session.sent < rule.messages_per_connection
            and not self._closed
            and (not rule.max_connections or len(destination.idle) < rule.max_connections)
        ):
            session.idle_since = time.monotonic()
            destination.idle.append(session)
        else:
            self._quit_later(session)

    async def _open(
        self, host: str, address: str, verify: bool, source: SourceAddress | None
    ) -> _Session:
        remote = f"{host}[{address}]"
        if verify:
            return await self._connect(host, address, remote, source, use_tls=True, verify=True)
        try:
            return await self._connect(host, address, remote, source, use_tls=True)
        except _TlsFailed:
            # Opportunistic TLS must not cost the mail: the same server, in the clear.
            return await self._connect(host, address, remote, source, use_tls=False)

    async def _connect(
        self,
        host: str,
        address: str,
        remote: str,
        source: SourceAddress | None,
        *,
        use_tls: bool,
        verify: bool = False,
    ) -> _Session:
        client = aiosmtplib.SMTP(
            hostname=address,
            port=self._port,
            timeout=self._timeout,
            local_hostname=source.helo_name if source is not None else self._helo_name,
            source_address=(source.address, 0) if source is not None else None,
            start_tls=False,
            use_tls=False,
            tls_context=self._tls_context,
        )
        step = "connect"
        try:
            await client.connect()
            step = "EHLO"
            await greet(client)
            tls = ""
            if verify and not client.supports_extension("starttls"):
                client.close()
                raise _Unreachable(f"{remote}: no STARTTLS, which the MTA-STS policy requires")
            if use_tls and client.supports_extension("starttls"):
                step = "STARTTLS"
                context = self._verify_context if verify else self._tls_context
                try:
                    await client.starttls(server_hostname=host, tls_context=context)
                    await greet(client)  # RFC 3207 4.2: forget what was said in the clear
                except (aiosmtplib.SMTPException, OSError) as exc:
                    client.close()
                    failed = _Unreachable if verify else _TlsFailed
                    raise failed(f"{remote}: STARTTLS failed: {describe_error(exc)}") from exc
                tls = _tls_version(client)
        except (aiosmtplib.SMTPException, OSError) as exc:
            client.close()
            reply = None
            if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code >= 400:
                parsed = reply_outcome(exc.code, exc.message)
                reply = SmtpOutcome(exc.code, parsed.enhanced_status, exc.message, remote)
            raise _Unreachable(f"{remote}: {step} failed: {describe_error(exc)}", reply) from exc
        except BaseException:
            client.close()  # cancelled mid-dialogue: the socket must not outlive us
            raise
        return _Session(
            client, remote, tls, verified=host if verify else "",
            source=source.address if source is not None else "",
        )  # fmt: skip

    async def _close_idle_of(self, key: str, besides: str) -> None:
        """Close the oldest idle session that counts against ``key``'s limit at a destination
        other than ``besides``, if there is one."""
        oldest: tuple[float, _Destination, _Session] | None = None
        for address, destination in self._destinations.items():
            if address == besides:
                continue
            for session in destination.idle:
                if session.rule == key and (oldest is None or session.idle_since < oldest[0]):
                    oldest = (session.idle_since, destination, session)
        if oldest is not None:
            oldest[1].idle.remove(oldest[2])
            await self._quit(oldest[2])  # gone before the new one opens

    def _quit_later(self, session: _Session) -> None:
        task = asyncio.get_running_loop().create_task(self._quit(session))
        self._quitting.add(task)
        task.add_done_callback(self._quitting.discard)

    async def _quit(self, session: _Session) -> None:
        if session.client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await session.client.quit(timeout=min(self._timeout, 5.0))
        session.client.close()

    async def _reap_idle_sessions(self) -> None:
        while True:
            await asyncio.sleep(_REAP_INTERVAL)
            cutoff = time.monotonic() - self._idle_seconds
            for address, destination in list(self._destinations.items()):
                stale = [s for s in destination.idle if s.idle_since <= cutoff]
                if stale:
                    destination.idle = [s for s in destination.idle if s.idle_since > cutoff]
                    for session in stale:
                        self._quit_later(session)
                if not destination.idle and not destination.busy:
                    del self._destinations[address]
            # A receiver quiet for an hour since its last pause starts afresh.
            forgotten = time.monotonic() - 3600
            for key, pace in list(self._paces.items()):
                if max(pace.paused_until, pace.suspended_until) < forgotten:
                    del self._paces[key]


def _take_idle(destination: _Destination, verified_for: str) -> _Session | None:
    """The most recently used idle session fit for the job: any, or one whose certificate
    was checked against ``verified_for``."""
    for index in range(len(destination.idle) - 1, -1, -1):
        if not verified_for or destination.idle[index].verified == verified_for:
            return destination.idle.pop(index)
    return None


def _with_policy(
    outcome: SmtpOutcome, policy: MtaStsPolicy | None, host: MailHost, outside: bool
) -> SmtpOutcome:
    """The outcome with the MTA-STS policy applied, and in testing mode what it would have
    refused, added to its TLS description: ``TLSv1.3 (MTA-STS enforce)``."""
    if policy is None:
        return outcome
    notes = []
    if outside:
        notes.append(f"{host.name} is not an MX host of the policy")
    if not outcome.tls:
        notes.append("no TLS")
    elif policy.mode == "testing":
        notes.append("certificate not checked")
    described = f"{outcome.tls or 'no TLS'} (MTA-STS {policy.mode}"
    described += f": {'; '.join(notes)})" if notes and policy.mode == "testing" else ")"
    return dataclasses.replace(outcome, tls=described)
