"""Backups of an embedded installation's data folder, taken while it runs.

What is copied, and how:

* the SQLite files (the event store, the schedule store, the webhook store) by SQLite's
  online backup, page by page under its own read transaction: a consistent copy however
  busy the writers are, without stopping them;
* the secret the keys derive from (``session.key``), as it is: without it the restored
  installation's API keys, tracking links and VERP return paths would no longer verify.

What is not: the reporting tables (chdb), which are made from the events and are made
again from the restored event store (``sendstream restore`` replays them), the leases
and the metrics of the running processes.

A ``manifest.json`` names each file with its size and SHA-256, and the event store's
last position, which ``restore`` checks before it writes anything.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SQLITE_FILES = ("events.sqlite", "schedule.sqlite", "webhooks.sqlite")
PLAIN_FILES = ("session.key",)
MANIFEST = "manifest.json"


class BackupError(Exception):
    """A backup or restore that cannot be made; nothing was written where it was going."""


@dataclass(frozen=True)
class Manifest:
    taken_at: str
    files: dict[str, dict[str, object]]  # name → {"bytes", "sha256"}
    last_position: int  # the event store's newest notification id in the copy


def take_backup(data_dir: Path, target: Path) -> Manifest:
    """Copy ``data_dir``'s files into ``target`` (a new folder)."""
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} is not empty")
    if not (data_dir / "events.sqlite").exists():
        raise BackupError(f"{data_dir} holds no event store (events.sqlite)")
    target.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, object]] = {}
    for name in SQLITE_FILES:
        if (data_dir / name).exists():
            _online_copy(data_dir / name, target / name)
            files[name] = _described(target / name)
    for name in PLAIN_FILES:
        if (data_dir / name).exists():
            shutil.copy2(data_dir / name, target / name)
            files[name] = _described(target / name)
    manifest = Manifest(
        taken_at=datetime.now(UTC).isoformat(),
        files=files,
        last_position=_last_position(target / "events.sqlite"),
    )
    (target / MANIFEST).write_text(json.dumps(manifest.__dict__, indent=2) + "\n")
    return manifest


def restore_backup(source: Path, data_dir: Path) -> Manifest:
    """Put a backup's files in ``data_dir`` (new or empty), after checking each against
    the manifest; the reporting tables are for the caller to make again."""
    try:
        manifest = Manifest(**json.loads((source / MANIFEST).read_text()))
    except (OSError, ValueError, TypeError) as error:
        raise BackupError(f"{source} holds no readable {MANIFEST}: {error}") from None
    if data_dir.exists() and any(data_dir.iterdir()):
        raise BackupError(f"{data_dir} is not empty: restore into a new data folder")
    for name, described in manifest.files.items():
        if _described(source / name) != described:
            raise BackupError(f"{name} does not match the manifest: the backup is damaged")
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in manifest.files:
        shutil.copy2(source / name, data_dir / name)
    return manifest


def _online_copy(source: Path, target: Path) -> None:
    # A read-only connection: the backup never takes a write lock on the live database.
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as live:
        copy = sqlite3.connect(target)
        try:
            live.backup(copy, pages=1024)  # in steps, so writers get in between
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            copy.close()


def _described(path: Path) -> dict[str, object]:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _last_position(events: Path) -> int:
    with sqlite3.connect(f"file:{events}?mode=ro", uri=True) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        table = next((t for t in ("stored_events", "events") if t in tables), None)
        if table is None:
            return 0
        row = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()  # noqa: S608 (a name found above)
    return int(row[0] or 0)
