"""What recipients and their mail systems tell us after a message left: opens, clicks,
unsubscribes, bounces and complaints, recorded on the Message, and the account's
suppression list kept in step (hard bounces, complaints and unsubscribes stop mail to
that address; soft bounces do after ``SOFT_BOUNCE_LIMIT`` within ``SOFT_BOUNCE_WINDOW_DAYS``)."""

from __future__ import annotations

import logging
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from adapters.thread_names import NamedThread
from domain.message import IllegalTransition, Message, MessageStatus
from domain.suppression import BLOCK, BOUNCE, COMPLAINT, UNSUBSCRIBE, SuppressionList
from domain.suppression import suppression_list_id as _suppression_list_id
from engine.application import Sendstream

if TYPE_CHECKING:
    from adapters.dsn import DeliveryReport, FeedbackReport
    from domain.bounces import BounceClass

log = logging.getLogger(__name__)

# A tracking hit: kind ("o" or "c"), message, when, IP, user agent, and for a click its
# (url, position, in HTML).
_Hit = tuple[str, UUID, datetime, str, str, tuple[str, int, bool] | None]


class FeedbackService:
    def __init__(
        self,
        app: Sendstream,
        tracked_links: Callable[[Message], list[tuple[str, bool]]] | None = None,
        soft_bounce_limit: int = 3,
        on_suppressed: Callable[[UUID], None] | None = None,
        soft_bounce_window: timedelta = timedelta(days=7),
    ) -> None:
        self._app = app
        self._soft_bounce_window = soft_bounce_window
        self._on_suppressed = on_suppressed
        self._tracked_links = tracked_links
        self._soft_bounce_limit = soft_bounce_limit
        self._lock = threading.Lock()
        self._links: OrderedDict[UUID, list[tuple[str, bool]]] = OrderedDict()
        self._hits: queue.SimpleQueue[_Hit | threading.Event | None] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._recent: OrderedDict[UUID, Message] = OrderedDict()

    # Message events, with a retry when something else wrote the message meanwhile.

    def _change(self, message_id: UUID, change: Callable[[Message], bool]) -> Message | None:
        """Load, apply ``change`` (False: nothing to record), save; None if no such message."""
        for _ in range(5):
            try:
                message = self._app.message(message_id)
            except AggregateNotFoundError:
                return None
            try:
                if not change(message):
                    return message
            except IllegalTransition as refused:
                log.info("feedback for %s not recorded: %s", message_id, refused)
                return message
            try:
                self._app.save(message)
            except IntegrityError:
                continue
            return message
        log.warning("feedback for %s not recorded: it kept changing", message_id)
        return None

    def _suppress(self, account_id: UUID, change: Callable[[SuppressionList], object]) -> None:
        for _ in range(5):
            suppressions = self._app.suppression_list(account_id) or SuppressionList(
                id=_suppression_list_id(account_id), account_id=account_id
            )
            change(suppressions)
            if not suppressions.pending_events:
                return
            try:
                self._app.save(suppressions)
            except IntegrityError:
                continue
            if self._on_suppressed is not None:
                self._on_suppressed(account_id)
            return

    # Tracking (called by the API's tracking endpoint, on its event loop: nothing here may
    # wait for the disk). Hits are queued and a worker records them in batches, one
    # transaction for many; a crash can lose the hits of the last moment, never more.

    def start(self) -> None:
        """Start recording queued tracking hits (without this, hits wait in the queue)."""
        if self._worker is None:
            self._worker = NamedThread(target=self._record_hits, name="tracking", daemon=True)
            self._worker.start()

    def close(self, timeout: float = 10.0) -> None:
        if self._worker is not None:
            self._hits.put(None)
            self._worker.join(timeout)
            self._worker = None

    def flush(self, timeout: float = 10.0) -> None:
        """Wait until the hits queued so far are recorded (for tests and shutdown)."""
        done = threading.Event()
        self._hits.put(done)
        if self._worker is None:
            self._drain(block=False)
        else:
            done.wait(timeout)

    def record_open(self, message_id: UUID, ip: str, user_agent: str) -> None:
        self._hits.put(("o", message_id, datetime.now(UTC), ip[:64], user_agent[:512], None))

    def links_of(
        self, message_id: UUID, message: Message | None = None
    ) -> list[tuple[str, bool]] | None:
        """The message's tracked links (url, in HTML?), in their order in the message: made
        again from its content, which is what the tokens in it index. None: no such message."""
        with self._lock:
            found = self._links.get(message_id)
            if found is not None:
                return found
        if message is None:
            try:
                message = self._app.message(message_id)
            except AggregateNotFoundError:
                return None
        links = self._tracked_links(message) if self._tracked_links else []
        with self._lock:
            self._links[message_id] = links
            while len(self._links) > 50_000:
                self._links.popitem(last=False)
        return links

    def record_click(
        self, message_id: UUID, link_index: int, ip: str, user_agent: str
    ) -> str | None:
        links = self.links_of(message_id)
        if links is None or not 0 <= link_index < len(links):
            return None
        url, in_html = links[link_index]
        # The Event API's position: which occurrence of this same URL was clicked.
        position = sum(1 for other, _ in links[: link_index + 1] if other == url)
        self._hits.put(
            ("c", message_id, datetime.now(UTC), ip[:64], user_agent[:512],
             (url, position, in_html)),
        )  # fmt: skip
        return url

    def _record_hits(self) -> None:
        while self._drain(block=True):
            pass

    def _drain(self, block: bool) -> bool:
        """Record one batch of hits; False once closed."""
        from domain.tracking import is_machine

        batch: list[_Hit] = []
        waiters: list[threading.Event] = []
        open_ = True
        try:
            item = self._hits.get(block=block)
            while True:
                if item is None:
                    open_ = False
                    break
                if isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    batch.append(item)
                if len(batch) >= 500:
                    break
                item = self._hits.get_nowait()
        except queue.Empty:
            pass
        messages: dict[UUID, Message | None] = {}
        for kind, message_id, at, ip, user_agent, click in batch:
            if message_id not in messages:
                messages[message_id] = self._recent_message(message_id)
            message = messages[message_id]
            if message is None:
                continue
            machine = is_machine(user_agent, _since(message, at), kind)
            try:
                if click is None:
                    message.record_open(ip, user_agent, machine, at)
                else:
                    message.record_click(click[0], click[1], click[2], ip, user_agent, machine, at)
            except IllegalTransition as refused:
                log.info("tracking hit for %s not recorded: %s", message_id, refused)
        changed = [m for m in messages.values() if m is not None and m.pending_events]
        if changed:
            try:
                self._app.save(*changed)
            except IntegrityError:
                for message in changed:
                    self._recent.pop(message.id, None)
                # Another writer (delivery, a bounce) moved one of them: replay each one's hits.
                for message in changed:
                    self._replay_hits(message.id, [h for h in batch if h[1] == message.id])
        # A reader who opened a message may click next: have its links ready, so that the
        # click is answered without rendering anything on the event loop.
        for message_id, message in messages.items():
            if message is not None and message_id not in self._links:
                try:
                    self.links_of(message_id, message)
                except Exception:
                    log.exception("tracking: links of %s not prepared", message_id)
        for waiter in waiters:
            waiter.set()
        return open_

    def _recent_message(self, message_id: UUID) -> Message | None:
        """A message hit lately, as this worker last saved it; others load from the store.
        Safe because a save from a stale copy conflicts, and a conflict drops the copy."""
        message = self._recent.get(message_id)
        if message is not None:
            self._recent.move_to_end(message_id)
            return message
        try:
            message = self._app.message(message_id)
        except AggregateNotFoundError:
            return None
        self._recent[message_id] = message
        while len(self._recent) > 5000:
            self._recent.popitem(last=False)
        return message

    def _replay_hits(self, message_id: UUID, hits: list[_Hit]) -> None:
        from domain.tracking import is_machine

        def apply(message: Message) -> bool:
            for kind, _, at, ip, user_agent, click in hits:
                machine = is_machine(user_agent, _since(message, at), kind)
                if click is None:
                    message.record_open(ip, user_agent, machine, at)
                else:
                    message.record_click(click[0], click[1], click[2], ip, user_agent, machine, at)
            return True

        self._change(message_id, apply)

    def record_unsubscribe(
        self, message_id: UUID, ip: str, user_agent: str, one_click: bool
    ) -> bool:
        now = datetime.now(UTC)
        message = self._change(
            message_id, lambda m: not m.unsubscribed and _unsubscribe(m, "u", ip[:64], now)
        )
        if message is None:
            return False
        self._suppress(message.account_id, lambda s: s.add(message.recipient, UNSUBSCRIBE, now))
        return True

    def record_unsubscribe_by_mail(self, message_id: UUID) -> bool:
        """Mail to the List-Unsubscribe ``mailto:`` address: the recipient's own act (u)."""
        return self.record_unsubscribe(message_id, "", "mailto", one_click=False)

    # Bounces and complaints (called by the bounce intake, and by delivery for 5xx replies).

    def record_bounce(
        self, message_id: UUID, bounce: BounceClass, report: DeliveryReport | None = None
    ) -> None:
        now = datetime.now(UTC)
        code = _code_of(bounce.diagnostic)

        def reported(message: Message) -> bool:
            if message.status is MessageStatus.BOUNCED and message.bounce_kind == bounce.kind:
                return False  # the same bounce reported twice
            message.record_bounce_report(
                bounce.kind, code, bounce.enhanced_status, bounce.diagnostic[:1000],
                bounce.definitive, now,
            )  # fmt: skip
            return True

        message = self._change(message_id, reported)
        if message is not None:
            self.suppress_after_bounce(
                message.account_id, message.recipient, bounce.kind, bounce.definitive, now
            )

    def suppress_after_bounce(
        self, account_id: UUID, recipient: str, kind: str, definitive: bool, now: datetime
    ) -> None:
        """A definitive hard bounce suppresses at once; a soft one, or a hard one the
        receiver was not sure of, counts towards ``SOFT_BOUNCE_LIMIT`` within the window.
        A block is about us (policy, reputation, our sender address), not the recipient:
        recorded, not suppressed."""
        if kind == "block":
            return
        if kind == "hard" and definitive:
            self._suppress(account_id, lambda s: s.add(recipient, BOUNCE, now))
            return
        limit = self._soft_bounce_limit
        self._suppress(
            account_id,
            lambda s: s.note_soft_bounce(recipient, now, limit, self._soft_bounce_window),
        )

    def record_complaint(self, message_id: UUID, report: FeedbackReport) -> None:
        now = datetime.now(UTC)

        def complained(message: Message) -> bool:
            if message.complained:
                return False
            message.record_complaint(
                report.abuse_id[:200], report.feedback_type[:50], report.user_agent[:200], now
            )
            # A complaint is also an unsubscribe, by the Event API's type m.
            _unsubscribe(message, "m", "", now)
            return True

        message = self._change(message_id, complained)
        if message is not None:
            self._suppress(message.account_id, lambda s: s.add(message.recipient, COMPLAINT, now))


