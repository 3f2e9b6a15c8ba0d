"""The webhook callers: make the calls that the intake (:mod:`engine.webhooks.intake`) stored.

A caller claims due calls from the store (:mod:`adapters.webhook_store`), makes them
(httpx, bounded per endpoint and overall), and records each attempt with its next try,
all in the store. A call waits behind an earlier call of the same message to the same
webhook (delivered before opened), but never behind another endpoint: a slow or dead
endpoint holds only its own calls. A webhook that fails ``WEBHOOK_DISABLE_AFTER`` (1,000)
times in a row is disabled, with the reason shown by GetWebhooks, until its URL or
parameters change.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from adapters.metrics import WEBHOOK_CALLS
from adapters.webhook_http import WebhookRequest, WebhookSender, sign
from adapters.webhook_store import AttemptResult, DeliveryJob, WebhookStore
from domain.webhook import DISABLE_AFTER_FAILURES, RETRY_DELAYS_SECONDS, Webhook, retry_delay
from engine.application import Sendstream
from engine.webhooks.commands import WebhookRegistry, message_id_header, request_parts

log = logging.getLogger(__name__)

_BACKED_UP_SECONDS = 1.0
_SKIPPING_CLAIM_INTERVAL = 0.1


class WebhookDelivery:
    """Due calls → HTTP → attempts recorded; keeps up to ``concurrency`` calls in flight."""

    def __init__(
        self,
        app: Sendstream,
        store: WebhookStore,
        registry: WebhookRegistry,
        sender: WebhookSender,
        concurrency: int = 512,
        claim_size: int = 500,
        lease_seconds: float = 120.0,
        retry_delays: tuple[float, ...] = RETRY_DELAYS_SECONDS,
        disable_after: int = DISABLE_AFTER_FAILURES,
    ) -> None:
        self._app = app
        self._store = store
        self._registry = registry
        self._sender = sender
        self._concurrency = concurrency
        self._claim_size = claim_size
        self._lease = lease_seconds
        self._retry_delays = retry_delays
        self._disable_after = disable_after
        self._results: list[AttemptResult] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._webhook_domains: dict[UUID, UUID] = {}
        # Which webhooks call which endpoint (scheme, host, port), to skip a busy one's.
        self._webhook_urls: dict[UUID, str] = {}
        self._endpoint_webhooks: dict[str, set[UUID]] = {}
        self._next_skipping_claim = 0.0
        self.delivered = 0
        self.failed = 0

    async def run(self, stopped: asyncio.Event) -> None:
        try:
            while not stopped.is_set():
                try:
                    claimed = await self._exchange()
                except Exception:
                    # The store is busy or away: the calls in flight go on, their results
                    # wait here, and claiming starts again in a second.
                    log.exception("webhook calls: the store failed; trying again")
                    await asyncio.sleep(1.0)
                    continue
                if not claimed:
                    # Nothing due, or every slot busy: wait for a slot or for time to pass.
                    await asyncio.sleep(0.02 if self._in_flight else 0.1)
        finally:
            if self._in_flight:
                await asyncio.wait(self._in_flight, timeout=15)
            await self._flush()

    async def _exchange(self) -> int:
        """Record the results so far and claim more due calls, in one transaction; start
        the calls claimed. Returns how many."""
        limit, skip = self._claim_size_now()
        if not self._results and not limit:
            return 0
        results, self._results = self._results, []
        try:
            jobs = await asyncio.to_thread(
                self._store.record_and_claim, results, datetime.now(UTC), limit, self._lease, skip
            )
        except BaseException:
            self._results[:0] = results  # recorded with the next exchange, not lost
            raise
        for job in jobs:
            task = asyncio.create_task(self._call(job))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        await self._disable_exhausted_of(results)
        return len(jobs)

    def _claim_size_now(self) -> tuple[int, list[UUID]]:
        """How many calls to claim now (0: none), and the webhooks whose calls to leave."""
        room = self._concurrency - len(self._in_flight)
        # Claims come in batches, yet never wait for every call in flight to end: one
        # silent endpoint's calls would then hold up all the others' for their timeout.
        if room < max(1, min(50, self._concurrency // 4)):
            return 0, []
        # Calls to an endpoint already a second behind stay in the store, where they
        # hold no slot that another endpoint's calls could use.
        skip = [
            webhook_id
            for endpoint in self._sender.backed_up(_BACKED_UP_SECONDS)
            for webhook_id in self._endpoint_webhooks.get(endpoint, ())
        ]
        if skip:
            # A claim that skips still reads past the skipped webhooks' due calls (their
            # backlog may be long), holding the store meanwhile: ten such claims a second.
            now = time.monotonic()
            if now < self._next_skipping_claim:
                return 0, []
            self._next_skipping_claim = now + _SKIPPING_CLAIM_INTERVAL
        return min(room, self._claim_size), skip

    async def _call(self, job: DeliveryJob) -> None:
        started = datetime.now(UTC)
        domain_id = self._domain_of(job)
        domain = self._registry.for_domain(domain_id) if domain_id else None
        webhook = domain.find(job.webhook_id) if domain else None
        if domain_id and webhook is None:
            # Added after the copy was read (a backfill comes at once), or gone: ask again.
            domain = self._registry.for_domain(domain_id, fresh=True)
            webhook = domain.find(job.webhook_id)
        if domain is None or webhook is None:
            # Deleted or disabled since the call was stored: it is not made.
            self._results.append(_finished(job, started, "", "webhook deleted or disabled"))
            return
        self._learn_endpoint(job.webhook_id, webhook.url)
        message_id = message_id_header(job.event_id)
        timestamp = int(time.time())
        method, url, body, content_type = request_parts(webhook.method, webhook.url, job.payload)
        headers = {
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(domain.signing_key, message_id, timestamp, body),
        }
        result = await self._sender.send(
            WebhookRequest(
                url=url, method=method, body=body, content_type=content_type, headers=headers
            )
        )
        next_due: datetime | None = None
        WEBHOOK_CALLS.labels("succeeded" if result.succeeded else "failed").inc()
        if result.succeeded:
            self.delivered += 1
        else:
            self.failed += 1
            delay = retry_delay(job.attempt + 1, self._retry_delays)
            if delay is not None:
                next_due = started + timedelta(seconds=delay)
        self._results.append(
            AttemptResult(
                webhook_id=job.webhook_id,
                event_id=job.event_id,
                attempted_at=started,
                url=url,
                status_code=result.status_code,
                latency_ms=result.latency_ms,
                error=result.error,
                response_snippet=result.snippet,
                succeeded=result.succeeded,
                next_due_at=next_due,
            )
        )

    def _learn_endpoint(self, webhook_id: UUID, url: str) -> None:
        known = self._webhook_urls.get(webhook_id)
        if known == url:
            return
        if known is not None:
            self._endpoint_webhooks[self._sender.origin_of(known)].discard(webhook_id)
        self._webhook_urls[webhook_id] = url
        self._endpoint_webhooks.setdefault(self._sender.origin_of(url), set()).add(webhook_id)

    def _domain_of(self, job: DeliveryJob) -> UUID | None:
        return self._webhook_domains.get(job.webhook_id) or self._learn_domain(job.webhook_id)

    def _learn_domain(self, webhook_id: UUID) -> UUID | None:
        try:
            webhook = self._app._get(webhook_id, Webhook)
        except Exception:
            return None
        self._webhook_domains[webhook_id] = webhook.domain_id
        return webhook.domain_id

    async def _flush(self) -> None:
        if not self._results:
            return
        results, self._results = self._results, []
        try:
            await asyncio.to_thread(self._store.record, results)
        except BaseException:
            self._results[:0] = results
            raise
        await self._disable_exhausted_of(results)

    async def _disable_exhausted_of(self, results: list[AttemptResult]) -> None:
        failing = {r.webhook_id for r in results if not r.succeeded}
        if failing:
            await asyncio.to_thread(self._disable_exhausted, failing, results)

    def _disable_exhausted(self, webhook_ids: Iterable[UUID], results: list[AttemptResult]) -> None:
        for webhook_id in webhook_ids:
            failures = self._store.consecutive_failures(webhook_id)
            if failures < self._disable_after:
                continue
            last = next(r for r in reversed(results) if r.webhook_id == webhook_id)
            outcome = last.error or f"HTTP {last.status_code}"
            reason = (
                f"{failures} consecutive failed calls; the last: {outcome} "
                f"at {last.attempted_at:%Y-%m-%dT%H:%M:%SZ}"
            )
            disabled = False
            for _ in range(3):
                try:
                    webhook = self._app._get(webhook_id, Webhook)
                    if not webhook.is_active:
                        break  # calls in flight when it was disabled are still coming back
                    webhook.disable(reason, datetime.now(UTC))
                    self._app.save(webhook)
                    disabled = True
                    break
                except IntegrityError:
                    continue
            if disabled:
                self._store.drop_jobs(webhook_id)
                self._registry.forget()
                log.warning("webhook %s disabled: %s", webhook_id, reason)


def _finished(job: DeliveryJob, at: datetime, url: str, error: str) -> AttemptResult:
    return AttemptResult(
        webhook_id=job.webhook_id,
        event_id=job.event_id,
        attempted_at=at,
        url=url,
        status_code=0,
        latency_ms=0.0,
        error=error,
        response_snippet="",
        succeeded=False,
        next_due_at=None,
    )
