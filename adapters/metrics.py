"""Prometheus metrics (prometheus-client), counted in every process of an installation.

``sendstream serve`` runs several processes (the API, the worker, more delivery and
webhook callers), so counts go through prometheus-client's multiprocess mode: each
process writes its own memory-mapped files under ``PROMETHEUS_MULTIPROC_DIR`` and
``/metrics`` adds them up. The variable must be set before prometheus-client is first
imported in a process: ``serve`` sets it (``<data folder>/metrics`` unless the operator
gave one) and clears the counts of processes no longer running before it starts anything,
and its children inherit it.
Without it (a single process, the tests) the counts are this process's own.

Labels are bounded: routes are the API's templates (``/api/v1/email/{MessageID}``), not
paths; outcomes, where messages came from, SMTP servers and readers are short fixed lists;
a delivery's provider is one of ``domain.providers.PROVIDERS`` (``other`` for any domain
not in its table), and its source one of the sending addresses or the relay that the
configuration names. SMTP sessions are counted as opened and closed, since counters add up
across processes: open sessions are ``opened - closed`` (those of a process killed
mid-session stay counted open until ``serve`` starts again).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from adapters.metrics_folder import MULTIPROCESS_VARIABLE

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

HTTP_REQUESTS = Counter(
    "sendstream_http_requests_total", "API requests answered", ["route", "method", "status"]
)
HTTP_SECONDS = Histogram(
    "sendstream_http_request_seconds",
    "API request latency, from the request's arrival to its answer",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
MESSAGES_ACCEPTED = Counter(
    "sendstream_messages_accepted_total", "Recipients' messages accepted", ["source"]
)
DELIVERY_OUTCOMES = Counter(
    "sendstream_delivery_outcomes_total",
    "Delivery attempts by outcome (delivered, deferred, bounced, failed), the recipient's "
    "mailbox provider (domain.providers) and the sending address or relay it left through",
    ["outcome", "provider", "source"],
)
WEBHOOK_CALLS = Counter(
    "sendstream_webhook_calls_total", "Webhook calls made, by outcome", ["outcome"]
)
INBOUND_MESSAGES = Counter(
    "sendstream_inbound_messages_total", "Recipients' copies of inbound mail, by action",
    ["action"],
)  # fmt: skip
SMTP_SESSIONS = Counter(
    "sendstream_smtp_sessions_total",
    "SMTP sessions opened by clients, by server (submission, bounce, inbound)",
    ["server"],
)
SMTP_SESSIONS_CLOSED = Counter(
    "sendstream_smtp_sessions_closed_total",
    "SMTP sessions ended, by server: those open are the opened less the closed",
    ["server"],
)


class LagCollector(Collector):
    """Each stream reader's lag, asked of the installation when ``/metrics`` is read."""

    def __init__(self, readers: Callable[[], Iterable[tuple[str, str, int | None]]]) -> None:
        self._readers = readers

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "sendstream_reader_lag", "Events a stream reader has still to read",
            labels=["reader", "where"],
        )  # fmt: skip
        for reader, where, lag in self._readers():
            if lag is not None:
                family.add_metric([reader, where], lag)
        yield family


class BacklogCollector(Collector):
    """Work waiting, asked of the installation's stores when ``/metrics`` is read: messages
    with a timer (scheduled or deferred) and those of them already due, and the webhook
    calls owed."""

    def __init__(self, figures: Callable[[], tuple[int, int, int]]) -> None:
        self._figures = figures

    def collect(self) -> Iterable[GaugeMetricFamily]:
        waiting, due, webhook_calls = self._figures()
        messages = GaugeMetricFamily(
            "sendstream_messages_waiting",
            "Messages waiting for a time: scheduled for later or deferred until their next try",
            labels=["state"],
        )
        messages.add_metric(["waiting"], waiting)
        messages.add_metric(["due"], due)
        yield messages
        yield GaugeMetricFamily(
            "sendstream_webhook_backlog",
            "Webhook calls owed (not yet made, or to try again)",
            value=webhook_calls,
        )


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    """``/metrics``: every process's counts (or this one's), and ``extra`` collectors."""
    if os.environ.get(MULTIPROCESS_VARIABLE):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry = CollectorRegistry()
        for collector in list(REGISTRY._collector_to_names):
            registry.register(collector)
    for collector in extra:
        registry.register(collector)
    return generate_latest(registry)


def process_exited(pid: int) -> None:
    """A child process ended: its live gauges are dropped (its counts are kept)."""
    if os.environ.get(MULTIPROCESS_VARIABLE):
        _multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def serve_metrics(port: int, host: str = "0.0.0.0") -> None:  # noqa: S104 (scraped from outside)
    """``GET /metrics`` of a process without the API (a role on its own, at scale), in a
    thread of prometheus-client's own HTTP server."""
    from prometheus_client import start_http_server

    if os.environ.get(MULTIPROCESS_VARIABLE):
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        start_http_server(port, host, registry)
    else:
        start_http_server(port, host)