def _unsubscribe(message: Message, kind: str, ip: str, now: datetime) -> bool:
    message.record_unsubscribe(kind, ip, now)
    return True


def _since(message: Message, now: datetime) -> float | None:
    """Seconds since the message was delivered, when that is its latest news."""
    if message.status is MessageStatus.DELIVERED and message.opens == 0 and message.clicks == 0:
        return (now - message.modified_on).total_seconds()
    return None


def _code_of(diagnostic: str) -> int:
    for word in diagnostic.replace(";", " ").split():
        if len(word) == 3 and word.isdigit() and word[0] in "45":
            return int(word)
    return 0


_EXCEPTIONS = {
    UNSUBSCRIBE: ("UnsubscribedEmailAddressException",
                  "Email address is on account's Unsubscribe List."),
    BOUNCE: ("BouncedEmailAddressException",
             "Email address is on account's Bounce List. This means it has bounced at least "
             "one time in the past and is likely an invalid address."),
    COMPLAINT: ("UnsubscribedEmailAddressException",
                "Email address is on account's Unsubscribe List."),
    BLOCK: ("SystemEmailAddressException", "Email address is on the Global Suppression List."),
}  # fmt: skip


def suppression_exception(reason: str) -> tuple[str, str]:
    """The named exception of 000 (name, text) for an address on one of the account's lists."""
    return _EXCEPTIONS.get(reason, ("UnknownException", "An unknown exception was encountered."))
