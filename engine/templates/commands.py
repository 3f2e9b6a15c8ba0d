"""``Template.Create``, ``Template.Update``, ``Template.Get``, ``Templates.Get`` and
``Template.Delete``: an account's stored templates, each part checked when stored."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError

from adapters.templating import TemplateRefused, check
from domain.account import Account
from domain.errors import RequestRejected, Templates
from domain.template import (
    MAX_NAME_LENGTH,
    MAX_TEMPLATE_BYTES,
    Template,
    TemplateIndex,
    UnknownVersion,
    template_index_id,
    version_number,
)
from engine.application import Sendstream
from engine.idempotency import answered
from engine.ids import new_id
from engine.params import iso_time, text_param, uuid_param

Handler = Callable[[Account, dict[str, Any]], dict[str, Any]]
# The parts of a template: the parameter each is given by, and whether it is HTML.
PARTS = (("Subject", False), ("HTMLContent", True), ("PlainContent", False))


class TemplateCommands:
    def __init__(self, app: Sendstream, on_change: Callable[[UUID], None] | None = None) -> None:
        self._app = app
        self._on_change = on_change  # a template changed (the send path's cache forgets it)
        self._index_lock = threading.Lock()  # one name at a time per process

    def commands(self) -> dict[str, Handler]:
        return {
            "Template.Create": self.create,
            "Template.Update": self.update,
            "Template.Get": self.get,
            "Templates.Get": self.get_all,
            "Template.Delete": self.delete,
        }

    def create(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        name = _name(params.get("TemplateName"))
        subject, html, text = _parts(params, None)
        with self._index_lock:
            index = self._index(account.id)
            if index.has_name(name):
                raise RequestRejected(Templates.DUPLICATE_NAME)
            template = Template(
                id=new_id(), account_id=account.id, name=name, subject=subject, html=html,
                text=text, created_at=datetime.now(UTC),
            )  # fmt: skip
            index.name(template.id, name)
            answer = {"TemplateID": str(template.id), "Version": 1}
            self._app.save(index, template, *answered(answer))
        return answer

    def update(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        """New content makes a new version, the active one; ``Version`` alone makes that
        version active again; ``TemplateName`` renames."""
        template = self._own(account, params.get("TemplateID"))
        changed = [name for name, _ in PARTS if params.get(name) is not None]
        if changed:
            subject, html, text = _parts(params, template)
            template.add_version(subject, html, text, datetime.now(UTC))
        elif params.get("Version") not in (None, ""):
            try:
                template.activate(version_number(params.get("Version")))
            except UnknownVersion:
                raise RequestRejected(Templates.INVALID_VERSION) from None
        renamed = params.get("TemplateName") not in (None, "")
        with self._index_lock:
            index = self._index(account.id)
            if renamed:
                name = _name(params.get("TemplateName"))
                if index.has_name(name, besides=template.id):
                    raise RequestRejected(Templates.DUPLICATE_NAME)
                if name != template.name:
                    template.rename(name)
                    index.name(template.id, name)
            self._app.save(index, template)
        self._changed(template.id)
        return {"TemplateID": str(template.id), "Version": template.active_version}

    def get(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        template = self._own(account, params.get("TemplateID"))
        return {
            "Template": {
                **_summary(template),
                "Versions": [version.describe() for version in template.versions],
            }
        }

    def get_all(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        templates = [self._find(template_id) for template_id in self._index(account.id).names]
        listed = [_summary(t) for t in templates if t is not None and not t.is_deleted]
        return {"TotalTemplates": len(listed), "Templates": listed}

    def delete(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        template = self._own(account, params.get("TemplateID"))
        template.delete(datetime.now(UTC))
        with self._index_lock:
            index = self._index(account.id)
            index.remove(template.id)
            self._app.save(index, template)
        self._changed(template.id)
        return {}

    def _changed(self, template_id: UUID) -> None:
        if self._on_change is not None:
            self._on_change(template_id)

    def _own(self, account: Account, value: Any) -> Template:
        if text_param(value) is None:
            raise RequestRejected(Templates.MISSING_PARAMETER.format(name="TemplateID"))
        found = self._find(uuid_param(value))
        if found is None or found.account_id != account.id or found.is_deleted:
            raise RequestRejected(Templates.INVALID_ID)
        return found

    def _find(self, template_id: UUID | None) -> Template | None:
        if template_id is None:
            return None
        try:
            return self._app._get(template_id, Template)
        except AggregateNotFoundError:
            return None

    def _index(self, account_id: UUID) -> TemplateIndex:
        try:
            return self._app._get(template_index_id(account_id), TemplateIndex)
        except AggregateNotFoundError:
            return TemplateIndex(id=template_index_id(account_id), account_id=account_id)


def _name(value: Any) -> str:
    name = text_param(value)
    if name is None:
        raise RequestRejected(Templates.MISSING_PARAMETER.format(name="TemplateName"))
    if len(name) > MAX_NAME_LENGTH or any(ord(c) < 32 for c in name):
        raise RequestRejected(Templates.INVALID_NAME)
    return name


def _parts(params: dict[str, Any], template: Template | None) -> tuple[str, str, str]:
    """Subject, HTML and plain text from ``params``, each checked; a part not given keeps
    the template's active one (a new template needs a subject and a body)."""
    current = template.active if template is not None else None
    kept = {"Subject": current.subject, "HTMLContent": current.html,
            "PlainContent": current.text} if current else {}  # fmt: skip
    values: dict[str, str] = {}
    for name, _ in PARTS:
        given = params.get(name)
        if given is not None and not isinstance(given, str):
            raise RequestRejected(Templates.INVALID_TEMPLATE.format(reason=f"{name} is no text"))
        values[name] = given if given is not None else kept.get(name, "")
    if not values["Subject"].strip():
        raise RequestRejected(Templates.MISSING_PARAMETER.format(name="Subject"))
    if not (values["HTMLContent"].strip() or values["PlainContent"].strip()):
        raise RequestRejected(Templates.MISSING_PARAMETER.format(name="HTMLContent"))
    if sum(len(v.encode()) for v in values.values()) > MAX_TEMPLATE_BYTES:
        raise RequestRejected(Templates.TOO_LARGE.format(limit=MAX_TEMPLATE_BYTES))
    for name, html in PARTS:
        try:
            check(name, values[name], html=html)
        except TemplateRefused as refused:
            raise RequestRejected(Templates.INVALID_TEMPLATE.format(reason=str(refused))) from None
    return values["Subject"], values["HTMLContent"], values["PlainContent"]


def _summary(template: Template) -> dict[str, Any]:
    active = template.active
    return {
        "TemplateID": str(template.id),
        "TemplateName": template.name,
        "ActiveVersion": template.active_version,
        "Subject": active.subject,
        "UpdatedAt": iso_time(active.created_at),
    }
