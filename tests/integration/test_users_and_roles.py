"""Users, roles, role-limited keys and agencies over ``POST /api.php``, and
``sendstream bootstrap --agency``: who may run what, and that a refusal changes nothing."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.users import ROLE_AREAS, Area
from domain.users import Role as UserRole
from engine.accounts.callers import Caller, acting_as
from engine.runtime.composition import Engine
from engine.runtime.composition import Role as EngineRole
from tests.integration.conftest import wait_for
from tests.integration.test_command_api import API_ONLY, Tenant, failed, ok
from tests.services import embedded_environment

Client = Callable[[Engine], httpx.AsyncClient]

PASSWORD = "correct horse battery"
FORBIDDEN = "The {role} role may not run {command}."
OWNER_ONLY = "Only an owner may make, change or delete an owner."
DUPLICATE = "The supplied Username is already in use."
INVALID_CREDENTIALS = "Invalid SessionID or APIKey."
LOGIN_FAILED = "Username and password do not match."
INVALID_AGENCY = "The specified Master Agency Account could not be found."
NOT_AN_AGENCY = "This account is a client of an agency and cannot have clients."
INVALID_ROLE = "Invalid Role: use owner, admin, developer, marketer or viewer."
WEAK_PASSWORD = "The Password must be 12 to 1024 characters."
BAD_DESCRIPTION = "Missing or invalid 'Description' parameter"
LAST_OWNER = "The account's own login stays its owner; it cannot be changed here."
ROOT = Path(__file__).resolve().parents[2]


def missing(name: str) -> str:
    return f"A required field was not supplied: {name}."


class Actor:
    """Whoever calls ``/api.php`` with the given credentials (a key or a session, and the
    client account an agency names)."""

    def __init__(self, client: httpx.AsyncClient, **credentials: str) -> None:
        self.client = client
        self.credentials = credentials

    async def call(self, command: str, **params: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/api.php", json={**self.credentials, "Command": command, **params}
        )
        assert response.headers["content-type"].startswith("application/json")
        body: dict[str, Any] = response.json()
        body["_status"] = response.status_code
        return body

    def on(self, client_account_id: Any) -> Actor:
        """The same credentials, acting on an agency's client account."""
        return Actor(self.client, **self.credentials, ClientAccountID=client_account_id)


def forbidden(answer: dict[str, Any], role: str, command: str) -> None:
    failed(answer, 403, FORBIDDEN.format(role=role, command=command), 403)


async def log_in(client: httpx.AsyncClient, username: str, password: str) -> dict[str, Any]:
    return await Actor(client).call("User.Login", Username=username, Password=password)


async def add_user(tenant: Tenant, role: str, username: str) -> dict[str, Any]:
    made: dict[str, Any] = ok(
        await tenant.call("User.Create", Username=username, Password=PASSWORD, Role=role)
    )["User"]
    return made


async def member(tenant: Tenant, role: str, username: str) -> tuple[dict[str, Any], Actor]:
    """A user of ``tenant`` with ``role``, logged in: the user as made, and its session."""
    user = await add_user(tenant, role, username)
    session = ok(await log_in(tenant.client, username, PASSWORD))
    assert (session["UserID"], session["Role"]) == (user["UserID"], role)
    return user, Actor(tenant.client, SessionID=session["SessionID"])


async def usernames(tenant: Tenant) -> list[str]:
    answer = ok(await tenant.call("Users.Get"))
    assert answer["TotalCount"] == len(answer["Users"])
    return [user["Username"] for user in answer["Users"]]


async def list_names(actor: Tenant | Actor) -> list[str]:
    return [entry["ListName"] for entry in ok(await actor.call("Lists.Get"))["Lists"]]


async def domain_names(actor: Tenant | Actor) -> list[str]:
    return [d["DomainName"] for d in ok(await actor.call("EmailGateway.GetDomains"))["Domains"]]


def recorded(tenant: Tenant) -> int:
    """The last event the installation recorded: a refusal records none."""
    position: int = tenant.engine.app.recorder.max_notification_id() or 0
    return position


@pytest.fixture
def tenants(make_engine: Callable[..., Engine], api_client: Client) -> tuple[Tenant, Tenant]:
    engine = make_engine(roles=API_ONLY)
    client = api_client(engine)
    return Tenant(engine, client, "alpha.example"), Tenant(engine, client, "beta.example")


# Users.


