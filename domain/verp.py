"""VERP return paths: the envelope sender of each outgoing message names that message.

A bounce or a complaint comes back to the return path, not to the From address, so a
return path of its own per message tells which message bounced without trusting a word
of the report (whose recipient lines may be rewritten, forwarded or missing). The token
carries a truncated HMAC of the message id: anyone can send mail to the bounce host, and
without the key nobody can make an address that suppresses a recipient of their choice.

``b-<token>@<bounce_host>``, where ``token`` is the unpadded lowercase base32 of the 16
bytes of the message id followed by the first 6 bytes of HMAC-SHA256(key, those 16
bytes): 36 characters, a 38-character local part (SMTP allows 64). Base32 because local
parts are case-insensitive in practice: MTAs and mailbox providers lowercase them, and
base32 decodes the same in either case. 48 bits of MAC make a forgery a 1 in 2^48 guess
per attempt, each attempt an SMTP transaction.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from typing import Final
from uuid import UUID

__all__ = ["PREFIX", "message_id_from_verp", "verp_address"]

PREFIX: Final = "b-"
_MAC_BYTES: Final = 6
_TOKEN_BYTES: Final = 16 + _MAC_BYTES
_TOKEN_CHARS: Final = 36  # ceil(22 * 8 / 5)
_PADDING: Final = "=" * (-_TOKEN_CHARS % 8)
_HOST_FORBIDDEN: Final = frozenset('@<>"\\()[],;: \t\r\n')


def _mac(message_id: UUID, key: bytes) -> bytes:
    return hmac.new(key, message_id.bytes, hashlib.sha256).digest()[:_MAC_BYTES]


def verp_address(message_id: UUID, bounce_host: str, key: bytes) -> str:
    """The return path for ``message_id``: ``b-<token>@<bounce_host>``."""
    if not key:
        raise ValueError("the VERP key must not be empty")
    host = bounce_host.strip().rstrip(".").lower()
    if not host or any(c in _HOST_FORBIDDEN for c in host) or not host.isascii():
        raise ValueError(f"not a bounce host name: {bounce_host!r}")
    raw = message_id.bytes + _mac(message_id, key)
    token = base64.b32encode(raw).decode("ascii").rstrip("=").lower()
    return f"{PREFIX}{token}@{host}"


def message_id_from_verp(address: str, key: bytes) -> UUID | None:
    """The message a return path names, or None when it is not one of ours or its MAC is
    wrong. Accepts the address in angle brackets, in any case, or its local part alone;
    the domain is not checked (the MAC is what makes the address ours)."""
    if not key or len(address) > 512:
        return None
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    local = text.rpartition("@")[0] if "@" in text else text
    local = local.lower()
    if not local.startswith(PREFIX) or len(local) != len(PREFIX) + _TOKEN_CHARS:
        return None
    token = local[len(PREFIX) :]
    if not token.isascii() or not token.isalnum():
        return None
    try:
        raw = base64.b32decode(token.upper() + _PADDING)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _TOKEN_BYTES:
        return None
    # b32decode ignores the 4 unused bits of the last character: only the canonical
    # spelling of a token is accepted, so that one message has one return path.
    if base64.b32encode(raw).decode("ascii").rstrip("=").lower() != token:
        return None
    message_id = UUID(bytes=raw[:16])
    if not hmac.compare_digest(raw[16:], _mac(message_id, key)):
        return None
    return message_id


_UNSUBSCRIBE_PREFIX = "u-"


def unsubscribe_address(message_id: UUID, host: str, key: bytes) -> str:
    """The ``mailto:`` of a message's List-Unsubscribe: ``u-<token>@<host>``, signed like a
    return path but with a key of its own, so neither address can stand for the other."""
    return _UNSUBSCRIBE_PREFIX + verp_address(message_id, host, key)[len(PREFIX) :]


def message_id_from_unsubscribe_address(address: str, key: bytes) -> UUID | None:
    text = address.strip().lstrip("<").lower()
    if not text.startswith(_UNSUBSCRIBE_PREFIX):
        return None
    return message_id_from_verp(PREFIX + text[len(_UNSUBSCRIBE_PREFIX) :], key)
