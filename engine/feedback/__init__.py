"""Feedback: what recipients and their mail systems say after a message left.

Opens, clicks and unsubscribes (from ``api.tracking``), bounces and complaints (from the
bounce intake's SMTP server, ``bounce_intake``) are recorded on the Message by the
feedback service (``service``), which keeps the account's suppression list in step; the
suppression list commands of 000 (``suppressions``) are views of that one list.

Writes ``Message.Opened``, ``Clicked``, ``Unsubscribed``, ``BounceReported`` and
``Complained``, and ``SuppressionList.Started``, ``AddressAdded``, ``AddressRemoved`` and
``SoftBounceNoted``. Reads no stream.
"""
