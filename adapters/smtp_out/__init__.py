"""SMTP out (aiosmtplib): the relay transport (``relay``, every message through one MTA)
and the direct one (``direct``, each message to its recipient domain's own mail servers),
on the session work they share (``session``)."""

from adapters.smtp_out.relay import RelaySettings, SmtpRelayTransport

__all__ = ["RelaySettings", "SmtpRelayTransport"]
