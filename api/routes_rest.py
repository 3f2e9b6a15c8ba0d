"""``/api/v1/routes``: inbound routes of the sender key's domain (``Route.*`` as REST
resources). ``Domain`` defaults to the key's domain; it may name a subdomain of it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fastapi import FastAPI, Request

from api.errors import JSONResponse
from api.rest_resources import BODY_REQUIRED, AccountResources
from api.schemas import NewRouteResponse, RoutesResponse, ShownRouteResponse
from domain.account import Account, domain_accepts_sender
from domain.errors import RequestRejected, RoutesRest
from engine.application import SenderContext

ROUTES_PATH = "/api/v1/routes"


def install_route_routes(app: FastAPI, resources: AccountResources) -> None:
    commands = resources.engine.routes
    run, sender = resources.run, resources.sender

    def keys(key: SenderContext, domain: str) -> bool:
        """A key has the routes of its own domain and of its subdomains."""
        return domain_accepts_sender(key.domain_name, f"postmaster@{domain}")

    async def own_route(key: SenderContext, owner: Account, route_id: UUID) -> dict[str, Any]:
        shown: dict[str, Any] = await run(lambda: commands.get(owner, {"RouteID": str(route_id)}))
        if not keys(key, shown["Route"]["Domain"]):
            raise RequestRejected(RoutesRest.INVALID_ID)
        return shown

    @app.post(
        ROUTES_PATH,
        response_model=NewRouteResponse,
        operation_id="createRoute",
        summary="Route inbound mail of the key's domain: POST it to a URL, forward or store it",
        tags=["inbound"],
        openapi_extra=BODY_REQUIRED,
    )
    async def create_route(request: Request) -> JSONResponse:
        body = await resources.read_body(request, 64 * 1024)
        key, owner = sender(request, body)
        params = {**body, "Domain": body.get("Domain") or key.domain_name}
        if not keys(key, str(params["Domain"])):
            raise RequestRejected(RoutesRest.INVALID_DOMAIN)
        return await resources.create(
            request, owner, f"POST {ROUTES_PATH}", params, lambda: commands.create(owner, params)
        )

    @app.get(
        ROUTES_PATH,
        response_model=RoutesResponse,
        operation_id="getRoutes",
        summary="The inbound routes of the key's domain",
        tags=["inbound"],
    )
    async def get_routes(request: Request) -> JSONResponse:
        key, owner = sender(request, {})
        listed = await run(lambda: commands.get_all(owner, {}))
        mine = [route for route in listed["Routes"] if keys(key, route["Domain"])]
        return JSONResponse({"TotalRoutes": len(mine), "Routes": mine})

    @app.get(
        ROUTES_PATH + "/{route_id:uuid}",
        response_model=ShownRouteResponse,
        operation_id="getRoute",
        summary="An inbound route",
        tags=["inbound"],
    )
    async def get_route(route_id: UUID, request: Request) -> JSONResponse:
        key, owner = sender(request, {})
        return JSONResponse(await own_route(key, owner, route_id))

    @app.delete(
        ROUTES_PATH + "/{route_id:uuid}",
        response_model=NewRouteResponse,
        operation_id="deleteRoute",
        summary="Delete an inbound route (its domain's mail is refused once none is left)",
        tags=["inbound"],
    )
    async def delete_route(route_id: UUID, request: Request) -> JSONResponse:
        key, owner = sender(request, {})
        await own_route(key, owner, route_id)
        await run(lambda: commands.delete(owner, {"RouteID": str(route_id)}))
        return JSONResponse({"RouteID": str(route_id)})
