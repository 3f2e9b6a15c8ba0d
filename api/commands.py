"""``/api.php``: the command endpoint of the JangoMail-style API (002, 000).

Parameters come from the query string and from a JSON, form-encoded or multipart body
(both styles appear in the documents' curl examples); ``Command`` picks the handler.
Answers are ``{"Success": true, "ErrorCode": 0, …}`` or
``{"Success": false, "ErrorCode": N, "ErrorMessage": "…"}``.

HTTP status: a command's own documented errors travel with 200, as in the API this
one replaces, whose clients read ``Success``; errors of the endpoint itself (no or bad
credentials, unreadable or oversized body, unknown command, rate limit) and the named
exceptions of 000 that commands without numbered errors answer (InvalidOptionException 400,
DuplicateIPAddressException 409) carry their HTTP status, which is also their ``ErrorCode``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl

import orjson
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import JSONResponse, rejection_for
from api.permissions import require_role
from domain.account import Account
from domain.errors import Command, ErrorText, Extensions, RequestRejected
from engine.accounts.callers import current_request
from engine.accounts.gateway import Gateway
from engine.application import Sendstream
from engine.campaigns.commands import CampaignService
from engine.idempotency import IdempotentCall

if TYPE_CHECKING:
    from engine.runtime.composition import Engine

log = logging.getLogger(__name__)

Handler = Callable[[Account, dict[str, Any]], dict[str, Any]]

_ENDPOINT_ERRORS = {400, 401, 403, 409, 413, 415, 429, 500, 503}


class CommandGroup(Protocol):
    """Commands that wait on the event store, by their documented names."""

    def commands(self) -> Mapping[str, Handler]: ...


@dataclass(frozen=True)
class CommandSpec:
    name: str
    handler: Handler
    # Commands that wait on DNS, key generation or password hashing leave the event loop.
    blocking: bool = False


# The commands that create something and save their answer under an Idempotency-Key
# with it (engine.idempotency.answered). Not the ones whose answer holds a secret shown
# once (EmailGateway.AddAPI, AddSMTP): the store keeps no secret in clear.
IDEMPOTENT_COMMANDS = frozenset({
    "List.Create", "Segment.Create", "Email.Create", "Campaign.Create", "Campaign.Copy",
    "EmailGateway.AddDomain", "EmailGateway.AddWebhook", "Template.Create", "Route.Create",
})  # fmt: skip


def command_table(
    gateway: Gateway,
    campaigns: CampaignService,
    groups: Sequence[CommandGroup],
) -> dict[str, CommandSpec]:
    specs = [
        *(
            CommandSpec(name, handler, blocking=True)
            for group in groups
            for name, handler in group.commands().items()
        ),
        CommandSpec("List.Create", campaigns.create_list, blocking=True),
        CommandSpec("Lists.Get", campaigns.get_lists, blocking=True),
        CommandSpec("List.Delete", campaigns.delete_list, blocking=True),
        CommandSpec("Subscriber.Subscribe", campaigns.subscribe, blocking=True),
        CommandSpec("Subscriber.Update", campaigns.update_subscriber, blocking=True),
        CommandSpec("Subscriber.Unsubscribe", campaigns.unsubscribe, blocking=True),
        CommandSpec("Subscriber.Delete", campaigns.delete_subscriber, blocking=True),
        CommandSpec("Subscribers.Get", campaigns.get_subscribers, blocking=True),
        CommandSpec("Subscribers.Import", campaigns.import_subscribers, blocking=True),
        CommandSpec("Segment.Create", campaigns.create_segment, blocking=True),
        CommandSpec("Segments.Get", campaigns.get_segments, blocking=True),
        CommandSpec("Segment.Delete", campaigns.delete_segment, blocking=True),
        CommandSpec("Segment.Count", campaigns.count_segment, blocking=True),
        CommandSpec("Email.Create", campaigns.create_email, blocking=True),
        CommandSpec("Email.Update", campaigns.update_email, blocking=True),
        CommandSpec("Email.Get", campaigns.get_email, blocking=True),
        CommandSpec("Emails.Get", campaigns.get_emails, blocking=True),
        CommandSpec("Email.Preview", campaigns.preview_email, blocking=True),
        CommandSpec("Campaign.Create", campaigns.create_campaign, blocking=True),
        CommandSpec("Campaign.Update", campaigns.update_campaign, blocking=True),
        CommandSpec("Campaign.Approve", campaigns.approve, blocking=True),
        CommandSpec("Campaign.Cancel", campaigns.cancel, blocking=True),
        CommandSpec("Campaign.Copy", campaigns.copy, blocking=True),
        CommandSpec("Campaign.Pause", campaigns.pause, blocking=True),
        CommandSpec("Campaign.Resume", campaigns.resume, blocking=True),
        CommandSpec("Campaign.Get", campaigns.get_campaign, blocking=True),
        CommandSpec("Campaigns.Get", campaigns.get_campaigns, blocking=True),
        CommandSpec("Campaigns.Delete", campaigns.delete_campaigns, blocking=True),
        CommandSpec("Account.Get", gateway.get_account),
        CommandSpec("Account.Update", gateway.update_account, blocking=True),
        CommandSpec("EmailGateway.AddDomain", gateway.add_domain, blocking=True),
        CommandSpec("EmailGateway.GetDomain", gateway.get_domain),
        CommandSpec("EmailGateway.GetDomains", gateway.get_domains),
        CommandSpec("EmailGateway.UpdateDomain", gateway.update_domain, blocking=True),
        CommandSpec("EmailGateway.DeleteDomain", gateway.delete_domain, blocking=True),
        CommandSpec("EmailGateway.ClearDomainQueue", gateway.clear_domain_queue, blocking=True),
        CommandSpec("EmailGateway.VerifyDomain", gateway.verify_domain, blocking=True),
        CommandSpec("EmailGateway.GetEvents", gateway.get_events, blocking=True),
        CommandSpec("EmailGateway.AggrEvents", gateway.aggregated_events, blocking=True),
        CommandSpec("EmailGateway.DomainStats", gateway.domain_stats, blocking=True),
        CommandSpec("EmailGateway.AddAPI", gateway.add_api, blocking=True),
        CommandSpec("EmailGateway.GetAPIs", gateway.get_apis),
        CommandSpec("EmailGateway.DeleteAPI", gateway.delete_api, blocking=True),
        CommandSpec("EmailGateway.AddSMTP", gateway.add_smtp, blocking=True),
        CommandSpec("EmailGateway.GetSMTPs", gateway.get_smtps),
        CommandSpec("EmailGateway.DeleteSMTP", gateway.delete_smtp, blocking=True),
        CommandSpec("EmailGateway.ResetSMTPPassword", gateway.reset_smtp_password, blocking=True),
    ]
    # Command names are matched without regard to case, as PHP-era clients vary.
    return {spec.name.lower(): spec for spec in specs}


def command_status(error: ErrorText) -> int:
    """The HTTP status ``error`` travels with from ``/api.php``."""
    return error.code if error.code in _ENDPOINT_ERRORS else 200


def command_groups(engine: Engine) -> tuple[CommandGroup, ...]:
    """``engine``'s services that answer commands beside the gateway and campaigns."""
    return (
        engine.suppressions,
        engine.webhooks,
        engine.sending_addresses,
        engine.templates,
        engine.routes,
        engine.users,
        engine.agencies,
        engine.audit,
    )


