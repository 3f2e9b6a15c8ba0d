"""Documented errors → HTTP responses, in one place (statuses from 003, the REST conventions)."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse

from adapters.faults import StorageFault, storage_fault
from domain.errors import ErrorText, Extensions, RequestRejected


class JSONResponse(StarletteJSONResponse):
    """Starlette's, rendered by orjson (FastAPI documents a JSON response class's model)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


# Codes whose meaning is the same wherever they appear in the REST documents.
_STATUS_BY_CODE = {1: 401, 13: 401, 2: 403, 12: 403, 32: 403, 34: 403, 17: 420}
_HTTP_STATUS_CODES = {400, 401, 403, 404, 405, 409, 413, 415, 420, 422, 429, 500, 503}


def status_for(error: ErrorText) -> int:
    if error.status is not None:
        return error.status
    if error.code in _HTTP_STATUS_CODES:
        return error.code
    return _STATUS_BY_CODE.get(error.code, 422)


def rest_error_response(rejected: RequestRejected) -> JSONResponse:
    """``{"Errors": [{"Code": …, "Message": …}]}``; the first error decides the status."""
    status = status_for(rejected.errors[0])
    headers = {"Retry-After": str(rejected.retry_after)} if rejected.retry_after else None
    return JSONResponse(
        {"Errors": [{"Code": e.code, "Message": e.message} for e in rejected.errors]},
        status_code=status,
        headers=headers,
    )


# What a storage fault answers, and after how many seconds the client should try again: a
# full disk waits for an operator, a database restart takes seconds.
FAULT_ANSWERS = {
    StorageFault.FULL: (Extensions.STORAGE_FULL, 30),
    StorageFault.UNAVAILABLE: (Extensions.STORAGE_UNAVAILABLE, 5),
}


def rejection_for(error: Exception, log: logging.Logger, what: str) -> RequestRejected:
    """What a request that raised ``error`` answers. A storage fault is the machine's, not
    a bug: 503 with Retry-After, logged as a warning without its traceback (a full disk
    must not fill the log too). Anything else is the unknown exception, with its traceback."""
    fault = storage_fault(error)
    if fault is None:
        log.exception("%s failed", what)
        return RequestRejected(Extensions.INTERNAL)
    log.warning("%s refused: the event store is %s (%s)", what, fault.value, error)
    answer, retry_after = FAULT_ANSWERS[fault]
    return RequestRejected(answer, retry_after=retry_after)
