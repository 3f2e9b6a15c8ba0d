"""Delivery: Messages out over SMTP, each exactly once towards its recipient.

The worker (``worker``) renders each recipient's copy (``rendering``, ``personalise``),
waits its turn per recipient domain (``throttle``), takes a sending address from the
message's pool within its warm-up caps (``pools``) and hands it to the mail transport;
the scheduler (``scheduler``) keeps the SendAt and retry timers; ``handoff`` holds what
the API process gives its own worker without a round trip through the store, and the
messages a worker in a process of its own builds from the stream it reads.

Reads ``Submission.Received`` and ``Message.Queued`` (worker), ``Message.Scheduled``,
``Message.Deferred``, ``Message.Postponed``, ``Message.Queued`` and ``Message.Failed``
(scheduler). Writes ``Message.Postponed``, ``DeliveryAttempted``, ``Delivered``,
``Deferred``, ``Bounced``, ``Failed`` and the route changes its replies caused
(``RouteThrottled``, ``RouteSuspended``, ``RouteResumed``) (worker) and ``Message.Queued``
when a timer falls due (scheduler).
"""
