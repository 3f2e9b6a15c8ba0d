"""The orjson transcoder writes and reads eventsourcing's own JSON: either reads the other's."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.transcoder import OrjsonTranscoder
from engine.application import Sendstream
from engine.settings import Settings
from tests.domain.test_message import new_message

pytestmark = pytest.mark.unit


def _registered(transcoder: JSONTranscoder) -> JSONTranscoder:
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


STANDARD = _registered(JSONTranscoder())
ORJSON = _registered(OrjsonTranscoder())

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # beyond 64 bits too: those are written by the standard encoder
    st.floats(allow_nan=False),  # infinities too: the standard encoder writes them
    st.text(),
    st.uuids(),
    st.datetimes(timezones=st.just(UTC)),
    st.decimals(allow_nan=False, allow_infinity=False),
)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300)
@given(st.dictionaries(st.text(), values, max_size=8))
def test_each_reads_what_the_other_wrote(event_state: dict[str, Any]) -> None:
    written_by_orjson = ORJSON.encode(event_state)
    written_by_standard = STANDARD.encode(event_state)

    assert STANDARD.decode(written_by_orjson) == event_state
    assert ORJSON.decode(written_by_standard) == event_state
    assert ORJSON.decode(written_by_orjson) == event_state


def test_it_writes_the_same_bytes_as_the_standard_transcoder() -> None:
    state = {
        "timestamp": datetime(2026, 12, 3, 9, 0, 0, 123456, tzinfo=UTC),
        "offset": datetime(2026, 12, 3, 9, 0, tzinfo=timezone(timedelta(hours=2))),
        "submission_id": uuid4(),
        "message_ids": [uuid4(), uuid4()],
        "tags": ("a", "b"),
        "content": {"plain": 'é\n\t"quoted" \\ \u2028', "headers": [["X-A", "1"]]},
        "merge_fields": None,
        "weight": Decimal("1.50"),
        "count": 2**70,
    }

    assert ORJSON.encode(state) == STANDARD.encode(state)


class _Colour(Enum):
    RED = 1


def test_a_type_without_a_transcoding_is_refused_as_before() -> None:
    for transcoder in (STANDARD, ORJSON):
        with pytest.raises(TranscodingNotRegisteredError):
            transcoder.encode({"day": date(2026, 12, 3)})
        with pytest.raises(TranscodingNotRegisteredError):
            transcoder.encode({"where": Path("/tmp")})
        with pytest.raises(TranscodingNotRegisteredError):
            transcoder.encode({"colour": _Colour.RED})


def test_json_only_the_standard_encoder_writes_is_still_read() -> None:
    written = STANDARD.encode({"ratio": float("nan"), "id": UUID(int=7)})

    decoded = ORJSON.decode(written)

    assert decoded["id"] == UUID(int=7) and decoded["ratio"] != decoded["ratio"]


def test_the_event_store_uses_it_and_replays_a_message(tmp_path: Path) -> None:
    app = Sendstream(Settings(SENDSTREAM_DATA_DIR=tmp_path))
    message = new_message()
    message.queue()
    app.save(message)

    replayed = app.message(message.id)

    assert isinstance(app.mapper.transcoder, OrjsonTranscoder)
    assert vars(replayed) == vars(message)