async def test_users_of_every_role_are_made_and_listed_with_the_accounts_own_login(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, beta = tenants
    alpha.engine.gateway.set_login(alpha.account_id, "alice@alpha.example", PASSWORD)
    made = []
    for role in UserRole:
        # Roles are read whatever their case and surrounding spaces.
        answer = ok(await alpha.call(
            "User.Create", Username=f" {role.value}@alpha.example ", Password=PASSWORD,
            Role=f" {role.value.title()} ",
        ))  # fmt: skip
        user = answer["User"]
        assert set(user) == {"UserID", "Username", "Role", "CreatedAt", "CreatedBy"}
        assert (user["Username"], user["Role"], user["CreatedBy"]) == (
            f"{role.value}@alpha.example",
            role.value,
            "account key",
        )
        assert UUID(user["UserID"]) != alpha.account_id and user["CreatedAt"].endswith("Z")
        made.append(user)
    listed = ok(await alpha.call("Users.Get"))
    own = listed["Users"][0]
    assert (own["UserID"], own["Username"], own["Role"], own["CreatedBy"]) == (
        str(alpha.account_id), "alice@alpha.example", "owner", "sendstream bootstrap"
    )  # fmt: skip
    assert listed["Users"][1:] == made and listed["TotalCount"] == 6
    # Another account sees none of them (it has no login of its own either).
    assert ok(await beta.call("Users.Get"))["Users"] == []

    before = recorded(alpha)
    for tenant, username in (
        (alpha, "VIEWER@Alpha.Example"),  # whatever the case
        (beta, "viewer@alpha.example"),  # across accounts
        (beta, "Alice@alpha.example"),  # the account's own login
    ):
        failed(
            await tenant.call("User.Create", Username=username, Password=PASSWORD, Role="viewer"),
            3,
            DUPLICATE,
        )
    bad_names: list[Any] = ["ab", "-bob@alpha.example", "bob smith", "bob!@alpha.example",
                            "bøb@alpha.example", "bob\n@alpha.example", "b" * 129, "b" * 100_000,
                            7]  # fmt: skip
    for bad_name in bad_names:
        failed(
            await alpha.call("User.Create", Username=bad_name, Password=PASSWORD, Role="viewer"),
            4,
            "Invalid Username.",
        )
    bad_roles: list[Any] = ["superuser", "owners", "root", 1, True, ["admin"], {"Role": "admin"}]
    for bad_role in bad_roles:
        failed(
            await alpha.call("User.Create", Username="carol@alpha.example", Password=PASSWORD,
                             Role=bad_role),
            5,
            INVALID_ROLE,
        )  # fmt: skip
    weak: list[Any] = ["x" * 11, "x" * 1025, [PASSWORD], {"Password": PASSWORD}, 123456789012345]
    for bad_password in weak:
        failed(
            await alpha.call("User.Create", Username="carol@alpha.example", Password=bad_password,
                             Role="viewer"),
            6,
            WEAK_PASSWORD,
        )  # fmt: skip
    complete = {"Username": "carol@alpha.example", "Password": PASSWORD, "Role": "viewer"}
    for name in ("Username", "Password", "Role"):
        without = {k: v for k, v in complete.items() if k != name}
        failed(await alpha.call("User.Create", **without), 1, missing(name))
        failed(await alpha.call("User.Create", **without, **{name: ""}), 1, missing(name))
        failed(await alpha.call("User.Create", **without, **{name: None}), 1, missing(name))
    no_names: list[Any] = [["carol@alpha.example"], {"a": 1}, "   ", "carol\x00@alpha.example"]
    for no_name in no_names:
        failed(
            await alpha.call("User.Create", Username=no_name, Password=PASSWORD, Role="viewer"),
            1,
            missing("Username"),
        )
    assert recorded(alpha) == before  # nothing was recorded
    assert ok(await alpha.call("Users.Get")) == listed
    assert ok(await beta.call("Users.Get"))["Users"] == []
    refused = await log_in(alpha.client, "carol@alpha.example", PASSWORD)
    failed(refused, 401, LOGIN_FAILED, 401)


async def test_the_same_username_asked_for_by_two_accounts_at_once_is_given_once(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, beta = tenants
    answers = await asyncio.gather(*(
        tenant.call("User.Create", Username=name, Password=PASSWORD, Role="viewer")
        for tenant, name in ((alpha, "dan@shared.example"), (beta, "DAN@shared.example"))
    ))  # fmt: skip
    made = [answer for answer in answers if answer["Success"]]
    assert len(made) == 1, answers
    for answer in answers:
        if not answer["Success"]:
            failed(answer, 3, DUPLICATE)
    owner = alpha if answers[0]["Success"] else beta
    assert await usernames(owner) == [made[0]["User"]["Username"]]
    assert await usernames(beta if owner is alpha else alpha) == []
    session = ok(await log_in(alpha.client, "dan@shared.example", PASSWORD))
    assert (session["AccountID"], session["UserID"]) == (
        str(owner.account_id),
        made[0]["User"]["UserID"],
    )


# Logging in, and what each role may run.

AREA_COMMANDS: list[tuple[Area, str, dict[str, Any]]] = [
    (Area.READ, "Lists.Get", {}),
    (Area.MARKETING, "List.Create", {"ListName": "Made by a session"}),
    (Area.SENDING, "EmailGateway.AddDomain", {"DomainName": "news.alpha.example"}),
    (Area.USERS, "User.Create",
     {"Username": "made@alpha.example", "Password": PASSWORD, "Role": "viewer"}),
    (Area.ACCOUNT, "Account.Update", {"TimeZone": "Europe/Paris"}),
]  # fmt: skip


async def account_state(tenant: Tenant) -> dict[str, Any]:
    """What the commands of ``AREA_COMMANDS`` change, read with the account key."""
    return {
        Area.MARKETING: await list_names(tenant),
        Area.SENDING: await domain_names(tenant),
        Area.USERS: await usernames(tenant),
        Area.ACCOUNT: ok(await tenant.call("Account.Get"))["Account"]["TimeZone"],
    }


@pytest.mark.parametrize("role", list(UserRole), ids=[role.value for role in UserRole])
async def test_each_role_runs_what_its_areas_grant_and_is_refused_the_rest(
    tenants: tuple[Tenant, Tenant], role: UserRole
) -> None:
    alpha, _ = tenants
    username = f"{role.value}.user@alpha.example"
    user = await add_user(alpha, role.value, username)
    session = ok(await log_in(alpha.client, username.upper(), PASSWORD))
    assert set(session) == {"Success", "ErrorCode", "SessionID", "ExpiresAt", "AccountID",
                            "UserID", "Role", "_status"}  # fmt: skip
    assert session["SessionID"].startswith("ses_") and session["ExpiresAt"].endswith("Z")
    assert (session["AccountID"], session["UserID"], session["Role"]) == (
        str(alpha.account_id), user["UserID"], role.value
    )  # fmt: skip
    actor = Actor(alpha.client, SessionID=session["SessionID"])
    changed: dict[Area, Callable[[Any], Any]] = {
        Area.MARKETING: lambda state: [*state, "Made by a session"],
        Area.SENDING: lambda state: [*state, "news.alpha.example"],
        Area.USERS: lambda state: [*state, "made@alpha.example"],
        Area.ACCOUNT: lambda state: "Europe/Paris",
    }
    for area, command, params in AREA_COMMANDS:
        before = await account_state(alpha)
        answer = await actor.call(command, **params)
        expected = dict(before)
        if area in ROLE_AREAS[role]:
            ok(answer)
            if area is Area.READ:
                assert answer["Lists"] == []
            else:
                expected[area] = changed[area](before[area])
        else:
            forbidden(answer, role.value, command)
        assert await account_state(alpha) == expected, (role, command)
    # Who made a user: the session's username.
    if Area.USERS in ROLE_AREAS[role]:
        made = ok(await alpha.call("Users.Get"))["Users"][-1]
        assert (made["Username"], made["CreatedBy"]) == ("made@alpha.example", username)


def test_the_role_areas_are_the_documented_ones() -> None:
    assert {role.value: sorted(areas) for role, areas in ROLE_AREAS.items()} == {
        "owner": ["account", "marketing", "read", "sending", "users"],
        "admin": ["marketing", "read", "sending", "users"],
        "developer": ["read", "sending"],
        "marketer": ["marketing", "read"],
        "viewer": ["read"],
    }


async def test_the_accounts_own_login_is_its_owner(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = tenants
    alpha.engine.gateway.set_login(alpha.account_id, "alice@alpha.example", PASSWORD)
    session = ok(await log_in(alpha.client, "Alice@Alpha.Example", PASSWORD))
    assert (session["AccountID"], session["UserID"], session["Role"]) == (
        str(alpha.account_id), str(alpha.account_id), "owner"
    )  # fmt: skip
    owner = Actor(alpha.client, SessionID=session["SessionID"])
    ok(await owner.call("Account.Update", TimeZone="Europe/Paris"))
    made = await owner.call("User.Create", Username="ann@alpha.example", Password=PASSWORD,
                            Role="owner")  # fmt: skip
    assert ok(made)["User"]["CreatedBy"] == "alice@alpha.example"
    failed(await log_in(alpha.client, "alice@alpha.example", "wrong password!"), 401,
           LOGIN_FAILED, 401)  # fmt: skip
    failed(await log_in(alpha.client, "alice@alpha.example", ""), 400, missing("Password"), 400)
    failed(await log_in(alpha.client, "", PASSWORD), 400, missing("Username"), 400)


# Admins and owners.


async def test_an_admin_manages_every_role_but_the_owners(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, _ = tenants
    owner_user = await add_user(alpha, "owner", "olga@alpha.example")
    _, admin = await member(alpha, "admin", "adam@alpha.example")
    made = {}
    for role in ("developer", "marketer", "viewer", "admin"):
        answer = ok(await admin.call("User.Create", Username=f"{role}@alpha.example",
                                     Password=PASSWORD, Role=role))  # fmt: skip
        assert answer["User"]["CreatedBy"] == "adam@alpha.example"
        made[role] = answer["User"]["UserID"]
    everyone = await usernames(alpha)
    before = recorded(alpha)

    failed(await admin.call("User.Create", Username="otto@alpha.example", Password=PASSWORD,
                            Role="owner"), 7, OWNER_ONLY)  # fmt: skip
    for params in ({"Role": "viewer"}, {"Password": "a new password!"},
                   {"Role": "owner"}):  # fmt: skip
        failed(await admin.call("User.Update", UserID=owner_user["UserID"], **params), 7,
               OWNER_ONLY)  # fmt: skip
    failed(await admin.call("User.Delete", UserID=owner_user["UserID"]), 7, OWNER_ONLY)
    # Nor may an admin promote anyone, itself included, to owner.
    for user_id in (made["viewer"], made["admin"]):
        failed(await admin.call("User.Update", UserID=user_id, Role="owner"), 7, OWNER_ONLY)
    assert recorded(alpha) == before
    assert await usernames(alpha) == everyone
    roles = {u["Username"]: u["Role"] for u in ok(await alpha.call("Users.Get"))["Users"]}
    assert roles["olga@alpha.example"] == "owner" and roles["viewer@alpha.example"] == "viewer"
    ok(await log_in(alpha.client, "olga@alpha.example", PASSWORD))  # the password is unchanged

    changed = ok(await admin.call("User.Update", UserID=made["viewer"], Role="marketer"))
    assert changed["User"]["Role"] == "marketer"
    deleted = ok(await admin.call("User.Delete", UserID=made["developer"]))
    assert {k: v for k, v in deleted.items() if k not in ("Success", "ErrorCode", "_status")} == {
        "UserID": made["developer"], "Deleted": True
    }  # fmt: skip
    assert "developer@alpha.example" not in await usernames(alpha)
    # The trail is the administrators': an admin reads it, a developer does not.
    ok(await admin.call("Account.AuditLog"))
    _, developer = await member(alpha, "developer", "dev2@alpha.example")
    forbidden(await developer.call("Account.AuditLog"), "developer", "Account.AuditLog")

    # An owner may do all of it.
    owner = Actor(alpha.client, SessionID=ok(await log_in(alpha.client, "olga@alpha.example",
                                                           PASSWORD))["SessionID"])  # fmt: skip
    promoted = ok(await owner.call("User.Update", UserID=made["viewer"], Role="owner"))
    assert promoted["User"]["Role"] == "owner"
    ok(await owner.call("User.Create", Username="otto@alpha.example", Password=PASSWORD,
                        Role="owner"))  # fmt: skip
    ok(await owner.call("User.Update", UserID=made["viewer"], Role="viewer"))
    ok(await owner.call("User.Delete", UserID=made["admin"]))
    roles = {u["Username"]: u["Role"] for u in ok(await alpha.call("Users.Get"))["Users"]}
    assert roles == {
        "olga@alpha.example": "owner", "adam@alpha.example": "admin",
        "marketer@alpha.example": "marketer", "viewer@alpha.example": "viewer",
        "dev2@alpha.example": "developer", "otto@alpha.example": "owner",
    }  # fmt: skip


# Sessions follow the user.


async def test_changes_to_a_user_reach_its_sessions_at_once(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = tenants
    user, session = await member(alpha, "viewer", "dana@alpha.example")
    user_id = user["UserID"]
    forbidden(await session.call("List.Create", ListName="News"), "viewer", "List.Create")

    # A new role counts from the session's next request.
    ok(await alpha.call("User.Update", UserID=user_id, Role="marketer"))
    ok(await session.call("List.Create", ListName="News"))
    ok(await alpha.call("User.Update", UserID=user_id, Role="viewer"))
    forbidden(await session.call("List.Create", ListName="More"), "viewer", "List.Create")
    assert await list_names(alpha) == ["News"]

    # A new password ends the sessions so far; the old password no longer logs in.
    changed = ok(await alpha.call("User.Update", UserID=user_id, Password="a brand new secret"))
    assert changed["User"]["Role"] == "viewer"  # the role is left as it was
    failed(await session.call("Lists.Get"), 401, INVALID_CREDENTIALS, 401)
    failed(await log_in(alpha.client, "dana@alpha.example", PASSWORD), 401, LOGIN_FAILED, 401)
    renewed = ok(await log_in(alpha.client, "dana@alpha.example", "a brand new secret"))
    assert (renewed["UserID"], renewed["Role"]) == (user_id, "viewer")

    # A deleted user's sessions end, it no longer logs in, and its name is free again.
    _, other_session = await member(alpha, "marketer", "eve@alpha.example")
    eve = next(u for u in ok(await alpha.call("Users.Get"))["Users"]
               if u["Username"] == "eve@alpha.example")  # fmt: skip
    ok(await alpha.call("User.Delete", UserID=eve["UserID"]))
    failed(await other_session.call("Lists.Get"), 401, INVALID_CREDENTIALS, 401)
    failed(await log_in(alpha.client, "eve@alpha.example", PASSWORD), 401, LOGIN_FAILED, 401)
    assert "eve@alpha.example" not in await usernames(alpha)
    failed(await alpha.call("User.Delete", UserID=eve["UserID"]), 2, "Invalid UserID.")
    failed(await alpha.call("User.Update", UserID=eve["UserID"], Role="viewer"), 2,
           "Invalid UserID.")  # fmt: skip
    # Taken again, by another account: the login is the new user's.
    again = ok(await beta.call("User.Create", Username="EVE@alpha.example",
                               Password="another password", Role="developer"))["User"]  # fmt: skip
    assert again["UserID"] != eve["UserID"]
    answer = ok(await log_in(alpha.client, "eve@alpha.example", "another password"))
    assert (answer["AccountID"], answer["UserID"], answer["Role"]) == (
        str(beta.account_id), again["UserID"], "developer"
    )  # fmt: skip
    failed(await alpha.call("User.Create", Username="eve@alpha.example", Password=PASSWORD,
                            Role="viewer"), 3, DUPLICATE)  # fmt: skip
    # The old session stays ended, though its user's name lives again.
    failed(await other_session.call("Lists.Get"), 401, INVALID_CREDENTIALS, 401)


async def test_users_are_changed_only_in_their_own_account(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = tenants
    alpha.engine.gateway.set_login(alpha.account_id, "alice@alpha.example", PASSWORD)
    user = await add_user(alpha, "viewer", "dana@alpha.example")
    listed = ok(await alpha.call("Users.Get"))
    before = recorded(alpha)
    # The account's own login is changed with ``sendstream`` commands, not here.
    failed(await alpha.call("User.Update", UserID=str(alpha.account_id), Role="viewer"), 8,
           LAST_OWNER)  # fmt: skip
    failed(await alpha.call("User.Update", UserID=str(alpha.account_id),
                            Password="a brand new secret"), 8, LAST_OWNER)  # fmt: skip
    failed(await alpha.call("User.Delete", UserID=str(alpha.account_id)), 8, LAST_OWNER)
    # Another account's user, and ids of nothing at all, are the same: not found.
    for user_id in (user["UserID"], str(uuid.uuid4()), "not-an-id", 12, str(alpha.account_id)):
        failed(await beta.call("User.Update", UserID=user_id, Role="owner"), 2, "Invalid UserID.")
        failed(await beta.call("User.Delete", UserID=user_id), 2, "Invalid UserID.")
    for command in ("User.Update", "User.Delete"):
        failed(await alpha.call(command, Role="viewer"), 1, missing("UserID"))
        failed(await alpha.call(command, UserID="", Role="viewer"), 1, missing("UserID"))
    failed(await alpha.call("User.Update", UserID=user["UserID"]), 1, missing("Role"))
    failed(await alpha.call("User.Update", UserID=user["UserID"], Role="nope"), 5, INVALID_ROLE)
    failed(await alpha.call("User.Update", UserID=user["UserID"], Password="short"), 6,
           WEAK_PASSWORD)  # fmt: skip
    failed(await alpha.call("User.Update", UserID=user["UserID"], Password=[PASSWORD]), 6,
           WEAK_PASSWORD)  # fmt: skip
    assert recorded(alpha) == before
    assert ok(await alpha.call("Users.Get")) == listed
    ok(await log_in(alpha.client, "alice@alpha.example", PASSWORD))
    ok(await log_in(alpha.client, "dana@alpha.example", PASSWORD))


async def test_a_session_the_new_password_gives_works_at_once(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, _ = tenants
    user = await add_user(alpha, "viewer", "dana@alpha.example")
    # Several rounds: each is one second or less, and any that falls within a second shows it.
    for round_ in range(10):
        password = f"new password number {round_}"
        ok(await alpha.call("User.Update", UserID=user["UserID"], Password=password))
        session = ok(await log_in(alpha.client, "dana@alpha.example", password))
        ok(await Actor(alpha.client, SessionID=session["SessionID"]).call("Lists.Get"))


async def test_users_made_at_once_in_one_account_are_all_made(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, _ = tenants
    names = [f"user{n}@alpha.example" for n in range(6)]
    answers = await asyncio.gather(*(
        alpha.call("User.Create", Username=name, Password=PASSWORD, Role="viewer")
        for name in names
    ))  # fmt: skip
    assert [answer.get("ErrorMessage") for answer in answers] == [None] * 6
    assert sorted(await usernames(alpha)) == names


# Keys that act with one role.


async def test_role_limited_keys(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = tenants
    issued = ok(await alpha.call("Account.AddAPIKey", Role="Viewer", Description=" Dashboard "))
    assert set(issued) == {"Success", "ErrorCode", "KeyID", "APIKey", "Role", "_status"}
    assert issued["Role"] == "viewer" and issued["APIKey"].startswith("acc_")
    key = Actor(alpha.client, APIKey=issued["APIKey"])
    assert ok(await key.call("Lists.Get"))["Lists"] == []
    assert await domain_names(key) == ["alpha.example"]
    before = recorded(alpha)
    forbidden(await key.call("List.Create", ListName="News"), "viewer", "List.Create")
    forbidden(await key.call("Account.AddAPIKey", Role="owner", Description="x"), "viewer",
              "Account.AddAPIKey")  # fmt: skip
    assert recorded(alpha) == before
    assert await list_names(alpha) == []

    listed = ok(await alpha.call("Account.GetAPIKeys"))
    assert listed["TotalCount"] == 1
    (shown,) = listed["APIKeys"]
    assert set(shown) == {"KeyID", "Key", "Role", "Description", "IssuedAt", "IssuedBy"}
    assert shown["IssuedBy"] == "account key"  # who made it (here: the account's own key)
    assert (shown["KeyID"], shown["Key"], shown["Role"], shown["Description"]) == (
        issued["KeyID"], issued["APIKey"][:10] + "…", "viewer", "Dashboard"
    )  # fmt: skip
    assert issued["APIKey"] not in json.dumps(listed)  # only a hint is ever shown again
    assert ok(await key.call("Account.GetAPIKeys"))["APIKeys"] == listed["APIKeys"]
    assert ok(await beta.call("Account.GetAPIKeys"))["APIKeys"] == []

    # Refusals: nothing is issued or revoked.
    for params, code, message in (
        ({"Role": "viewer"}, 10, BAD_DESCRIPTION),
        ({"Role": "viewer", "Description": "  "}, 10, BAD_DESCRIPTION),
        ({"Role": "viewer", "Description": "x" * 256}, 10, BAD_DESCRIPTION),
        ({"Role": "viewer", "Description": ["x"]}, 10, BAD_DESCRIPTION),
        ({"Description": "CI"}, 1, missing("Role")),
        ({"Description": "CI", "Role": "god"}, 5, INVALID_ROLE),
        ({"Description": "CI", "Role": 3}, 5, INVALID_ROLE),
    ):  # fmt: skip
        failed(await alpha.call("Account.AddAPIKey", **params), code, message)
    failed(await alpha.call("Account.DeleteAPIKey"), 1, missing("KeyID"))
    for key_id in ("nope", str(uuid.uuid4()), str(alpha.account_id)):
        failed(await alpha.call("Account.DeleteAPIKey", KeyID=key_id), 9, "Invalid KeyID.")
    failed(await beta.call("Account.DeleteAPIKey", KeyID=issued["KeyID"]), 9, "Invalid KeyID.")
    assert recorded(alpha) == before
    ok(await key.call("Lists.Get"))

    deleted = ok(await alpha.call("Account.DeleteAPIKey", KeyID=issued["KeyID"]))
    assert (deleted["KeyID"], deleted["Deleted"]) == (issued["KeyID"], True)
    failed(await key.call("Lists.Get"), 401, INVALID_CREDENTIALS, 401)
    assert ok(await alpha.call("Account.GetAPIKeys"))["APIKeys"] == []
    failed(await alpha.call("Account.DeleteAPIKey", KeyID=issued["KeyID"]), 9, "Invalid KeyID.")


async def test_an_admin_makes_and_deletes_keys_of_every_role_but_the_owners(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, _ = tenants
    owner_key = ok(await alpha.call("Account.AddAPIKey", Role="owner", Description="Ops"))
    admin_key = ok(await alpha.call("Account.AddAPIKey", Role="admin", Description="Admin CI"))
    admin = Actor(alpha.client, APIKey=admin_key["APIKey"])
    before = recorded(alpha)
    failed(await admin.call("Account.AddAPIKey", Role="owner", Description="Mine"), 7, OWNER_ONLY)
    failed(await admin.call("Account.DeleteAPIKey", KeyID=owner_key["KeyID"]), 7, OWNER_ONLY)
    failed(await admin.call("User.Create", Username="otto@alpha.example", Password=PASSWORD,
                            Role="owner"), 7, OWNER_ONLY)  # fmt: skip
    forbidden(await admin.call("Account.Update", TimeZone="Europe/Paris"), "admin",
              "Account.Update")  # fmt: skip
    assert recorded(alpha) == before
    ok(await Actor(alpha.client, APIKey=owner_key["APIKey"]).call("Lists.Get"))

    developer_key = ok(await admin.call("Account.AddAPIKey", Role="developer", Description="CI"))
    developer = Actor(alpha.client, APIKey=developer_key["APIKey"])
    ok(await developer.call("EmailGateway.AddDomain", DomainName="ci.alpha.example"))
    forbidden(await developer.call("List.Create", ListName="News"), "developer", "List.Create")
    made = ok(await admin.call("User.Create", Username="vic@alpha.example", Password=PASSWORD,
                               Role="viewer"))["User"]  # fmt: skip
    assert made["CreatedBy"] == "Admin CI"  # a key is named by its description
    ok(await admin.call("Account.DeleteAPIKey", KeyID=developer_key["KeyID"]))
    failed(await developer.call("Lists.Get"), 401, INVALID_CREDENTIALS, 401)
    # The owner key (and the account key) may do what the admin may not.
    owner = Actor(alpha.client, APIKey=owner_key["APIKey"])
    ok(await owner.call("Account.DeleteAPIKey", KeyID=admin_key["KeyID"]))
    failed(await admin.call("Lists.Get"), 401, INVALID_CREDENTIALS, 401)
    keys = ok(await alpha.call("Account.GetAPIKeys"))["APIKeys"]
    assert [(k["KeyID"], k["Role"]) for k in keys] == [(owner_key["KeyID"], "owner")]


# Agencies.


async def add_client(agency: Tenant, domain: str) -> dict[str, Any]:
    made: dict[str, Any] = ok(await agency.call("Agency.AddClient", DomainName=domain))["Client"]
    assert {"AccountID", "AccountAPIKey", "DomainID", "SenderAPIKey"} <= set(made)
    assert made["AccountAPIKey"].startswith("acc_") and made["SenderAPIKey"].startswith("snd_")
    assert made["DomainName"] == domain
    return made


STOLEN: list[tuple[str, dict[str, Any]]] = [
    ("Lists.Get", {}),
    ("List.Create", {"ListName": "Stolen"}),
    ("EmailGateway.GetDomains", {}),
    ("EmailGateway.AddDomain", {"DomainName": "stolen.example"}),
]


async def test_an_agency_acts_on_its_clients_and_no_one_else_does(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, beta = tenants
    one = await add_client(alpha, "client-one.example")
    two = await add_client(alpha, "client-two.example")
    assert one["AccountID"] != two["AccountID"]
    as_one = Actor(alpha.client, APIKey=one["AccountAPIKey"])
    as_two = Actor(alpha.client, APIKey=two["AccountAPIKey"])
    agency = Actor(alpha.client, APIKey=alpha.account_key)
    on_one = agency.on(one["AccountID"])

    listed = ok(await alpha.call("Agency.GetClients"))
    assert listed["TotalCount"] == 2
    assert listed["Clients"] == [
        {"AccountID": one["AccountID"], "Name": "client-one.example", "Domains": 1,
         "IsActive": True},
        {"AccountID": two["AccountID"], "Name": "client-two.example", "Domains": 1,
         "IsActive": True},
    ]  # fmt: skip
    domains = ok(await on_one.call("EmailGateway.GetDomains"))["Domains"]
    assert [(d["DomainID"], d["DomainName"]) for d in domains] == [
        (one["DomainID"], "client-one.example")
    ]
    made = ok(await on_one.call("List.Create", ListName="Client news"))
    assert await list_names(as_one) == ["Client news"]
    assert ok(await as_one.call("Lists.Get"))["Lists"][0]["ListID"] == made["ListID"]
    assert await list_names(alpha) == [] and await list_names(as_two) == []
    assert await domain_names(alpha) == ["alpha.example"]
    # Uppercase, the id is the same id.
    assert await list_names(agency.on(one["AccountID"].upper())) == ["Client news"]

    before = recorded(alpha)
    strangers = [
        Actor(alpha.client, APIKey=beta.account_key).on(one["AccountID"]),  # another account
        as_two.on(one["AccountID"]),  # a sibling
        as_one.on(two["AccountID"]),
        as_one.on(str(alpha.account_id)),  # a client is not its agency's agency
        agency.on(str(uuid.uuid4())),  # no account at all
        agency.on("not-an-account"),
        agency.on(str(beta.account_id)),  # an account that is no client of it
        agency.on(str(alpha.account_id)),  # itself
        agency.on(one["DomainID"]),  # the id of something else
        agency.on([one["AccountID"]]),
        agency.on({"AccountID": one["AccountID"]}),
        agency.on(12345),
    ]
    for stranger in strangers:
        for command, params in STOLEN:
            answer = await stranger.call(command, **params)
            failed(answer, 403, INVALID_AGENCY, 403)
    assert recorded(alpha) == before
    assert await list_names(as_one) == ["Client news"] and await list_names(as_two) == []
    assert await domain_names(as_one) == ["client-one.example"]
    assert await domain_names(as_two) == ["client-two.example"]

    # A client is one level down: never an agency itself, and it sees no other client.
    failed(await as_one.call("Agency.AddClient", DomainName="sub.example"), 2, NOT_AN_AGENCY)
    failed(await on_one.call("Agency.AddClient", DomainName="sub.example"), 2, NOT_AN_AGENCY)
    assert ok(await as_one.call("Agency.GetClients"))["Clients"] == []
    assert ok(await on_one.call("Agency.GetClients"))["Clients"] == []
    assert ok(await beta.call("Agency.GetClients")) == {
        "Success": True, "ErrorCode": 0, "Clients": [], "TotalCount": 0, "_status": 200
    }  # fmt: skip
    failed(await alpha.call("Agency.AddClient"), 1, missing("DomainName"))
    for bad in ("not a domain", "-bad-.example", "localhost", "a" * 300 + ".com"):
        failed(await alpha.call("Agency.AddClient", DomainName=bad), 3,
               "Invalid domain name provided")  # fmt: skip
    assert recorded(alpha) == before
    assert ok(await alpha.call("Agency.GetClients"))["Clients"] == listed["Clients"]


async def test_an_agencys_user_acts_on_a_client_within_its_role(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, _ = tenants
    client = await add_client(alpha, "client-one.example")
    as_client = Actor(alpha.client, APIKey=client["AccountAPIKey"])
    _, marketer = await member(alpha, "marketer", "mara@alpha.example")
    on_client = marketer.on(client["AccountID"])
    ok(await on_client.call("List.Create", ListName="Spring"))
    before = recorded(alpha)
    forbidden(await on_client.call("EmailGateway.AddDomain", DomainName="news.client.example"),
              "marketer", "EmailGateway.AddDomain")  # fmt: skip
    forbidden(await on_client.call("Agency.AddClient", DomainName="sub.example"), "marketer",
              "Agency.AddClient")  # fmt: skip
    forbidden(await on_client.call("User.Create", Username="x@client.example",
                                   Password=PASSWORD, Role="viewer"), "marketer",
              "User.Create")  # fmt: skip
    assert recorded(alpha) == before
    assert await list_names(as_client) == ["Spring"]
    assert await domain_names(as_client) == ["client-one.example"]
    assert ok(await as_client.call("Users.Get"))["Users"] == []
    # An agency's viewer key reads a client and changes nothing there.
    viewer_key = ok(await alpha.call("Account.AddAPIKey", Role="viewer", Description="Board"))
    on_client = Actor(alpha.client, APIKey=viewer_key["APIKey"]).on(client["AccountID"])
    assert await list_names(on_client) == ["Spring"]
    forbidden(await on_client.call("List.Create", ListName="Summer"), "viewer", "List.Create")
    assert await list_names(as_client) == ["Spring"]
    # A session, as a key, names only a client of its own agency.
    failed(await marketer.on(str(uuid.uuid4())).call("Lists.Get"), 403, INVALID_AGENCY, 403)


STAT_COUNTS = ("Sent", "Delivered", "Deferred", "HardBounces", "SoftBounces", "Blocks", "Opens",
               "UniqueOpens", "Clicks", "UniqueClicks", "Unsubscribes", "Complaints")  # fmt: skip
STAT_RATES = ("DeliveryRate", "HardBounceRate", "SoftBounceRate", "OpenRate", "ClickRate",
              "UnsubscribeRate", "ComplaintRate")  # fmt: skip
NO_STATS = {**dict.fromkeys(STAT_COUNTS, 0), **dict.fromkeys(STAT_RATES, 0.0)}


async def test_agency_stats(tenants: tuple[Tenant, Tenant]) -> None:
    alpha, beta = tenants
    one = await add_client(alpha, "client-one.example")
    two = await add_client(alpha, "client-two.example")
    answer = ok(await alpha.call("Agency.Stats", StartDate="2025-01-01", EndDate="2025-01-31"))
    assert (answer["StartDate"], answer["EndDate"]) == ("2025-01-01", "2025-01-31")
    assert answer["Stats"] == NO_STATS
    assert answer["Clients"] == [
        {"AccountID": one["AccountID"], "Name": "client-one.example", "Domains": 1,
         "IsActive": True, "Stats": NO_STATS},
        {"AccountID": two["AccountID"], "Name": "client-two.example", "Domains": 1,
         "IsActive": True, "Stats": NO_STATS},
    ]  # fmt: skip
    # By default the last 30 days.
    default = ok(await alpha.call("Agency.Stats"))
    start, end = (date.fromisoformat(default[k]) for k in ("StartDate", "EndDate"))
    assert (end - start).days == 30
    assert default["Stats"] == NO_STATS and len(default["Clients"]) == 2
    # A viewer reads them; an account without clients has none.
    _, viewer = await member(alpha, "viewer", "vic@alpha.example")
    assert ok(await viewer.call("Agency.Stats"))["Clients"] == default["Clients"]
    assert ok(await beta.call("Agency.Stats"))["Clients"] == []

    for params in ({"StartDate": "yesterday"}, {"EndDate": "2025-13-01"},
                   {"StartDate": "x" * 100}, {"EndDate": ["2025-01-01"]}):  # fmt: skip
        failed(await alpha.call("Agency.Stats", **params), 422, "Date specified is invalid.")
    failed(
        await alpha.call("Agency.Stats", StartDate="2025-02-01", EndDate="2025-01-01"),
        400,
        "Invalid Option specified: StartDate",
        400,
    )


# The command line.


def run_cli(data_dir: Path, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``sendstream`` on the embedded installation in ``data_dir`` (and not in the metrics
    folder of the process running the tests)."""
    return subprocess.run(
        [sys.executable, "-m", "cli", *arguments],
        env=embedded_environment(data_dir), cwd=ROOT, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip


async def test_bootstrap_makes_a_client_of_an_agency_only_if_the_agency_exists(
    tmp_path: Path, make_engine: Callable[..., Engine], api_client: Client
) -> None:
    data_dir = tmp_path / "var"  # the engines of make_engine use this folder too
    made = run_cli(data_dir, "bootstrap", "--domain", "agency.example")
    assert made.returncode == 0, made.stderr
    agency = json.loads(made.stdout)
    assert "AgencyAccountID" not in agency
    engine = make_engine(roles=API_ONLY)
    http = api_client(engine)
    agency_key = Actor(http, APIKey=agency["AccountAPIKey"])
    before = engine.app.recorder.max_notification_id()

    for unknown in (str(uuid.uuid4()), "not-an-account", agency["DomainID"]):
        refused = run_cli(data_dir, "bootstrap", "--domain", "x.example", "--agency", unknown)
        assert refused.returncode == 2, (refused.stdout, refused.stderr)
        assert refused.stderr.strip() == f"error: {INVALID_AGENCY}"
        assert refused.stdout == ""
    assert engine.app.recorder.max_notification_id() == before  # nothing was made

    made = run_cli(data_dir, "bootstrap", "--domain", "client.example", "--agency",
                   agency["AccountID"])  # fmt: skip
    assert made.returncode == 0, made.stderr
    client_account = json.loads(made.stdout)
    assert client_account["AgencyAccountID"] == agency["AccountID"]
    assert client_account["AccountID"] != agency["AccountID"]
    listed = ok(await agency_key.call("Agency.GetClients"))
    assert listed["Clients"] == [
        {"AccountID": client_account["AccountID"], "Name": "client.example", "Domains": 1,
         "IsActive": True}
    ]  # fmt: skip
    on_client = agency_key.on(client_account["AccountID"])
    assert await domain_names(on_client) == ["client.example"]
    session = ok(await log_in(http, client_account["Username"], client_account["Password"]))
    assert (session["AccountID"], session["Role"]) == (client_account["AccountID"], "owner")

    # A client is never an agency: naming one is naming no agency.
    before = engine.app.recorder.max_notification_id()
    refused = run_cli(data_dir, "bootstrap", "--domain", "sub.example", "--agency",
                      client_account["AccountID"])  # fmt: skip
    assert refused.returncode == 2 and refused.stderr.strip() == f"error: {INVALID_AGENCY}"
    assert engine.app.recorder.max_notification_id() == before
    assert len(ok(await agency_key.call("Agency.GetClients"))["Clients"]) == 1


async def test_keys_and_clients_made_at_once_in_one_account_are_all_made(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, _ = tenants
    keys = await asyncio.gather(*(
        alpha.call("Account.AddAPIKey", Role="viewer", Description=f"key {n}") for n in range(6)
    ))  # fmt: skip
    assert [answer["ErrorCode"] for answer in keys] == [0] * 6
    listed = ok(await alpha.call("Account.GetAPIKeys"))["APIKeys"]
    assert sorted(k["KeyID"] for k in listed) == sorted(k["KeyID"] for k in keys)
    clients = await asyncio.gather(*(
        alpha.call("Agency.AddClient", DomainName=f"client{n}.example") for n in range(6)
    ))  # fmt: skip
    assert [answer["ErrorCode"] for answer in clients] == [0] * 6
    shown = ok(await alpha.call("Agency.GetClients"))["Clients"]
    assert sorted(c["AccountID"] for c in shown) == sorted(
        c["Client"]["AccountID"] for c in clients
    )


# What a review of the first version found.


async def test_the_owners_logout_leaves_the_users_sessions_alone(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, _ = tenants
    alpha.engine.gateway.set_login(alpha.account_id, "owner@alpha.example", PASSWORD)
    await add_user(alpha, "marketer", "mara@alpha.example")
    owner = ok(await log_in(alpha.client, "owner@alpha.example", PASSWORD))
    mara = ok(await log_in(alpha.client, "mara@alpha.example", PASSWORD))
    owner_caller = alpha.engine.gateway.identify({"SessionID": owner["SessionID"]})
    alpha.engine.gateway.logout(owner_caller)
    failed(await Actor(alpha.client, SessionID=owner["SessionID"]).call("Lists.Get"),
           401, "Invalid SessionID or APIKey.", 401)  # fmt: skip
    ok(await Actor(alpha.client, SessionID=mara["SessionID"]).call("Lists.Get"))


async def test_a_webhooks_signing_key_is_not_a_viewers_to_read(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, _ = tenants
    viewer = ok(await alpha.call("Account.AddAPIKey", Role="viewer", Description="dashboard"))
    before = recorded(alpha)
    forbidden(
        await Actor(alpha.client, APIKey=viewer["APIKey"]).call(
            "EmailGateway.GetWebhooks", DomainID=alpha.domain_id
        ),
        "viewer", "EmailGateway.GetWebhooks",
    )  # fmt: skip
    assert recorded(alpha) == before  # no signing key made for it either
    developer = ok(await alpha.call("Account.AddAPIKey", Role="developer", Description="ci"))
    shown = await Actor(alpha.client, APIKey=developer["APIKey"]).call(
        "EmailGateway.GetWebhooks", DomainID=alpha.domain_id
    )
    assert ok(shown)["SigningKey"]


async def test_a_key_deleted_in_one_api_process_is_refused_by_another_at_once(
    make_engine: Callable[..., Engine], api_client: Client, tmp_path: Path
) -> None:
    first = make_engine(roles=API_ONLY)
    second = make_engine(roles=API_ONLY)  # the same data folder: another API process
    alpha = Tenant(first, api_client(first), "alpha.example")
    admin = ok(await alpha.call("Account.AddAPIKey", Role="admin", Description="ops"))
    elsewhere = Actor(api_client(second), APIKey=admin["APIKey"])
    ok(await elsewhere.call("Lists.Get"))  # known there, and cached if anything is
    ok(await alpha.call("Account.DeleteAPIKey", KeyID=admin["KeyID"]))
    failed(await elsewhere.call("Account.AddAPIKey", Role="admin", Description="kept"),
           401, "Invalid SessionID or APIKey.", 401)  # fmt: skip


async def test_one_request_id_sent_twice_is_two_entries_of_the_audit_log(
    make_engine: Callable[..., Engine], api_client: Client
) -> None:
    engine = make_engine(roles=frozenset({EngineRole.API, EngineRole.PROJECTOR, EngineRole.RELAY}),
                         TRUST_FORWARDED_FOR="true")  # fmt: skip
    alpha = Tenant(engine, api_client(engine), "alpha.example")
    user = await add_user(alpha, "viewer", "vic@alpha.example")
    for params, hop in (({"Role": "marketer"}, "198.51.100.7"), ({"Password": "x" * 20}, "")):
        changed = await alpha.client.post(
            "/api.php",
            json={"APIKey": alpha.account_key, "Command": "User.Update",
                  "UserID": user["UserID"], **params},
            headers={"X-Request-ID": "req-1", **({"X-Forwarded-For": hop} if hop else {})},
        )  # fmt: skip
        assert changed.json()["Success"], changed.text

    def updates() -> list[dict[str, Any]]:
        entries = alpha.engine.audit.audit_log(
            alpha.engine.app.account(alpha.account_id), {"AuditCommand": "User.Update"}
        )["Entries"]
        return entries if len(entries) == 2 else []

    newer, older = wait_for(updates)
    assert (older["RequestID"], newer["RequestID"]) == ("req-1", "req-1")
    assert older["Events"] == ["RoleChanged"]
    assert newer["Events"] == ["PasswordChanged", "SessionsEnded"]
    assert (older["Address"], newer["Address"]) == ("198.51.100.7", "127.0.0.1")


def test_import_subscribers_from_the_command_line_checks_the_keys_role(
    make_engine: Callable[..., Engine], tmp_path: Path
) -> None:
    engine = make_engine(roles=frozenset())
    keys = engine.app.bootstrap("alpha.example")
    account = engine.app.account(UUID(keys["AccountID"]))
    with acting_as(Caller(account, UserRole.OWNER, "cli")):
        made = engine.campaigns.create_list(account, {"ListName": "News"})
        viewer = engine.users.add_key(account, {"Role": "viewer", "Description": "read"})
    rows = tmp_path / "rows.csv"
    rows.write_text("EmailAddress\njane@example.org\n")
    env = embedded_environment(Path(engine.settings.data_dir))
    refused = subprocess.run(
        [sys.executable, "-m", "cli", "import-subscribers", str(rows),
         "--account-key", viewer["APIKey"], "--list-id", made["ListID"]],
        env=env, capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: The viewer role may not run Subscribers.Import."


async def test_keys_a_user_made_go_with_the_user_and_with_the_roles_it_loses(
    tenants: tuple[Tenant, Tenant],
) -> None:
    alpha, _ = tenants
    user = await add_user(alpha, "admin", "ada@alpha.example")
    session = ok(await log_in(alpha.client, "ada@alpha.example", PASSWORD))["SessionID"]
    ada = Actor(alpha.client, SessionID=session)
    admin_key = ok(await ada.call("Account.AddAPIKey", Role="admin", Description="ops"))
    developer_key = ok(await ada.call("Account.AddAPIKey", Role="developer", Description="ci"))
    owners_key = ok(await alpha.call("Account.AddAPIKey", Role="admin", Description="mine"))
    shown = {k["Description"]: k["IssuedBy"] for k in
             ok(await alpha.call("Account.GetAPIKeys"))["APIKeys"]}  # fmt: skip
    assert shown == {"ops": "ada@alpha.example", "ci": "ada@alpha.example", "mine": "account key"}

    # A key may not do more than its maker: Ada's admin key stops working, her developer
    # key stays.
    ok(await alpha.call("User.Update", UserID=user["UserID"], Role="developer"))
    failed(await Actor(alpha.client, APIKey=admin_key["APIKey"]).call("Lists.Get"),
           401, "Invalid SessionID or APIKey.", 401)  # fmt: skip
    ok(await Actor(alpha.client, APIKey=developer_key["APIKey"]).call("Lists.Get"))
    # Gone with Ada: every key she made; the owner's stays.
    ok(await alpha.call("User.Delete", UserID=user["UserID"]))
    failed(await Actor(alpha.client, APIKey=developer_key["APIKey"]).call("Lists.Get"),
           401, "Invalid SessionID or APIKey.", 401)  # fmt: skip
    ok(await Actor(alpha.client, APIKey=owners_key["APIKey"]).call("Lists.Get"))
    left = ok(await alpha.call("Account.GetAPIKeys"))["APIKeys"]
    assert [k["Description"] for k in left] == ["mine"]
