"""Who is calling: the account, the user or key acting for it, and its role.

The caller of the request being served lives in a context variable, so that what the
request causes (the events it saves, in any thread ``asyncio.to_thread`` starts for it)
can say who did it and which request it was, without every service passing it along.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import Token
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

from adapters.event_metadata import REQUEST
from domain.account import Account
from domain.users import Area, Role, role_may


@dataclass(frozen=True)
class Caller:
    account: Account
    role: Role
    # "account-key", "role-key", "session", "sender-key", "console" or "cli".
    via: str
    user_id: UUID | None = None  # None for a key; the account's id for its own login
    name: str = ""  # the username, or the key's description
    key_id: UUID | None = None
    acting_agency_id: UUID | None = None  # set when an agency acts on this client account

    def may(self, areas: frozenset[Area]) -> bool:
        return role_may(self.role, areas)


@dataclass
class RequestContext:
    """What the events a request causes carry as metadata (``adapters.event_metadata``)."""

    request_id: str = ""  # as the answer's X-Request-ID says it: the client's own, if given
    request_key: str = ""  # made here for every request: what the audit trail groups by
    command: str = ""
    address: str = ""
    caller: Caller | None = field(default=None)
    # A sender API key's request (the REST endpoints): its account and key.
    sender_account_id: UUID | None = None
    sender_key_id: UUID | None = None

    def note_sender(self, account_id: UUID, key_id: UUID) -> None:
        self.sender_account_id, self.sender_key_id = account_id, key_id

    def metadata(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        if self.request_id:
            data["request_id"] = self.request_id
        if self.request_key:
            data["request_key"] = self.request_key
        if self.command:
            data["command"] = self.command
        if self.address:
            data["address"] = self.address
        if self.sender_account_id is not None:
            data["account_id"] = str(self.sender_account_id)
            data["via"] = "sender-key"
            data["key_id"] = str(self.sender_key_id)
        caller = self.caller
        if caller is not None:
            data["account_id"] = str(caller.account.id)
            data["via"] = caller.via
            data["role"] = caller.role.value
            if caller.user_id is not None:
                data["user_id"] = str(caller.user_id)
            if caller.key_id is not None:
                data["key_id"] = str(caller.key_id)
            if caller.name:
                data["actor"] = caller.name
            if caller.acting_agency_id is not None:
                data["agency_id"] = str(caller.acting_agency_id)
        return data


def current_request() -> RequestContext:
    """The request being served, made on first use (and kept for the rest of the context)."""
    context = REQUEST.get()
    if not isinstance(context, RequestContext):
        context = RequestContext()
        REQUEST.set(context)
    return context


def begin_request(request_id: str, address: str, command: str) -> Token[Any]:
    """At the start of a request (``api.metrics``, the outermost layer): a fresh context,
    whose ``command`` is the method and route until ``/api.php`` names its command. Its
    key is ours whatever id the client gave: two requests never share an audit entry."""
    return REQUEST.set(
        RequestContext(
            request_id=request_id, request_key=uuid4().hex, address=address, command=command
        )
    )


@contextmanager
def acting_as(caller: Caller, command: str = "", request_id: str = "") -> Iterator[None]:
    """Run what follows as ``caller`` (the command line): it is allowed what the caller's
    role allows, and the events it causes name the caller."""
    context = RequestContext(
        request_id=request_id, request_key=uuid4().hex, command=command, caller=caller
    )
    token = REQUEST.set(context)
    try:
        yield
    finally:
        REQUEST.reset(token)
