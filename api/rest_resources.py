"""What the REST endpoints of an account's stored things (templates, inbound routes) share:
a sender key resolved to its sender and account, commands run off the event loop with their
errors given REST's statuses, and creation under an Idempotency-Key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request

from api.errors import JSONResponse
from domain.account import Account
from domain.errors import ErrorText, RequestRejected, TemplatesRest
from engine.application import SenderContext
from engine.idempotency import IdempotentCall
from engine.runtime.composition import Engine

BODY_REQUIRED = {"requestBody": {"required": True, "content": {"application/json": {}}}}


@dataclass(frozen=True)
class AccountResources:
    engine: Engine
    read_body: Callable[[Request, int], Awaitable[dict[str, Any]]]
    sender_key: Callable[[Request, dict[str, Any]], str | None]
    replayed_header: Callable[[bool], dict[str, str] | None]
    rest_error: Callable[[ErrorText], ErrorText]  # a command's error, with its REST status

    def sender(self, request: Request, body: dict[str, Any]) -> tuple[SenderContext, Account]:
        found = self.engine.sending.authenticate(
            self.sender_key(request, body),
            too_many=TemplatesRest.TOO_MANY_REQUESTS,
            missing=TemplatesRest.MISSING_SENDER_API_KEY,
            invalid=TemplatesRest.INVALID_SENDER_API_KEY,
        )
        return found, self.engine.app.account(found.account_id)

    async def run(self, do: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(do)
        except RequestRejected as rejected:
            raise RequestRejected(*map(self.rest_error, rejected.errors)) from None

    async def create(
        self,
        request: Request,
        owner: Account,
        endpoint: str,
        params: dict[str, Any],
        create: Callable[[], dict[str, Any]],
    ) -> JSONResponse:
        """``create()``'s answer; under an Idempotency-Key, the first answer of the same
        request (with ``Idempotent-Replayed``), which ``create`` saves with its effects."""
        key = request.headers.get("idempotency-key")
        if key is None:
            return JSONResponse(await self.run(create))
        call = IdempotentCall(owner.id, key, endpoint, params)
        answer, replayed = await self.run(lambda: call.perform(self.engine.app, create))
        return JSONResponse(answer, headers=self.replayed_header(replayed))
