"""The FastAPI application: thin translation between HTTP and the engine's services."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl
from uuid import UUID

import orjson
from fastapi import FastAPI, Request
from fastapi.routing import APIRoute
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters.metrics import BacklogCollector, LagCollector
from api.commands import CommandEndpoint, command_groups
from api.console import install_console
from api.docs import serve_docs
from api.errors import JSONResponse, rejection_for, rest_error_response
from api.metrics import MetricsEndpoint
from api.openapi import install_contract
from api.rest_resources import AccountResources
from api.routes_rest import install_route_routes
from api.schemas import (
    DeletedWebhookResponse,
    EventsResponse,
    NewWebhookResponse,
    SendBatchResponse,
    SendEmailResponse,
    ShownEmail,
    WebhooksResponse,
)
from api.templates_rest import install_template_routes
from api.tracking import TrackingEndpoint
from domain import errors as E
from domain.errors import ErrorText, Extensions, GetEvents, RequestRejected, SendEmail
from engine.admission import BUSY_RETRY_AFTER
from engine.application import SenderContext
from engine.keys import tracking_key
from engine.params import MAX_PAGED_RECORDS, date_param, event_param
from engine.runtime.composition import Engine
from projections.events import list_events

log = logging.getLogger(__name__)

MAX_RETRIEVE_COUNT = 100
DEFAULT_RETRIEVE_COUNT = 5


class SendEmailFastPath:
    """``POST /api/v1/email`` straight from ASGI to the send service.

    The busiest endpoint skips FastAPI's routing, dependency and telemetry layers,
    which profiling showed to be half the cost of a request. Body reading, errors
    and responses are the same functions the FastAPI route uses.
    """

    def __init__(self, app: ASGIApp, engine: Engine) -> None:
        self.app = app
        self.engine = engine

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"].rstrip("/") != "/api/v1/email"
        ):
            await self.app(scope, receive, send)
            return
        admission = self.engine.sending.admission
        admitted = False
        try:
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]
            }
            try:
                body = await self._body(headers, receive)
                if body is None:  # the client went away
                    return
                # In progress from the body read to the answer sent (a slow upload holds
                # no place): under overload the wait for the event loop is the queue it
                # keeps short.
                admitted = admission.admit()
                if not admitted:
                    raise RequestRejected(Extensions.BUSY, retry_after=BUSY_RETRY_AFTER)
                message_id, replayed = await accept_email(
                    self.engine, parse_json_object(body), headers.get("authorization", ""),
                    headers.get("idempotency-key"),
                )  # fmt: skip
                response: Response = JSONResponse({"MessageID": message_id},
                                                  headers=replayed_header(replayed))  # fmt: skip
            except RequestRejected as rejected:
                response = rest_error_response(rejected)
            except Exception as error:
                response = rest_error_response(rejection_for(error, log, "POST /api/v1/email"))
            await response(scope, receive, send)
        finally:
            if admitted:
                admission.release()

    async def _body(self, headers: dict[str, str], receive: Receive) -> bytearray | None:
        limit = self.engine.settings.max_request_bytes
        check_body_headers(headers.get("content-type", ""), headers.get("content-length"), limit)
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > limit:
                raise RequestRejected(Extensions.TOO_LARGE.format(limit=limit))
            if not message.get("more_body", False):
                return body


class TrailingSlashMiddleware:
    """``/api/v1/email/`` is ``/api/v1/email`` (003: trailing slashes are ignored)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope = {**scope, "path": path.rstrip("/") or "/"}
        await self.app(scope, receive, send)


