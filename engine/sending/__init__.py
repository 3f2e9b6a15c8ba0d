"""Sending: everything between an authenticated request and durable Messages.

``POST /api/v1/email`` bodies (``request``) and SMTP submissions (``smtp_submission``, with
its own MIME reading) become one ``EmailContent``, which the send service (``service``)
checks against the sender's domain, suppressions and rate limits (``rate_limit``) and
saves through the group-commit writer.

Writes ``Submission.Received`` and, per recipient, ``Message.Accepted`` with
``Message.Queued``, ``Message.Scheduled`` (a later SendAt) or ``Message.Held``. Reads no
stream.
"""