def engine_commands(engine: Engine) -> dict[str, CommandSpec]:
    """The command table of ``engine``'s services, by lower-case name."""
    return command_table(engine.gateway, engine.campaigns, command_groups(engine))


def failure(error: ErrorText, retry_after: int | None = None) -> JSONResponse:
    status = command_status(error)
    headers = {"Retry-After": str(retry_after)} if retry_after else None
    return JSONResponse(
        {"Success": False, "ErrorCode": error.code, "ErrorMessage": error.message},
        status_code=status,
        headers=headers,
    )


def success(result: dict[str, Any], replayed: bool = False) -> JSONResponse:
    """The answer; ``replayed``: an earlier request's, under the same Idempotency-Key."""
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return JSONResponse({"Success": True, "ErrorCode": 0, **result}, headers=headers)


class CommandEndpoint:
    """ASGI: ``/api.php`` (GET or POST) answered here; everything else passes through."""

    PATH = "/api.php"

    def __init__(
        self,
        app: ASGIApp,
        store: Sendstream,
        gateway: Gateway,
        campaigns: CampaignService,
        groups: Sequence[CommandGroup],
        max_body_bytes: int,
    ) -> None:
        self.app = app
        self.store = store
        self.gateway = gateway
        self.commands = command_table(gateway, campaigns, groups)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.PATH:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "POST"):
            response = JSONResponse(
                {"Success": False, "ErrorCode": 405, "ErrorMessage": "Method not allowed"},
                status_code=405,
                headers={"Allow": "GET, POST"},
            )
        else:
            response = await self.answer(scope, receive)
        await response(scope, receive, send)

    async def answer(self, scope: Scope, receive: Receive) -> JSONResponse:
        try:
            params = await self.read_parameters(scope, receive)
            for name, value in scope["headers"]:
                if name.lower() == b"idempotency-key":
                    params["IdempotencyKey"] = value.decode("latin-1")
            return await self.run(params)
        except RequestRejected as rejected:
            return failure(rejected.errors[0], rejected.retry_after)
        except Exception as error:
            refused = rejection_for(error, log, "/api.php")
            return failure(refused.errors[0], refused.retry_after)

    async def run(self, params: dict[str, Any]) -> JSONResponse:
        name = params.get("Command")
        if not isinstance(name, str) or not name.strip():
            raise RequestRejected(Command.MISSING_COMMAND)
        name = name.strip()
        if name.lower() == "user.login":
            return success(await asyncio.to_thread(self.gateway.login, params))
        spec = self.commands.get(name.lower())
        if spec is None:
            raise RequestRejected(Command.UNKNOWN_COMMAND.format(command=name[:100]))
        given = "IdempotencyKey" in params
        key = params.pop("IdempotencyKey", None)
        if given and spec.name not in IDEMPOTENT_COMMANDS:
            raise RequestRejected(Command.IDEMPOTENCY_NOT_TAKEN.format(command=spec.name))
        if spec.blocking:
            caller = await asyncio.to_thread(self.gateway.identify, params)
        else:
            caller = self.gateway.identify(params)
        require_role(caller, spec.name)
        context = current_request()
        context.caller, context.command = caller, spec.name
        account = caller.account
        if given:
            if not isinstance(key, str):  # JSON null or a number is no key
                raise RequestRejected(Extensions.INVALID_IDEMPOTENCY_KEY)
            call = IdempotentCall(account.id, key, f"/api.php {spec.name}", params)
            result, replayed = await asyncio.to_thread(
                call.perform, self.store, lambda: spec.handler(account, params)
            )
            return success(result, replayed)
        if spec.blocking:
            result = await asyncio.to_thread(spec.handler, account, params)
        else:
            result = spec.handler(account, params)
        return success(result)

    async def read_parameters(self, scope: Scope, receive: Receive) -> dict[str, Any]:
        query = scope.get("query_string", b"")
        try:
            params: dict[str, Any] = dict(parse_qsl(query.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise RequestRejected(Command.MALFORMED_BODY) from None
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        declared = headers.get("content-length", "")
        limit = self.max_body_bytes
        if declared.isdigit() and int(declared) > limit:
            raise RequestRejected(Command.TOO_LARGE.format(limit=limit))
        if content_type == "multipart/form-data":
            try:
                form = await Request(scope, receive).form(max_part_size=limit)
            except (MultiPartException, KeyError):  # no boundary, or a part that ends early
                raise RequestRejected(Command.MALFORMED_BODY) from None
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
            return params
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestRejected(Command.MALFORMED_BODY)
            body += message.get("body", b"")
            if len(body) > limit:
                raise RequestRejected(Command.TOO_LARGE.format(limit=limit))
            if not message.get("more_body", False):
                break
        if not body.strip():
            return params
        if "json" in content_type or (not content_type and body.lstrip()[:1] == b"{"):
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise RequestRejected(Command.MALFORMED_BODY) from None
            if not isinstance(parsed, dict):
                raise RequestRejected(Command.MALFORMED_BODY)
            params.update(parsed)
            return params
        try:
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise RequestRejected(Command.MALFORMED_BODY) from None
        return params
