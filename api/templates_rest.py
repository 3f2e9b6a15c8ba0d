"""``/api/v1/templates``: the ``Template.*`` commands as REST resources, for the sender key
of an account (as sending from a template takes it).

``POST`` creates, ``GET`` lists, ``GET``/``PUT``/``DELETE /api/v1/templates/{TemplateID}``
show, change (a new version, or ``Version`` alone to make one active again) and delete.
Same rules and same errors as the commands, with REST's statuses (``TemplatesRest``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any
from uuid import UUID

from fastapi import FastAPI, Request

from api.errors import JSONResponse
from api.schemas import (
    DeletedTemplateResponse,
    NewTemplateResponse,
    ShownTemplateResponse,
    TemplatesResponse,
)
from domain.account import Account
from domain.errors import Extensions, RequestRejected, TemplatesRest
from engine.idempotency import IdempotentCall
from engine.runtime.composition import Engine

TEMPLATES_PATH = "/api/v1/templates"
_BODY_LIMIT = 1024 * 1024  # a template's parts hold 512 KiB at most
_BODY = {"requestBody": {"required": True, "content": {"application/json": {}}}}


def install_template_routes(
    app: FastAPI,
    engine: Engine,
    read_body: Callable[[Request, int], Any],
    sender_key: Callable[[Request, dict[str, Any]], str | None],
    replayed_header: Callable[[bool], dict[str, str] | None],
) -> None:
    commands = engine.templates

    def account(request: Request, body: dict[str, Any]) -> Account:
        sender = engine.sending.authenticate(
            sender_key(request, body),
            too_many=TemplatesRest.TOO_MANY_REQUESTS,
            missing=TemplatesRest.MISSING_SENDER_API_KEY,
            invalid=TemplatesRest.INVALID_SENDER_API_KEY,
        )
        return engine.app.account(sender.account_id)

    def typed(body: dict[str, Any]) -> dict[str, Any]:
        """JSON has types, unlike /api.php's form fields: a name or a part is text, a
        version a whole number (the schema's promise, kept before the command reads it)."""
        for name in ("TemplateName", "Subject", "HTMLContent", "PlainContent"):
            if body.get(name) is not None and not isinstance(body[name], str):
                raise RequestRejected(Extensions.INVALID_PARAMETER.format(name=name))
        version = body.get("Version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise RequestRejected(Extensions.INVALID_PARAMETER.format(name="Version"))
        return body

    async def run(do: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(do)
        except RequestRejected as rejected:
            raise RequestRejected(*(TemplatesRest.of(e) for e in rejected.errors)) from None

    @app.post(
        TEMPLATES_PATH,
        response_model=NewTemplateResponse,
        operation_id="createTemplate",
        summary="Store a template (its first version)",
        tags=["templates"],
        openapi_extra=_BODY,
    )
    async def create_template(request: Request) -> JSONResponse:
        body = await read_body(request, _BODY_LIMIT)
        owner = account(request, body)
        typed(body)
        key = request.headers.get("idempotency-key")
        if key is None:
            return JSONResponse(await run(lambda: commands.create(owner, body)))
        call = IdempotentCall(owner.id, key, f"POST {TEMPLATES_PATH}", body)
        answer, replayed = await run(
            lambda: call.perform(engine.app, lambda: commands.create(owner, body))
        )
        return JSONResponse(answer, headers=replayed_header(replayed))

    @app.get(
        TEMPLATES_PATH,
        response_model=TemplatesResponse,
        operation_id="getTemplates",
        summary="The account's templates (each with its active version)",
        tags=["templates"],
    )
    async def get_templates(request: Request) -> JSONResponse:
        owner = account(request, {})
        return JSONResponse(await run(lambda: commands.get_all(owner, {})))

    @app.get(
        TEMPLATES_PATH + "/{template_id:uuid}",
        response_model=ShownTemplateResponse,
        operation_id="getTemplate",
        summary="A template with every version",
        tags=["templates"],
    )
    async def get_template(template_id: UUID, request: Request) -> JSONResponse:
        owner = account(request, {})
        params = {"TemplateID": str(template_id)}
        return JSONResponse(await run(lambda: commands.get(owner, params)))

    @app.put(
        TEMPLATES_PATH + "/{template_id:uuid}",
        response_model=NewTemplateResponse,
        operation_id="updateTemplate",
        summary="New content (a new version, made active), Version alone, or a new name",
        tags=["templates"],
        openapi_extra=_BODY,
    )
    async def update_template(template_id: UUID, request: Request) -> JSONResponse:
        body = await read_body(request, _BODY_LIMIT)
        owner = account(request, body)
        params = {**typed(body), "TemplateID": str(template_id)}
        return JSONResponse(await run(lambda: commands.update(owner, params)))

    @app.delete(
        TEMPLATES_PATH + "/{template_id:uuid}",
        response_model=DeletedTemplateResponse,
        operation_id="deleteTemplate",
        summary="Delete a template (messages sent from it keep their content)",
        tags=["templates"],
    )
    async def delete_template(template_id: UUID, request: Request) -> JSONResponse:
        owner = account(request, {})
        params = {"TemplateID": str(template_id)}
        await run(lambda: commands.delete(owner, params))
        return JSONResponse({"TemplateID": str(template_id)})
