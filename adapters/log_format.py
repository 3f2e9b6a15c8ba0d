"""Logs as one JSON object a line (``LOG_FORMAT=json``), for a log pipeline to index: the
time, level, logger, message and the process's roles, the request being answered (its
``X-Request-ID``), and the account, message or campaign a line is about where the code
that logs names it (``extra={"account_id": …}``)."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

from adapters.event_metadata import REQUEST

# The request this task is answering (set by the API for each request).
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
_SUBJECTS = ("account_id", "message_id", "campaign_id", "domain_id")


class JsonFormatter(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self._role = role

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "role": self._role,
            "process": record.process,
            "thread": record.threadName,
        }
        request_id = REQUEST_ID.get()
        if request_id:
            document["request_id"] = request_id
        context = REQUEST.get()
        if context is not None:
            # Who the request acts for (once authenticated): the account, user or key.
            for name, value in context.metadata().items():
                if name in ("account_id", "user_id", "key_id", "via", "command"):
                    document[name] = value
        for name in _SUBJECTS:
            value = getattr(record, name, None)
            if value is not None:
                document[name] = str(value)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(document, default=str).decode()