def bearer_from_header(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def bearer_token(request: Request) -> str | None:
    return bearer_from_header(request.headers.get("authorization", ""))


def check_body_headers(content_type: str, declared_length: str | None, limit: int) -> None:
    """What can be refused before reading a byte of the body."""
    if content_type and "json" not in content_type.split(";")[0].lower():
        raise RequestRejected(Extensions.UNSUPPORTED_MEDIA_TYPE)
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise RequestRejected(Extensions.TOO_LARGE.format(limit=limit))


def parse_json_object(body: bytes | bytearray) -> dict[str, Any]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestRejected(Extensions.MALFORMED_BODY) from None
    if not isinstance(parsed, dict):
        raise RequestRejected(Extensions.MALFORMED_BODY)
    return parsed


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    check_body_headers(
        request.headers.get("content-type", ""), request.headers.get("content-length"), limit
    )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestRejected(Extensions.TOO_LARGE.format(limit=limit))
    return parse_json_object(body)


def replayed_header(replayed: bool) -> dict[str, str] | None:
    """Stripe's header on the answer of an earlier request with the same Idempotency-Key."""
    return {"Idempotent-Replayed": "true"} if replayed else None


async def accept_email(
    engine: Engine, body: dict[str, Any], authorization: str, idempotency_key: str | None
) -> tuple[str, bool]:
    """Send Email, after the body is read: authenticate, then hand to the send service; the
    MessageID, and whether it is an earlier request's answer (the same Idempotency-Key)."""
    key = bearer_from_header(authorization) or _text_or_none(body.get("SenderAPIKey"))
    sender = engine.sending.authenticate(
        key,
        too_many=SendEmail.TOO_MANY_REQUESTS,
        missing=SendEmail.MISSING_SENDER_API_KEY,
        invalid=SendEmail.INVALID_SENDER_API_KEY,
    )
    if idempotency_key is None:
        return await engine.sending.send(sender, body), False
    return await engine.sending.send_once(sender, body, idempotency_key)


async def read_parameters(request: Request, limit: int) -> dict[str, Any]:
    """GET parameters from the query string, or from a body as ``curl -X GET -d`` sends them."""
    params: dict[str, Any] = dict(request.query_params)
    content_type = request.headers.get("content-type", "").split(";")[0].lower()
    has_body = request.headers.get("content-length", "0") not in ("", "0") or (
        "transfer-encoding" in request.headers
    )
    if has_body:
        if "json" in content_type:
            params.update(await read_json_object(request, limit))
        else:
            raw = bytearray()
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > limit:
                    raise RequestRejected(Extensions.TOO_LARGE.format(limit=limit))
            try:
                params.update(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                raise RequestRejected(Extensions.MALFORMED_BODY) from None
    return params


def _int_param(value: Any, default: int, error: Any) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise RequestRejected(error)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise RequestRejected(error) from None
    if not 0 <= number < 2**31:
        raise RequestRejected(error)
    return number


def create_app(engine: Engine) -> ASGIApp:
    """What uvicorn serves: the fast path for sending in front of the FastAPI application."""
    app = CommandEndpoint(
        SendEmailFastPath(create_api(engine), engine),
        engine.app,
        engine.gateway,
        engine.campaigns,
        command_groups(engine),
        max_body_bytes=engine.settings.max_request_bytes,
    )
    # Tracking hits come first: they are the most numerous requests of all.
    tracked = TrackingEndpoint(
        app,
        engine.feedback,
        key=tracking_key(engine.settings),
        trust_forwarded=engine.settings.trust_forwarded_for,
    )
    return MetricsEndpoint(
        tracked,
        lambda: [
            LagCollector(lambda: _reader_lags(engine)),
            BacklogCollector(lambda: _backlog(engine)),
        ],
        trust_forwarded=engine.settings.trust_forwarded_for,
    )


def _reader_lags(engine: Engine) -> list[tuple[str, str, int | None]]:
    from engine.runtime.status import installation_status

    return [(f.reader, f.where, f.lag) for f in installation_status(engine).followers]


def _backlog(engine: Engine) -> tuple[int, int, int]:
    waiting, due = engine.schedule_store.waiting(datetime.now(UTC))
    return waiting, due, engine.webhook_store.pending_count()


def create_api(engine: Engine) -> FastAPI:
    settings = engine.settings
    app = FastAPI(
        title="Sendstream",
        version="0.1.0",
        description="Event-sourced email delivery engine. REST endpoints of the Email Gateway "
        "API; errors follow its catalogue.",
        default_response_class=JSONResponse,
        docs_url=None,  # served by api.docs with its own files
        redoc_url=None,  # ReDoc comes only from a CDN
    )
    serve_docs(app, "Sendstream")
    install_console(app, engine)
    app.add_middleware(TrailingSlashMiddleware)

    @app.exception_handler(RequestRejected)
    async def rejected(_: Request, error: RequestRejected) -> JSONResponse:
        return rest_error_response(error)

    @app.exception_handler(404)
    async def not_found(_: Request, __: Exception) -> JSONResponse:
        return rest_error_response(RequestRejected(Extensions.NOT_FOUND))

    @app.exception_handler(405)
    async def not_allowed(request: Request, _: Exception) -> JSONResponse:
        response = rest_error_response(RequestRejected(Extensions.METHOD_NOT_ALLOWED))
        # RFC 9110 §15.5.6: a 405 names the methods that are allowed, and Starlette names
        # only those of the first route of the path (one route per method here).
        matching = [
            route
            for route in app.routes
            if isinstance(route, APIRoute) and route.matches(request.scope)[0] is Match.PARTIAL
        ]
        # A path of its own (/api/v1/email/batch) is not also a value of a parameter's
        # path (/api/v1/email/{message_id}): only its own routes' methods are allowed.
        own = [route for route in matching if not route.param_convertors]
        methods = {method for route in own or matching for method in route.methods or ()}
        response.headers["Allow"] = ", ".join(sorted(methods))
        return response

    @app.exception_handler(Exception)
    async def unknown(request: Request, error: Exception) -> JSONResponse:
        what = f"{request.method} {request.url.path}"
        return rest_error_response(rejection_for(error, log, what))

    @app.post(
        "/api/v1/email",
        response_model=SendEmailResponse,
        operation_id="sendEmail",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {}}}},
        summary="Send Email",
        tags=["email"],
    )
    async def send_email(request: Request) -> JSONResponse:
        # Served by SendEmailFastPath in front of this app; kept for the OpenAPI page and
        # for any mounting that bypasses the fast path.
        body = await read_json_object(request, settings.max_request_bytes)
        with engine.sending.admission.admitted():
            message_id, replayed = await accept_email(
                engine, body, request.headers.get("authorization", ""),
                request.headers.get("idempotency-key"),
            )  # fmt: skip
        return JSONResponse({"MessageID": message_id}, headers=replayed_header(replayed))

    @app.post(
        "/api/v1/email/batch",
        response_model=SendBatchResponse,
        operation_id="sendBatch",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {}}}},
        summary="Send one content to up to 1,000 recipients, each with its own data",
        tags=["email"],
    )
    async def send_batch(request: Request) -> JSONResponse:
        body = await read_json_object(request, settings.max_request_bytes)
        key = bearer_token(request) or _text_or_none(body.get("SenderAPIKey"))
        with engine.sending.admission.admitted():
            sender = engine.sending.authenticate(
                key,
                too_many=SendEmail.TOO_MANY_REQUESTS,
                missing=SendEmail.MISSING_SENDER_API_KEY,
                invalid=SendEmail.INVALID_SENDER_API_KEY,
            )
            answer, replayed = await engine.sending.send_batch(
                sender, body, request.headers.get("idempotency-key")
            )
        return JSONResponse(answer, headers=replayed_header(replayed))

    commands = CommandEndpoint(
        app,
        engine.app,
        engine.gateway,
        engine.campaigns,
        command_groups(engine),
        settings.max_request_bytes,
    )

    command_names = sorted(["User.Login", *(spec.name for spec in commands.commands.values())])
    install_contract(
        app,
        {"User.Login": engine.gateway.login}
        | {spec.name: spec.handler for spec in commands.commands.values()},
    )

    @app.api_route(
        "/api.php",
        methods=["POST"],
        operation_id="command",
        summary="Command API (User.Login, EmailGateway.*, Campaign.*, List.*, Email.* …)",
        tags=["commands"],
        description="Parameters as JSON, form fields or query string: `Command` and the "
        "command's parameters, with `APIKey` (the account's key) or `SessionID` (from "
        "`User.Login`). Commands: "
        + ", ".join(f"`{spec.name}`" for spec in commands.commands.values())
        + '. Answers `{"Success": true, "ErrorCode": 0, …}` or '
        '`{"Success": false, "ErrorCode": N, "ErrorMessage": "…"}`.',
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["Command"],
                            "properties": {
                                "Command": {"type": "string", "enum": command_names},
                                "APIKey": {"type": "string"},
                                "SessionID": {"type": "string"},
                            },
                            "additionalProperties": True,
                        }
                    }
                }
            }
        },
    )
    async def command_api(request: Request) -> Response:
        # Served by CommandEndpoint in front of this app; kept for the OpenAPI page.
        return await commands.answer(request.scope, request.receive)

    @app.get(
        "/api.php",
        operation_id="commandByQuery",
        summary="Command API with its parameters in the query string",
        tags=["commands"],
        openapi_extra={
            "parameters": [
                {"name": "Command", "in": "query", "required": True,
                 "schema": {"type": "string", "enum": command_names}},
            ]
        },
    )  # fmt: skip
    async def command_api_by_query(request: Request) -> Response:
        return await commands.answer(request.scope, request.receive)

    @app.get(
        # Only an id: /api/v1/email/batch is a path of its own, not an email's.
        "/api/v1/email/{message_id:uuid}",
        response_model=ShownEmail,
        operation_id="showEmail",
        summary="Show an accepted email: its recipients' status and the MIME each one gets",
        tags=["email"],
    )
    async def show_email(message_id: UUID, request: Request) -> JSONResponse:
        sender = engine.sending.authenticate(
            bearer_token(request),
            too_many=GetEvents.TOO_MANY_REQUESTS,
            missing=GetEvents.MISSING_SENDER_API_KEY,
            invalid=GetEvents.INVALID_SENDER_API_KEY,
        )
        shown = await asyncio.to_thread(engine.sending.describe, sender, message_id)
        if shown is None:
            raise RequestRejected(Extensions.NOT_FOUND)
        return JSONResponse(shown)

    @app.get(
        "/api/v1/events",
        response_model=EventsResponse,
        operation_id="getEvents",
        summary="Retrieve Email Events",
        tags=["events"],
    )
    async def get_events(request: Request) -> JSONResponse:
        params = await read_parameters(request, 64 * 1024)
        sender = engine.sending.authenticate(
            bearer_token(request) or _text_or_none(params.get("SenderAPIKey")),
            too_many=GetEvents.TOO_MANY_REQUESTS,
            missing=GetEvents.MISSING_SENDER_API_KEY,
            invalid=GetEvents.INVALID_SENDER_API_KEY,
        )
        if not sender.account_active:
            raise RequestRejected(GetEvents.INVALID_USER_ACCOUNT)
        start_from = _int_param(params.get("StartFrom"), 0, GetEvents.MISSING_START_FROM)
        if start_from >= MAX_PAGED_RECORDS:
            raise RequestRejected(Extensions.TOO_MANY_RECORDS)
        # More than the documented maximum is served as the maximum, as paging APIs do, and
        # a page ends with the 20,000th record of the range.
        retrieve_count = min(
            _int_param(
                params.get("RetrieveCount"),
                DEFAULT_RETRIEVE_COUNT,
                GetEvents.MISSING_RETRIEVE_COUNT,
            ),
            MAX_RETRIEVE_COUNT,
            MAX_PAGED_RECORDS - start_from,
        )
        start = date_param(params.get("StartDate"), end_of_day=False, zone=sender.time_zone)
        end = date_param(params.get("EndDate"), end_of_day=True, zone=sender.time_zone)
        event_type = event_param(params.get("Event"))
        submission_id = _uuid_param(params.get("MessageID"), "MessageID")
        total, events = await asyncio.to_thread(
            list_events,
            engine.reporting,
            domain_id=sender.domain_id,
            start_from=start_from,
            retrieve_count=retrieve_count,
            start=start,
            end=end,
            event_type=event_type,
            submission_id=submission_id,
        )
        engine.sending.note_use(sender.key_id)
        return JSONResponse({"TotalRecords": total, "Events": events})

    @app.post(
        "/api/v1/webhooks",
        response_model=NewWebhookResponse,
        operation_id="addWebhook",
        summary="Add a New Webhook for Email Events",
        tags=["webhooks"],
    )
    async def add_webhook(request: Request) -> JSONResponse:
        params = await read_parameters(request, 64 * 1024)
        sender = webhook_sender(request, params, E.AddWebhookRest.INVALID_SENDER_API_KEY,
                                E.AddWebhookRest.TOO_MANY_REQUESTS)  # fmt: skip
        added, replayed = await asyncio.to_thread(
            engine.webhooks.rest_add, sender, params, request.headers.get("idempotency-key")
        )
        return JSONResponse(added, headers=replayed_header(replayed))

    @app.get(
        "/api/v1/webhooks",
        response_model=WebhooksResponse,
        operation_id="getWebhooks",
        summary="Retrieve Domain Webhooks (with the domain's SigningKey)",
        tags=["webhooks"],
    )
    async def get_webhooks(request: Request) -> JSONResponse:
        params = await read_parameters(request, 64 * 1024)
        sender = webhook_sender(request, params, E.GetWebhooksRest.INVALID_SENDER_API_KEY,
                                E.GetWebhooksRest.TOO_MANY_REQUESTS)  # fmt: skip
        if not sender.account_active:
            raise RequestRejected(E.GetWebhooksRest.INVALID_USER_ACCOUNT)
        return JSONResponse(await asyncio.to_thread(engine.webhooks.rest_list, sender))

    @app.delete(
        "/api/v1/webhooks",
        response_model=DeletedWebhookResponse,
        operation_id="deleteWebhook",
        summary="Delete an Email Webhook",
        tags=["webhooks"],
    )
    async def delete_webhook(request: Request) -> JSONResponse:
        params = await read_parameters(request, 64 * 1024)
        sender = webhook_sender(request, params, E.DeleteWebhookRest.INVALID_SENDER_API_KEY,
                                E.DeleteWebhookRest.TOO_MANY_REQUESTS)  # fmt: skip
        if not sender.account_active:
            raise RequestRejected(E.DeleteWebhookRest.INVALID_USER_ACCOUNT)
        deleted = await asyncio.to_thread(engine.webhooks.rest_delete, sender, params)
        return JSONResponse(deleted)

    def sender_key(request: Request, body: dict[str, Any]) -> str | None:
        return bearer_token(request) or _text_or_none(body.get("SenderAPIKey"))

    install_template_routes(app, AccountResources(
        engine, read_json_object, sender_key, replayed_header, E.TemplatesRest.of
    ))  # fmt: skip
    install_route_routes(app, AccountResources(
        engine, read_json_object, sender_key, replayed_header, E.RoutesRest.of
    ))  # fmt: skip

    def webhook_sender(
        request: Request, params: dict[str, Any], invalid: ErrorText, too_many: ErrorText
    ) -> SenderContext:
        # The documents list no "missing key" error here: a missing key is an invalid one.
        sender = engine.sending.authenticate(
            bearer_token(request) or _text_or_none(params.get("SenderAPIKey")),
            too_many=too_many,
            missing=invalid,
            invalid=invalid,
        )
        return sender

    @app.get("/healthz", include_in_schema=False)
    async def health() -> JSONResponse:
        return JSONResponse({"ok": True})

    @app.get("/readyz", include_in_schema=False)
    async def ready() -> JSONResponse:
        """200 when the event store, the reporting tables and (at scale) the broker answer
        and every loop of this process runs; 503 with what does not."""
        from engine.runtime.status import readiness

        checks = await asyncio.to_thread(readiness, engine)
        ready = all(check["Ok"] for check in checks)
        return JSONResponse({"Ready": ready, "Checks": checks}, status_code=200 if ready else 503)

    return app


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _uuid_param(value: Any, name: str) -> UUID | None:
    if value is None or value == "":
        return None
    try:
        return UUID(str(value))
    except ValueError:
        raise RequestRejected(Extensions.INVALID_PARAMETER.format(name=name)) from None
