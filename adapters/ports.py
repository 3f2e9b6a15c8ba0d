"""The interfaces the engine needs from the outside world.

Each port has two adapters (embedded and at scale) that pass the same contract tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from domain.envelope import EventEnvelope
from domain.routing import SourceAddress


class EventSource(Protocol):
    """A consumer's cursor on the event stream (Kafka group, or the notification log)."""

    def poll(self, max_records: int, timeout: float) -> list[EventEnvelope]:
        """Next envelopes after the last ones returned; waits up to ``timeout`` seconds."""
        ...

    def commit(self) -> None:
        """Mark everything returned so far as processed; call only once its effects are durable."""
        ...

    def rewind(self) -> None:
        """Forget what was read but not committed: the next poll starts after the last commit."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class HandsOverWork(Protocol):
    """A source whose events may pass to another consumer while this one runs (a Kafka
    group member losing partitions in a rebalance)."""

    def on_handover(self, make_durable: Callable[[], None]) -> None:
        """Before events pass to another consumer, call ``make_durable``: finish what was
        read so far. The next owner starts after the last commit and so reads some of
        those events again, but only once their effects are stored, which is what lets a
        consumer that skips what is done (the projector's write-once check, a message's
        claim) do nothing twice."""
        ...


class Lease(Protocol):
    """The right to run a role that must run once (the relay, the scheduler, the campaign
    runner): one holder at a time, freed when its holder dies, however it dies."""

    def try_acquire(self) -> bool:
        """Take the lease if it is free; True if this process holds it now."""
        ...

    def still_held(self) -> bool:
        """False once the lease may have passed to another process (its session is gone)."""
        ...

    def release(self) -> None: ...

    def holder(self) -> str | None:
        """Who holds the lease now, as an operator would look for it; None if nobody."""
        ...


class EventPublisher(Protocol):
    """Where the relay puts events for consumers in other processes."""

    def publish(self, envelopes: Sequence[EventEnvelope]) -> None:
        """Returns only when every envelope is acknowledged by the broker."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ForgetfulBroker(Protocol):
    """A publisher whose broker may lose what it acknowledged (restarted without its data):
    it can tell, and it knows how far every consumer had got, so that the relay publishes
    again only what some consumer had not processed."""

    def lost_acknowledged(self) -> bool: ...

    def forget_acknowledged(self) -> None: ...

    def processed_by_every_group(self, published: int) -> int | None: ...


class ReportingStore(Protocol):
    """A ClickHouse engine: chdb in-process, or a server through clickhouse-connect."""

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None) -> None: ...

    def query(self, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows as dicts; parameters bound as ``{name:Type}`` placeholders, never formatted in."""
        ...

    def insert(self, table: str, rows: Sequence[Mapping[str, Any]]) -> None: ...

    def insert_tab_separated(self, table: str, columns: Sequence[str], payload: bytes) -> None:
        """Rows already encoded in ClickHouse's TabSeparated format, in ``columns`` order."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RouteChange:
    """A reply changed the pace of mail from ``source`` (our address, "" if none was
    chosen) to ``route`` (a provider of the shaping rules, or an MX host): ``throttled``
    or ``suspended`` for ``seconds``, or ``resumed``."""

    kind: str
    route: str
    source: str
    seconds: float
    reason: str


@dataclass(frozen=True)
class SmtpOutcome:
    """What the receiving server said about one recipient of one message."""

    code: int  # the SMTP reply code; 0 when no server answered (connection failure)
    enhanced_status: str  # RFC 3463 "x.y.z", or "" when the server gave none
    text: str
    remote: str = ""  # the server that answered, "host[address]" (direct delivery)
    tls: str = ""  # the session's TLS version ("TLSv1.3"), or "" in the clear
    source: str = ""  # the address we sent from, where we chose one (direct delivery)
    route_changes: tuple[RouteChange, ...] = ()  # pauses this attempt's replies began or ended

    @property
    def is_success(self) -> bool:
        return 200 <= self.code < 300

    @property
    def is_permanent(self) -> bool:
        return 500 <= self.code < 600


class MailTransport(Protocol):
    """Hands finished MIME messages to the next hop."""

    renders_messages: bool
    """False when the next hop keeps no bytes (the sandbox), so rendering can be skipped."""

    async def send(
        self,
        mail_from: str,
        recipient: str,
        message: bytes,
        sources: tuple[SourceAddress, ...] | None = None,
    ) -> SmtpOutcome:
        """Never raises for SMTP or network trouble: it is reported in the outcome.
        ``sources``: the addresses the message may leave from (direct delivery; None: the
        transport's own); other transports ignore them."""
        ...

    async def close(self) -> None: ...
