"""Webhooks: customers' endpoints told of their messages' events.

``commands`` holds ``EmailGateway.AddWebhook``, ``GetWebhooks``, ``DeleteWebhook``,
``GetWebhookAttempts`` and ``/api/v1/webhooks``, and builds what a call carries. The
intake (``intake``) turns the stream into stored calls, one per event and listening
webhook; the callers (``calls``) make them, retry them on a persisted schedule and
record each attempt, in the store of ``adapters.webhook_store``.

Reads the ``Message`` events, and ``Webhook`` and ``SenderDomain.WebhookAttached`` /
``WebhookDetached`` to keep its registry fresh. Writes ``Webhook.Added``, ``Changed``,
``Deleted`` and ``Disabled`` (after ``WEBHOOK_DISABLE_AFTER`` failures in a row), and
``SenderDomain.WebhookAttached`` / ``WebhookDetached``.
"""
