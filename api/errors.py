"""Documented errors → HTTP responses, in one place (statuses from 003, the REST conventions)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse

from domain.errors import ErrorText, RequestRejected


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
