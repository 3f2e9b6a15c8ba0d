"""``/api/v1/templates``: the ``Template.*`` commands as REST resources, for the sender key
of an account (as sending from a template takes it).

``POST`` creates, ``GET`` lists, ``GET``/``PUT``/``DELETE /api/v1/templates/{TemplateID}``
show, change (a new version, or ``Version`` alone to make one active again) and delete.
Same rules and same errors as the commands, with REST's statuses (``TemplatesRest``).
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import FastAPI, Request

from api.errors import JSONResponse
from api.rest_resources import BODY_REQUIRED, AccountResources
from api.schemas import (
    DeletedTemplateResponse,
    NewTemplateResponse,
    ShownTemplateResponse,
    TemplatesResponse,
)
from domain.account import Account
from domain.errors import Extensions, RequestRejected

TEMPLATES_PATH = "/api/v1/templates"
_BODY_LIMIT = 1024 * 1024  # a template's parts hold 512 KiB at most


def install_template_routes(app: FastAPI, resources: AccountResources) -> None:
    commands = resources.engine.templates
    run = resources.run

    def account(request: Request, body: dict[str, Any]) -> Account:
        return resources.sender(request, body)[1]

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

    @app.post(
        TEMPLATES_PATH,
        response_model=NewTemplateResponse,
        operation_id="createTemplate",
        summary="Store a template (its first version)",
        tags=["templates"],
        openapi_extra=BODY_REQUIRED,
    )
    async def create_template(request: Request) -> JSONResponse:
        body = await resources.read_body(request, _BODY_LIMIT)
        owner = account(request, body)
        typed(body)
        return await resources.create(
            request, owner, f"POST {TEMPLATES_PATH}", body, lambda: commands.create(owner, body)
        )

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
        openapi_extra=BODY_REQUIRED,
    )
    async def update_template(template_id: UUID, request: Request) -> JSONResponse:
        body = await resources.read_body(request, _BODY_LIMIT)
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
