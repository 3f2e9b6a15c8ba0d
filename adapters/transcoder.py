"""The event store's JSON, written and read by orjson.

The stored form is eventsourcing's own (``JSONTranscoder``): a UUID is
``{"_type_": "uuid_hex", "_data_": "…"}``, a datetime ``{"_type_": "datetime_iso", …}``,
so events written by either transcoder are read by the other, and the stores already
in use need no migration. orjson parses and writes large strings (a submission's
content) several times faster than the standard library; it writes UUIDs as plain
strings by itself, so they are tagged first, and it hands datetimes, dataclasses and
anything it does not know to the registered transcodings, as the standard encoder does.
A value orjson refuses or would write differently (an integer beyond 64 bits, NaN, an
infinity, an enumeration that is neither text nor a number) is written by the standard
encoder.

``TRANSCODER_TOPIC=adapters.transcoder:OrjsonTranscoder`` (``engine.settings`` sets it).
"""

from __future__ import annotations

from enum import Enum
from math import isfinite
from typing import Any
from uuid import UUID

import orjson
from eventsourcing.persistence import JSONTranscoder

_ENCODE_OPTIONS = (
    orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS
)


class OrjsonTranscoder(JSONTranscoder):
    def encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(_tag_uuids(obj), default=self._encode_obj, option=_ENCODE_OPTIONS)
        except _WrittenByStandard:
            return super().encode(obj)
        except orjson.JSONEncodeError as error:
            if error.__cause__ is not None:
                raise error.__cause__ from None  # a transcoding's own refusal, as before
            return super().encode(obj)

    def decode(self, data: bytes) -> Any:
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            return super().decode(data)  # what only the standard encoder writes (NaN)
        try:
            return self._restore(parsed)
        except _BeyondInt64:
            return super().decode(data)

    def _restore(self, value: Any) -> Any:
        if type(value) is dict:
            if len(value) == 2 and "_type_" in value and "_data_" in value:
                return self._decode_obj(value)
            return {key: self._restore(item) for key, item in value.items()}
        if type(value) is list:
            return [self._restore(item) for item in value]
        if type(value) is float and abs(value) >= _INT64_LIMIT:
            # orjson reads an integer beyond 64 bits as a float: read by the standard decoder.
            raise _BeyondInt64
        return value


_INT64_LIMIT = 2.0**63


class _WrittenByStandard(ValueError):
    """A value orjson would write differently: NaN and infinities (as null), an enumeration
    that is neither text nor a number (as its value, where the standard encoder asks the
    transcodings)."""


class _BeyondInt64(ValueError):
    pass


_AS_THEY_ARE = frozenset({str, int, bool, type(None)})


def _tag_uuids(value: Any) -> Any:
    """``value`` with every UUID in it as the standard transcoder writes one."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is UUID:
        return {"_type_": "uuid_hex", "_data_": value.hex}
    # Text, numbers and None are most values: kept without a call each (a tenth of the
    # cost of saving a batch of messages was these calls).
    if kind is dict:
        return {
            key: item if type(item) in _AS_THEY_ARE else _tag_uuids(item)
            for key, item in value.items()
        }
    if kind is list or kind is tuple:
        return [item if type(item) in _AS_THEY_ARE else _tag_uuids(item) for item in value]
    if kind is float:
        if not isfinite(value):
            raise _WrittenByStandard
    elif isinstance(value, Enum) and not isinstance(value, (str, int)):
        raise _WrittenByStandard
    return value
