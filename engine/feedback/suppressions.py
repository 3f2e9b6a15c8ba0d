"""The account's unsubscribe, bounce, complaint and block lists as ``/api.php`` commands
(000's Unsubscribe, Bounce and Block management), all views of its one suppression list."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import IntegrityError

from domain import errors as E
from domain.account import Account
from domain.errors import RequestRejected
from domain.suppression import (
    BLOCK,
    BOUNCE,
    COMPLAINT,
    UNSUBSCRIBE,
    SuppressionList,
    suppression_list_id,
)
from engine.application import Sendstream
from engine.feedback.service import suppression_exception
from engine.params import count_param, is_valid_email, text_param

MAX_PAGE = 1000

# The command noun for each list, and the reason its entries carry.
LISTS = {"Unsubscribe": UNSUBSCRIBE, "Bounce": BOUNCE, "Complaint": COMPLAINT, "Block": BLOCK}


class SuppressionCommands:
    def __init__(self, app: Sendstream, on_change: Callable[[Account], None] | None = None) -> None:
        self._app = app
        self._on_change = on_change

    def _list(self, account: Account) -> SuppressionList:
        return self._app.suppression_list(account.id) or SuppressionList(
            id=suppression_list_id(account.id), account_id=account.id
        )

    def _email(self, params: dict[str, Any]) -> str:
        email = text_param(params.get("EmailAddress"))
        if email is None:
            raise RequestRejected(E.Lists.MISSING_PARAMETER.format(name="EmailAddress"))
        if not is_valid_email(email.lower()):
            raise RequestRejected(
                E.Lists.for_exception("InvalidEmailAddressException", "Email address is invalid.")
            )
        return email.lower()

    def _save(self, account: Account, change: Callable[[SuppressionList], None]) -> None:
        for _ in range(5):
            suppressions = self._list(account)
            change(suppressions)
            if not suppressions.pending_events:
                return
            try:
                self._app.save(suppressions)
            except IntegrityError:
                continue
            if self._on_change is not None:
                self._on_change(account)
            return

    def entries(self, account: Account, reason: str) -> list[dict[str, str]]:
        return [
            {"EmailAddress": email, "Reason": entry["reason"], "AddedDate": entry["added_at"]}
            for email, entry in self._list(account).entries.items()
            if entry["reason"] == reason
        ]

    def get(self, reason: str) -> Callable[[Account, dict[str, Any]], dict[str, Any]]:
        def handler(account: Account, params: dict[str, Any]) -> dict[str, Any]:
            found = self.entries(account, reason)
            start = count_param(params.get("RecordsFrom"), 0, "RecordsFrom")
            count = min(
                count_param(params.get("RecordsPerRequest"), 100, "RecordsPerRequest"), MAX_PAGE
            )
            return {"TotalRecords": len(found), "Addresses": found[start : start + count]}

        return handler

    def add(self, reason: str) -> Callable[[Account, dict[str, Any]], dict[str, Any]]:
        def handler(account: Account, params: dict[str, Any]) -> dict[str, Any]:
            email = self._email(params)
            existing = self._list(account).reason_for(email)
            if existing is not None:
                raise RequestRejected(E.Lists.for_exception(*suppression_exception(existing)))
            self._save(account, lambda s: s.add(email, reason, datetime.now(UTC)))
            return {"EmailAddress": email}

        return handler

    def remove(self, reason: str) -> Callable[[Account, dict[str, Any]], dict[str, Any]]:
        def handler(account: Account, params: dict[str, Any]) -> dict[str, Any]:
            email = self._email(params)
            if self._list(account).reason_for(email) != reason:
                raise RequestRejected(
                    E.Lists.for_exception(
                        "InvalidEmailAddressException", "Email address is not on this list."
                    )
                )
            self._save(account, lambda s: s.remove(email))
            return {"EmailAddress": email}

        return handler

    def export(self, reason: str) -> Callable[[Account, dict[str, Any]], dict[str, Any]]:
        def handler(account: Account, params: dict[str, Any]) -> dict[str, Any]:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["EmailAddress", "Reason", "AddedDate"])
            for entry in self.entries(account, reason):
                writer.writerow([entry["EmailAddress"], entry["Reason"], entry["AddedDate"]])
            return {"Format": "csv", "Data": out.getvalue()}

        return handler

    def commands(self) -> dict[str, Callable[[Account, dict[str, Any]], dict[str, Any]]]:
        """``Unsubscribes.Get``, ``Unsubscribe.Add``, ``Unsubscribe.Remove``,
        ``Unsubscribes.Export``, and the same for Bounce, Complaint and Block."""
        table: dict[str, Callable[[Account, dict[str, Any]], dict[str, Any]]] = {}
        for noun, reason in LISTS.items():
            table[f"{noun}s.Get"] = self.get(reason)
            table[f"{noun}.Add"] = self.add(reason)
            table[f"{noun}.Remove"] = self.remove(reason)
            table[f"{noun}s.Export"] = self.export(reason)
        return table
