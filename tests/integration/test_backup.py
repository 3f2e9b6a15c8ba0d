"""``sendstream backup`` of a running embedded installation and ``sendstream restore``
into a new folder: the same events, the same keys, the reporting tables made again."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from adapters.backup import BackupError, restore_backup
from engine.runtime.composition import Engine, Role
from engine.settings import Settings
from tests.integration.conftest import wait_for
from tests.services import embedded_environment

Client = Callable[[Engine], httpx.AsyncClient]
ROOT = Path(__file__).resolve().parents[2]


_COUNT_ACCEPTED = """
from engine.runtime.composition import Engine
from engine.settings import Settings

engine = Engine(Settings(), roles=frozenset())
query = "SELECT count() AS n FROM events WHERE event_type = 'accepted'"
audited = "SELECT count() AS n FROM audit_log FINAL"
print(engine.reporting.query(query)[0]["n"], engine.reporting.query(audited)[0]["n"])
engine.close()
"""


def _cli(env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    """``sendstream …``, or (``count-accepted``) the restored reporting tables' count."""
    command = (
        [sys.executable, "-c", _COUNT_ACCEPTED]
        if arguments == ("count-accepted",)
        else [sys.executable, "-m", "cli", *arguments]
    )
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


async def test_a_backup_taken_while_sending_restores_the_same_events(
    make_engine: Callable[..., Engine], api_client: Client, tmp_path: Path
) -> None:
    pytest.importorskip("chdb")
    engine = make_engine()
    if engine.settings.uses_kafka:
        pytest.skip("backup is of the embedded mode's data folder")
    client = api_client(engine)
    keys = engine.app.bootstrap("shop.example")
    headers = {"Authorization": f"Bearer {keys['SenderAPIKey']}"}
    sent = []
    for n in range(20):
        answer = await client.post("/api/v1/email", headers=headers, json={
            "Subject": f"Mail {n}", "ContentType": "plain", "PlainContent": "hi",
            "From": {"email": "news@shop.example", "name": "News"},
            "To": [{"email": f"r{n}@example.org", "name": ""}]})  # fmt: skip
        sent.append(answer.json()["MessageID"])
    # A change the audit trail keeps: made again from the events on restore.
    made = await client.post("/api.php", json={
        "APIKey": keys["AccountAPIKey"], "Command": "List.Create", "ListName": "News"})  # fmt: skip
    assert made.json()["Success"], made.text
    audited = "SELECT count() AS n FROM audit_log FINAL"
    # The list's event, and its library's (opened, the list added).
    wait_for(lambda: engine.reporting.query(audited)[0]["n"] == 3)
    data = Path(engine.settings.data_dir)
    backed = _cli(embedded_environment(data), "backup", str(tmp_path / "backup"))
    assert backed.returncode == 0, backed.stderr
    assert "backed up" in backed.stdout
    newest = engine.app.recorder.max_notification_id() or 0

    restored_dir = tmp_path / "restored"
    restored = _cli(embedded_environment(restored_dir), "restore", str(tmp_path / "backup"))
    assert restored.returncode == 0, restored.stderr
    copy = Engine(Settings(SENDSTREAM_DATA_DIR=restored_dir, SMTP_SUBMISSION_PORTS="",
                           BOUNCE_SMTP_PORTS="", INBOUND_SMTP_PORTS=""),
                  roles=frozenset({Role.API}))  # fmt: skip
    try:
        original = engine.app.recorder.select_notifications(start=1, limit=100_000)
        kept = copy.app.recorder.select_notifications(start=1, limit=100_000)
        assert len(kept) >= 1
        assert [(n.id, n.topic, n.state) for n in kept] == [
            (n.id, n.topic, n.state) for n in original[: len(kept)]
        ]
        assert kept[-1].id <= newest
        for message_id in sent:
            assert copy.app.submission(UUID(message_id)).content["plain"] == "hi"
        # The same secret: the restored installation knows the same sender key.
        assert copy.app.sender_context(keys["SenderAPIKey"]) is not None
    finally:
        copy.close()
    # The reporting tables were made again (chdb opens one folder per process: asked in
    # one of its own).
    counted = _cli(embedded_environment(restored_dir), "count-accepted")
    assert counted.stdout.strip().splitlines()[-1] == "20 3", counted.stderr


def test_a_damaged_backup_or_a_used_folder_is_refused(tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "manifest.json").write_text(
        '{"taken_at": "x", "files": {"events.sqlite": {"bytes": 1, "sha256": "00"}}, '
        '"last_position": 1}'
    )
    (backup / "events.sqlite").write_bytes(b"changed")
    with pytest.raises(BackupError, match="does not match the manifest"):
        restore_backup(backup, tmp_path / "new")
    used = tmp_path / "used"
    used.mkdir()
    (used / "events.sqlite").write_bytes(b"")
    with pytest.raises(BackupError, match="not empty"):
        restore_backup(backup, used)
    assert not (tmp_path / "new").exists()
