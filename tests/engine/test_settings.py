"""Settings that are checked at start: a way out without what it needs, a bad shaping file."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.settings import Settings


def test_relay_mode_needs_a_relay() -> None:
    with pytest.raises(ValueError, match="DELIVERY_MODE=relay needs SMTP_RELAY_URL"):
        Settings(DELIVERY_MODE="relay")
    assert Settings(SMTP_RELAY_URL="smtp://127.0.0.1:2525").outbound == "relay"
    assert Settings().outbound == "sandbox"
    assert Settings(DELIVERY_MODE="direct", SMTP_RELAY_URL="smtp://x:25").outbound == "direct"


def test_a_bad_shaping_file_stops_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "shaping.toml"
    bad.write_text("[default]\nmax_connections = 'many'\n")
    with pytest.raises(ValueError, match=r"SHAPING_FILE .*shaping\.toml: line 2: max_connections"):
        Settings(SHAPING_FILE=str(bad))
    with pytest.raises(ValueError, match="cannot be read"):
        Settings(DELIVERY_MODE="direct", SHAPING_FILE=str(tmp_path / "missing.toml"))
    assert Settings(DELIVERY_MODE="direct").shaping_rules().default.max_connections == 10


def test_sending_addresses_must_be_this_machines() -> None:
    assert [s.address for s in Settings(SENDING_ADDRESSES="127.0.0.30=a.example").sources()] == [
        "127.0.0.30"
    ]
    with pytest.raises(ValueError, match=r"192\.0\.2\.1 is not an address of this machine"):
        Settings(SENDING_ADDRESSES="192.0.2.1=a.example")
    with pytest.raises(ValueError, match="DuplicateIPAddressException"):
        Settings(SENDING_ADDRESSES="127.0.0.30=a.example,127.0.0.30=b.example")


def test_the_command_line_reports_a_bad_setting_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cli.main import load_settings

    monkeypatch.setenv("DELIVERY_CONCURRENCY", "many")
    with pytest.raises(SystemExit) as raised:
        load_settings()
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert "sendstream: DELIVERY_CONCURRENCY: Input should be a valid integer" in err
    assert "Traceback" not in err


def test_delivery_processes_share_by_message_id_alone_or_by_partition_through_kafka() -> None:
    from engine.runtime.processes import worker_processes

    def shares(**values: str) -> list[str]:
        children = worker_processes(Settings(**values))  # type: ignore[arg-type]
        return [child._env["DELIVERY_SHARE"] for child in children if "webhook" not in child.label]

    assert shares(DELIVERY_PROCESSES="3") == ["1/3", "2/3", "3/3"]
    # One consumer group shares the partitions: no process keeps to a share of the ids.
    kafka = shares(DELIVERY_PROCESSES="3", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9092")
    assert kafka == ["", "", ""]
    assert Settings().kafka_partitions == 12
    with pytest.raises(ValueError, match="KAFKA_PARTITIONS"):
        Settings(KAFKA_PARTITIONS="0")  # type: ignore[arg-type]
