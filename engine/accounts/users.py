"""``User.Create``, ``User.Update``, ``User.Delete`` and ``Users.Get``: the logins of an
account with their roles; ``Account.AddAPIKey``, ``Account.GetAPIKeys`` and
``Account.DeleteAPIKey``: ``/api.php`` keys that act with one role.

The account's own login (``sendstream bootstrap``'s) is its first owner and is listed with
the account's id as its ``UserID``; it is changed with ``sendstream`` commands, not here.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from domain.account import Account, UsernameClaim, aggregate_id_for_key, key_digest, username_id
from domain.errors import RequestRejected, Users
from domain.users import AccountKey, Role, User, may_grant, parse_role, role_covers
from engine.accounts.callers import Caller, current_request
from engine.accounts.gateway import Gateway, now_millisecond
from engine.accounts.passwords import hash_password
from engine.application import ROLE_KEY_KIND, Sendstream
from engine.conflicts import retried
from engine.ids import new_id
from engine.params import iso_time, text_param, uuid_param

Handler = Callable[[Account, dict[str, Any]], dict[str, Any]]

# Printable, no spaces or separators a login form or a log line would trip on.
_USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{2,127}$")


class UserCommands:
    def __init__(self, app: Sendstream, gateway: Gateway) -> None:
        self._app = app
        self._gateway = gateway

    def commands(self) -> dict[str, Handler]:
        return {
            "User.Create": self.create,
            "User.Update": self.update,
            "User.Delete": self.delete,
            "Users.Get": self.get_all,
            "Account.AddAPIKey": self.add_key,
            "Account.GetAPIKeys": self.get_keys,
            "Account.DeleteAPIKey": self.delete_key,
        }

    # Users.

    def create(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        username = text_param(params.get("Username"))
        if not username:
            raise RequestRejected(Users.MISSING_PARAMETER.format(name="Username"))
        if not _USERNAME.match(username):
            raise RequestRejected(Users.INVALID_USERNAME)
        password = _password(params.get("Password"))
        role = _role(params.get("Role"))
        _may_grant(role)
        if self._gateway.username_taken(username):
            raise RequestRejected(Users.DUPLICATE_USERNAME)
        password_hash = hash_password(password)

        def attempt() -> User:
            # A conflict is the name's (the claim says so when read again) or the account's.
            fresh = self._app.account(account.id)
            user = User(
                id=new_id(), account_id=fresh.id, username=username,
                password_hash=password_hash, role=role, created_at=datetime.now(UTC),
                created_by=_actor(),
            )  # fmt: skip
            claim = self._claim(username, fresh.id, user.id)
            fresh.add_user(user.id)
            self._gateway.save(claim, user, fresh)
            return user

        return {"User": _shown(retried(attempt))}

    def _claim(self, username: str, account_id: UUID, user_id: UUID) -> UsernameClaim:
        claim_id = username_id(username)
        try:
            claim = self._app._get(claim_id, UsernameClaim)
        except AggregateNotFoundError:  # none yet: a new claim conflicts on save if one appears
            return UsernameClaim(id=claim_id, account_id=account_id, user_id=user_id)
        if not claim.is_released:
            raise RequestRejected(Users.DUPLICATE_USERNAME)
        claim.reclaim(account_id, user_id)
        return claim

    def update(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        self._own_user(account, params)  # the UserID's errors come before the others'
        role = None if params.get("Role") in (None, "") else _role(params.get("Role"))
        given_password = params.get("Password")
        if role is None and given_password in (None, ""):
            raise RequestRejected(Users.MISSING_PARAMETER.format(name="Role"))
        password = None if given_password in (None, "") else _password(given_password)
        if role is not None:
            _may_grant(role)
        password_hash = None if password is None else hash_password(password)

        def attempt() -> User:
            user = self._own_user(account, params)
            _may_grant(user.role)  # the user as it is: an admin cannot touch an owner
            to_save: list[Any] = [user]
            if role is not None and role is not user.role:
                user.change_role(role)
                # Keys the user made that may do more than its new role stop working.
                fresh = self._app.account(account.id)
                revoked = self._revoke_keys_of(
                    fresh, user.id, lambda key: not role_covers(role, key.role)
                )
                to_save += [*revoked, fresh] if revoked else []
            if password_hash is not None:
                user.change_password(password_hash)
                user.end_sessions(now_millisecond())
            self._gateway.save(*to_save)
            return user

        return {"User": _shown(retried(attempt))}

    def delete(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        def attempt() -> User:
            user = self._own_user(account, params)
            _may_grant(user.role)  # as it is now: it may have become an owner meanwhile
            fresh = self._app.account(account.id)
            claim = self._app._get(username_id(user.username), UsernameClaim)
            user.delete()
            fresh.remove_user(user.id)
            # The keys the user made go with it, as its sessions do.
            keys = self._revoke_keys_of(fresh, user.id, lambda key: True)
            to_save: list[Any] = [user, fresh, *keys]
            if claim.user_id == user.id and not claim.is_released:
                claim.release()
                to_save.append(claim)
            self._gateway.save(*to_save)
            return user

        return {"UserID": str(retried(attempt).id), "Deleted": True}

    def _revoke_keys_of(
        self, account: Account, user_id: UUID, chosen: Callable[[AccountKey], bool]
    ) -> list[AccountKey]:
        """Revoke the role keys ``user_id`` made that are ``chosen``, and take them off
        ``account``'s list; the keys, to be saved with it."""
        revoked = []
        for key_id in list(account.key_ids):
            key = self._app._get(key_id, AccountKey)
            if key.issued_by_user == user_id and not key.is_revoked and chosen(key):
                key.revoke()
                account.remove_key(key.id)
                revoked.append(key)
        return revoked

    def get_all(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        account = self._app.account(account.id)
        users: list[dict[str, Any]] = []
        if account.username:
            users.append({
                "UserID": str(account.id), "Username": account.username,
                "Role": Role.OWNER.value, "CreatedAt": iso_time(account.opened_at),
                "CreatedBy": "sendstream bootstrap",
            })  # fmt: skip
        for user_id in account.user_ids:
            user = self._app._get(user_id, User)
            if not user.is_deleted:
                users.append(_shown(user))
        return {"Users": users, "TotalCount": len(users)}

    def _own_user(self, account: Account, params: dict[str, Any]) -> User:
        if text_param(params.get("UserID")) is None:
            raise RequestRejected(Users.MISSING_PARAMETER.format(name="UserID"))
        user_id = uuid_param(params.get("UserID"))
        if user_id == account.id:
            raise RequestRejected(Users.LAST_OWNER)
        fresh = self._app.account(account.id)
        if user_id is None or user_id not in fresh.user_ids:
            raise RequestRejected(Users.INVALID_ID)
        user = self._app._get(user_id, User)
        if user.is_deleted or user.account_id != account.id:
            raise RequestRejected(Users.INVALID_ID)
        return user

    # Keys that act with one role.

    def add_key(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        description = params.get("Description")
        if not isinstance(description, str) or not description.strip() or len(description) > 255:
            raise RequestRejected(Users.INVALID_DESCRIPTION)
        role = _role(params.get("Role"))
        _may_grant(role)
        secret = "acc_" + secrets.token_urlsafe(32)
        digest = key_digest(secret)

        def attempt() -> AccountKey:
            fresh = self._app.account(account.id)
            key = AccountKey(
                id=aggregate_id_for_key(ROLE_KEY_KIND, digest), account_id=fresh.id,
                digest=digest, role=role, description=description.strip(),
                issued_at=datetime.now(UTC), hint=secret[:10], issued_by=_actor(),
                issued_by_user=_user_id(),
            )  # fmt: skip
            fresh.add_key(key.id)
            self._gateway.save(key, fresh)
            return key

        key = retried(attempt)
        # Shown once: only its hash is kept.
        return {"KeyID": str(key.id), "APIKey": secret, "Role": key.role.value}

    def get_keys(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        account = self._app.account(account.id)
        keys = []
        for key_id in account.key_ids:
            key = self._app._get(key_id, AccountKey)
            if not key.is_revoked:
                keys.append({
                    "KeyID": str(key.id), "Key": f"{key.hint}…", "Role": key.role.value,
                    "Description": key.description, "IssuedAt": iso_time(key.issued_at),
                    "IssuedBy": key.issued_by,
                })  # fmt: skip
        return {"APIKeys": keys, "TotalCount": len(keys)}

    def delete_key(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        if text_param(params.get("KeyID")) is None:
            raise RequestRejected(Users.MISSING_PARAMETER.format(name="KeyID"))
        key_id = uuid_param(params.get("KeyID"))

        def attempt() -> AccountKey:
            fresh = self._app.account(account.id)
            if key_id is None or key_id not in fresh.key_ids:
                raise RequestRejected(Users.INVALID_KEY_ID)
            key = self._app._get(key_id, AccountKey)
            _may_grant(key.role)
            key.revoke()
            fresh.remove_key(key.id)
            self._gateway.save(key, fresh)
            return key

        return {"KeyID": str(retried(attempt).id), "Deleted": True}


def _caller() -> Caller | None:
    return current_request().caller


def _user_id() -> UUID | None:
    caller = _caller()
    return caller.user_id if caller is not None else None


def _actor() -> str:
    caller = _caller()
    if caller is None:
        return "sendstream"
    return caller.name or caller.via


def _may_grant(role: Role) -> None:
    caller = _caller()
    # No caller is nobody (fails closed): the command line acts as someone (acting_as).
    if caller is None or not may_grant(caller.role, role):
        raise RequestRejected(Users.OWNER_ONLY)


def _role(value: Any) -> Role:
    if value is None or value == "":
        raise RequestRejected(Users.MISSING_PARAMETER.format(name="Role"))
    role = parse_role(value)
    if role is None:
        raise RequestRejected(Users.INVALID_ROLE)
    return role


def _password(value: Any) -> str:
    if value is None or value == "":
        raise RequestRejected(Users.MISSING_PARAMETER.format(name="Password"))
    if not isinstance(value, str) or not 12 <= len(value) <= 1024:
        raise RequestRejected(Users.WEAK_PASSWORD)
    return value


def _shown(user: User) -> dict[str, Any]:
    return {
        "UserID": str(user.id),
        "Username": user.username,
        "Role": user.role.value,
        "CreatedAt": iso_time(user.created_at),
        "CreatedBy": user.created_by,
    }
