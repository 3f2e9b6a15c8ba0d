"""The engine's secret and the keys derived from it, one per use.

``SESSION_SECRET`` when set (every API host and worker of an installation must share it),
else a random secret kept in the data folder, made on first use: both processes of
``sendstream serve`` read the same file.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from engine.settings import Settings


def session_secret(settings: Settings) -> bytes:
    """``SESSION_SECRET`` when set (several API hosts must share it), else a random secret kept
    in the data folder, made on first use."""
    configured = os.environ.get("SESSION_SECRET", "")
    if configured:
        return configured.encode()
    path = Path(settings.data_dir) / "session.key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(descriptor, "wb") as file:
        file.write(secrets.token_bytes(32))
    return path.read_bytes()


def derived_key(settings: Settings, purpose: str) -> bytes:
    """Tracking tokens, return paths and sessions never share a key."""
    return hmac.new(
        session_secret(settings), f"sendstream:{purpose}".encode(), hashlib.sha256
    ).digest()


def tracking_key(settings: Settings) -> bytes:
    return derived_key(settings, "tracking")


def verp_key(settings: Settings) -> bytes:
    return derived_key(settings, "verp")


def unsubscribe_mail_key(settings: Settings) -> bytes:
    return derived_key(settings, "unsubscribe-mail")
