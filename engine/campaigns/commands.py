"""Campaign commands of ``/api.php``: subscriber lists and imports, campaign emails, and the
``Campaign.*`` / ``Campaigns.*`` lifecycle of 001. Fan-out and delivery of a campaign that
falls due are the ``CampaignRunner``'s (``engine/campaigns/runner.py``)."""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

import orjson
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from adapters.templating import TemplateRefused, check, from_merge_tags
from domain import errors as E
from domain.account import Account, domain_accepts_sender
from domain.campaign import (
    EDITABLE,
    Campaign,
    CampaignEmail,
    CampaignInstance,
    CampaignStatus,
    IllegalCampaignTransition,
    Library,
    SavedSegment,
    fanout_id,
    instance_id_for,
    library_id,
)
from domain.errors import ErrorText, RequestRejected
from domain.lists import EMAIL_FIELD, ListRuleBroken, SubscriberList, normalise_fields
from engine.application import Sendstream
from engine.idempotency import answered
from engine.ids import new_id
from engine.params import (
    UNSAFE_TEXT,
    count_param,
    is_valid_email,
    iso_time,
    text_param,
    uuid_param,
)

if TYPE_CHECKING:
    from domain.segments import Segment

AggregateT = TypeVar("AggregateT", bound=Aggregate)

MAX_IMPORT_ROWS = 100_000
IMPORT_BATCH = 1000
MAX_PAGE = 1000
# A lifecycle command that keeps meeting the runner's saves gives up after this many.
LIFECYCLE_ATTEMPTS = 5


class ImportReport:
    def __init__(self) -> None:
        self.imported = 0
        self.duplicates = 0
        self.invalid: list[dict[str, Any]] = []

    def as_dict(self) -> dict[str, Any]:
        return {
            "Imported": self.imported,
            "Duplicates": self.duplicates,
            "InvalidCount": len(self.invalid),
            "Invalid": self.invalid[:1000],
        }


def _flag(value: Any, name: str, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "enabled"):
        return True
    if text in ("0", "false", "no", "off", "disabled"):
        return False
    raise RequestRejected(E.Lists.INVALID_OPTION.format(name=name))


def _names(value: Any) -> list[str]:
    """A list given as a JSON array or as comma-separated text."""
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = orjson.loads(text)
            except orjson.JSONDecodeError:
                parsed = None
            if isinstance(parsed, list):
                return [str(v).strip() for v in parsed if str(v).strip()]
        return [part.strip() for part in text.split(",") if part.strip()]
    return [str(value)]


def _rejected(broken: ListRuleBroken) -> RequestRejected:
    return RequestRejected(E.Lists.for_exception(broken.exception, broken.message))


class CampaignService:
    def __init__(
        self,
        app: Sendstream,
        statistics: Callable[[UUID], dict[str, Any]] | None = None,
        on_change: Callable[[UUID], None] | None = None,
        check_pool: Callable[[Account, Any], str] | None = None,
    ) -> None:
        self._app = app
        self._check_pool = check_pool
        self._statistics = statistics
        self._on_change = on_change
        self._library_lock = threading.Lock()

    # Loading what belongs to the caller.

    def _get(self, aggregate_id: UUID | None, kind: type[AggregateT]) -> AggregateT | None:
        if aggregate_id is None:
            return None
        try:
            found = self._app._get(aggregate_id, kind)
        except AggregateNotFoundError:
            return None
        return found

    def _library(self, account: Account) -> Library:
        return self._get(library_id(account.id), Library) or Library(
            id=library_id(account.id), account_id=account.id
        )

    def _own_list(self, account: Account, params: dict[str, Any]) -> SubscriberList:
        raw = params.get("ListID")
        if text_param(raw) is None:
            raise RequestRejected(E.Lists.MISSING_PARAMETER.format(name="ListID"))
        found = self._get(uuid_param(raw), SubscriberList)
        if found is None or found.account_id != account.id or found.is_deleted:
            raise RequestRejected(E.Lists.INVALID_GROUP_ID)
        return found

    # Lists.

    def create_list(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        name = text_param(params.get("ListName"))
        if name is None:
            raise RequestRejected(E.Lists.MISSING_PARAMETER.format(name="ListName"))
        if len(name) > 255 or any(ord(c) < 32 for c in name):
            raise RequestRejected(E.Lists.INVALID_NAME)
        try:
            fields = normalise_fields(_names(params.get("Fields")) or [EMAIL_FIELD])
        except ListRuleBroken as broken:
            raise _rejected(broken) from None
        allow_duplicates = _flag(params.get("AllowDuplicates"), "AllowDuplicates")
        with self._library_lock:
            library = self._library(account)
            if any(existing.lower() == name.lower() for existing in library.lists.values()):
                raise RequestRejected(E.Lists.DUPLICATE_NAME)
            subscribers = SubscriberList(
                id=new_id(),
                account_id=account.id,
                name=name,
                fields=fields,
                allow_duplicates=allow_duplicates,
            )
            library.add_list(subscribers.id, name)
            answer = {"ListID": str(subscribers.id), "ListName": name, "Fields": fields}
            self._app.save(library, subscribers, *answered(answer))
        return answer

    def get_lists(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        found = []
        for list_id in self._library(account).lists:
            subscribers = self._get(list_id, SubscriberList)
            if subscribers is None or subscribers.is_deleted:
                continue
            found.append(
                {
                    "ListID": str(subscribers.id),
                    "ListName": subscribers.name,
                    "Fields": subscribers.fields,
                    "AllowDuplicates": subscribers.allow_duplicates,
                    "SubscriberCount": len(subscribers.subscribers),
                    "UnsubscribedCount": len(subscribers.unsubscribed),
                }
            )
        return {"Lists": found}

    def delete_list(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        subscribers = self._own_list(account, params)
        with self._library_lock:
            library = self._library(account)
            library.remove_list(subscribers.id)
            subscribers.delete()
            self._app.save(library, subscribers)
        return {}

    def _row_values(self, subscribers: SubscriberList, params: dict[str, Any]) -> dict[str, Any]:
        """A subscriber's values: ``Fields`` as an object (or JSON text), and any parameter
        named like one of the list's fields."""
        values: dict[str, Any] = {}
        given = params.get("Fields")
        if isinstance(given, str) and given.strip().startswith("{"):
            try:
                given = orjson.loads(given)
            except orjson.JSONDecodeError:
                raise RequestRejected(E.Lists.INVALID_OPTION.format(name="Fields")) from None
        if isinstance(given, dict):
            values.update(given)
        elif given not in (None, ""):
            raise RequestRejected(E.Lists.INVALID_OPTION.format(name="Fields"))
        for name, value in params.items():
            if name not in ("ListID", "Fields") and subscribers.field_named(name) is not None:
                values[name] = value
        return values

    def _valid_row(self, subscribers: SubscriberList, values: dict[str, Any]) -> Any:
        try:
            row = subscribers.prepare_row(values)
        except ListRuleBroken as broken:
            raise _rejected(broken) from None
        if not is_valid_email(row.email):
            raise RequestRejected(
                E.Lists.for_exception("InvalidEmailAddressException", "Email address is invalid.")
            )
        return row

    def subscribe(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        subscribers = self._own_list(account, params)
        row = self._valid_row(subscribers, self._row_values(subscribers, params))
        if subscribers.subscribe([row]):
            raise RequestRejected(
                E.Lists.for_exception(
                    "DuplicateEmailAddressException",
                    "Email address already in List. List does not allow duplicate email addresses.",
                )
            )
        self._app.save(subscribers)
        return {"EmailAddress": row.email}

    def update_subscriber(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        subscribers = self._own_list(account, params)
        row = self._valid_row(subscribers, self._row_values(subscribers, params))
        try:
            subscribers.update_subscriber(row)
        except ListRuleBroken as broken:
            raise _rejected(broken) from None
        self._app.save(subscribers)
        return {"EmailAddress": row.email}

    def _email_command(
        self, account: Account, params: dict[str, Any], act: Callable[[SubscriberList, str], None]
    ) -> dict[str, Any]:
        subscribers = self._own_list(account, params)
        email = text_param(params.get("EmailAddress"))
        if email is None:
            raise RequestRejected(E.Lists.MISSING_PARAMETER.format(name="EmailAddress"))
        try:
            act(subscribers, email)
        except ListRuleBroken as broken:
            raise _rejected(broken) from None
        self._app.save(subscribers)
        return {"EmailAddress": email.lower()}

    def unsubscribe(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        return self._email_command(account, params, lambda s, e: s.unsubscribe(e))

    def delete_subscriber(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        return self._email_command(account, params, lambda s, e: s.remove(e))

    def get_subscribers(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        subscribers = self._own_list(account, params)
        start = count_param(params.get("RecordsFrom"), 0, "RecordsFrom")
        count = min(
            count_param(params.get("RecordsPerRequest"), 100, "RecordsPerRequest"), MAX_PAGE
        )
        keys = list(subscribers.subscribers)[start : start + count]
        return {
            "TotalSubscribers": len(subscribers.subscribers),
            "Subscribers": [
                {
                    **subscribers.subscribers[key],
                    "Status": "Unsubscribed"
                    if subscribers.subscribers[key][EMAIL_FIELD] in subscribers.unsubscribed
                    else "Active",
                }
                for key in keys
            ],
        }

    def import_subscribers(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        subscribers = self._own_list(account, params)
        data = params.get("Data")
        fmt = (text_param(params.get("Format")) or "csv").lower()
        if data is None or data == "":
            raise RequestRejected(E.Lists.MISSING_PARAMETER.format(name="Data"))
        if fmt not in ("csv", "json"):
            raise RequestRejected(E.Lists.INVALID_OPTION.format(name="Format"))
        rows = list(_json_rows(data) if fmt == "json" else _csv_rows(data))
        # Refused whole, before anything is recorded.
        if len(rows) > MAX_IMPORT_ROWS:
            raise RequestRejected(E.Lists.TOO_MANY_RECORDS.format(limit=MAX_IMPORT_ROWS))
        return self.import_rows(subscribers, rows).as_dict()

    def import_rows(
        self,
        subscribers: SubscriberList,
        rows: Iterable[tuple[int, dict[str, Any] | str]],
        progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        """Validate and add rows (line number, values or the reason it could not be read);
        valid rows are kept, invalid ones reported by line, in batches of one event each."""
        report = ImportReport()
        batch: list[Any] = []
        seen = 0

        def flush() -> None:
            if batch:
                refused = {id(row) for row in subscribers.subscribe([row for _, row in batch])}
                report.duplicates += len(refused)
                report.imported += len(batch) - len(refused)
                report.invalid += [
                    {"Line": line, "Error": "Email address already in List."}
                    for line, row in batch
                    if id(row) in refused
                ]
                self._app.save(subscribers)
                batch.clear()

        for line, values in rows:
            seen += 1
            if isinstance(values, str):
                report.invalid.append({"Line": line, "Error": values})
                continue
            try:
                row = subscribers.prepare_row(values)
            except ListRuleBroken as broken:
                report.invalid.append({"Line": line, "Error": broken.message})
                continue
            if not is_valid_email(row.email):
                report.invalid.append({"Line": line, "Error": "Email address is invalid."})
                continue
            batch.append((line, row))
            if len(batch) >= IMPORT_BATCH:
                flush()
                if progress:
                    progress(seen)
        flush()
        if progress:
            progress(seen)
        return report

    # Saved segments.

    def _segment_param(self, account: Account, params: dict[str, Any]) -> Segment:
        """``RulesJsonBundle``: rules over lists of the account only."""
        from domain.segments import SegmentError, parse_segment

        if params.get("RulesJsonBundle") in (None, ""):
            raise RequestRejected(E.Lists.MISSING_PARAMETER.format(name="RulesJsonBundle"))
        try:
            segment = parse_segment(params["RulesJsonBundle"])
        except SegmentError as error:
            raise RequestRejected(
                E.Lists.INVALID_OPTION.format(name=f"RulesJsonBundle ({error})")
            ) from None
        self._check_lists(account, [c.list_id for c in segment.criteria])
        return segment

    def create_segment(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        from domain.segments import to_bundle

        name = text_param(params.get("SegmentName"))
        if name is None:
            raise RequestRejected(E.Lists.MISSING_PARAMETER.format(name="SegmentName"))
        segment = self._segment_param(account, params)
        with self._library_lock:
            library = self._library(account)
            if any(n.lower() == name.lower() for n in library.segments.values()):
                raise RequestRejected(E.Lists.DUPLICATE_NAME)
            saved = SavedSegment(
                id=new_id(), account_id=account.id, name=name[:255], bundle=to_bundle(segment)
            )
            library.add_segment(saved.id, saved.name)
            answer = {"SegmentID": str(saved.id)}
            self._app.save(library, saved, *answered(answer))
        return answer

    def count_segment(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        """How many active subscribers a RulesJsonBundle picks now (ours: what a segment
        editor shows before the segment is saved or a campaign sent to it)."""
        from domain.segments import evaluate

        segment = self._segment_param(account, params)
        members = {
            c.list_id: found.active_subscribers()
            for c in segment.criteria
            if (found := self._get(uuid_param(c.list_id), SubscriberList)) is not None
        }
        return {"Subscribers": len(evaluate(segment, members))}

    def get_segments(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        found = [self._get(i, SavedSegment) for i in self._library(account).segments]
        return {
            "Segments": [
                {"SegmentID": str(s.id), "SegmentName": s.name, "RulesJsonBundle": s.bundle}
                for s in found
                if s is not None and not s.is_deleted
            ]
        }

    def delete_segment(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        saved = self._get(uuid_param(params.get("SegmentID")), SavedSegment)
        if saved is None or saved.account_id != account.id or saved.is_deleted:
            raise RequestRejected(E.Lists.INVALID_GROUP_ID)
        with self._library_lock:
            library = self._library(account)
            library.remove_segment(saved.id)
            saved.delete()
            self._app.save(library, saved)
        return {}

    # Campaign emails.

    def _own_email(self, account: Account, value: Any) -> CampaignEmail | None:
        found = self._get(uuid_param(value), CampaignEmail)
        if found is None or found.account_id != account.id or found.is_deleted:
            return None
        return found

    def _email_values(
        self, account: Account, params: dict[str, Any], current: CampaignEmail | None
    ) -> dict[str, str]:
        def value(name: str, fallback: str) -> str:
            given = params.get(name)
            if given is None:
                return fallback
            if not isinstance(given, str) or "\x00" in given:
                raise RequestRejected(E.Lists.INVALID_OPTION.format(name=name))
            return given

        values = {
            "name": value("EmailName", current.name if current else ""),
            "subject": value("Subject", current.subject if current else ""),
            "from_name": value("FromName", current.from_name if current else ""),
            "from_email": value("FromEmail", current.from_email if current else "").strip().lower(),
            "reply_to": value("ReplyTo", current.reply_to if current else "").strip().lower(),
            "html": value("MessageHTML", current.html if current else ""),
            "plain": value("MessagePlain", current.plain if current else ""),
        }
        if not values["subject"].strip():
            raise RequestRejected(E.Lists.MISSING_SUBJECT)
        if not values["from_name"].strip():
            raise RequestRejected(E.Lists.MISSING_FROM_NAME)
        # What a header may not hold (line breaks, control characters) would fail every
        # recipient at send time: refused now.
        for name, key in (("Subject", "subject"), ("FromName", "from_name")):
            if UNSAFE_TEXT.search(values[key]):
                raise RequestRejected(E.Lists.INVALID_OPTION.format(name=name))
        if not is_valid_email(values["from_email"]) or not self._sender_domain(
            account, values["from_email"]
        ):
            raise RequestRejected(E.Lists.INVALID_FROM)
        if values["reply_to"] and not is_valid_email(values["reply_to"]):
            raise RequestRejected(E.Lists.INVALID_REPLY)
        if not values["html"].strip() and not values["plain"].strip():
            raise RequestRejected(E.Lists.NO_MESSAGE)
        # Each part is a template (merge tags included): a broken one is refused now, with
        # its line, rather than at send time.
        for part, source, html in (
            ("Subject", values["subject"], False), ("FromName", values["from_name"], False),
            ("MessageHTML", values["html"], True), ("MessagePlain", values["plain"], False),
        ):  # fmt: skip
            try:
                check(part, from_merge_tags(source), html=html)
            except TemplateRefused as refused:
                raise RequestRejected(
                    E.Lists.INVALID_TEMPLATE.format(reason=str(refused))
                ) from None
        return values

    def _sender_domain(self, account: Account, email: str) -> UUID | None:
        """The account's verified-or-not, active sender domain the address is on."""
        from domain.account import SenderDomain

        best: tuple[int, UUID] | None = None
        for domain_id in account.domain_ids:
            domain = self._get(domain_id, SenderDomain)
            if domain is None or domain.is_deleted or not domain.is_active:
                continue
            # The most specific domain wins (news.example.com over example.com).
            if domain_accepts_sender(domain.name, email) and (
                best is None or len(domain.name) > best[0]
            ):
                best = (len(domain.name), domain.id)
        return best[1] if best else None

    def sender_domain_for(self, account_id: UUID, email: str) -> UUID | None:
        account = self._app.account(account_id)
        return self._sender_domain(account, email)

    def create_email(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        account = self._app.account(account.id)
        values = self._email_values(account, params, None)
        email = CampaignEmail(id=new_id(), account_id=account.id, **values)
        with self._library_lock:
            library = self._library(account)
            library.add_email(email.id)
            answer = {"EmailID": str(email.id)}
            self._app.save(library, email, *answered(answer))
        return answer

    def update_email(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        email = self._own_email(account, params.get("EmailID"))
        if email is None:
            raise RequestRejected(E.Lists.INVALID_EMAIL_ID)
        email.update(**self._email_values(self._app.account(account.id), params, email))
        self._app.save(email)
        return {"EmailID": str(email.id)}

    @staticmethod
    def _describe_email(email: CampaignEmail) -> dict[str, Any]:
        return {
            "EmailID": str(email.id),
            "EmailName": email.name,
            "Subject": email.subject,
            "FromName": email.from_name,
            "FromEmail": email.from_email,
            "ReplyTo": email.reply_to,
            "MessageHTML": email.html,
            "MessagePlain": email.plain,
        }

    def get_email(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        email = self._own_email(account, params.get("EmailID"))
        if email is None:
            raise RequestRejected(E.Lists.INVALID_EMAIL_ID)
        return {"Email": self._describe_email(email)}

    def preview_email(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        """The email as one subscriber of a list gets it, merge tags filled (ours: what a
        campaign editor shows before anything is sent). ``EmailAddress`` picks the
        subscriber; without it, the list's first."""
        from engine.campaigns.runner import campaign_content
        from engine.delivery.personalise import Personaliser

        email = self._own_email(account, params.get("EmailID"))
        if email is None:
            raise RequestRejected(E.Lists.INVALID_EMAIL_ID)
        subscribers = self._own_list(account, params)
        wanted = (text_param(params.get("EmailAddress")) or "").lower()
        active = subscribers.active_subscribers()
        fields = next((row for row in active if not wanted or row[EMAIL_FIELD] == wanted), None)
        if fields is None:
            raise RequestRejected(
                E.Lists.for_exception(
                    "InvalidEmailAddressException", "Email address is not on this list."
                )
            )
        shown = Personaliser().preview(campaign_content(email), fields[EMAIL_FIELD], dict(fields))
        return {
            "EmailAddress": fields[EMAIL_FIELD],
            "Subject": shown.subject,
            "FromName": shown.sender.name,
            "FromEmail": shown.sender.email,
            "MessageHTML": shown.html or "",
            "MessagePlain": shown.plain or "",
        }

    def get_emails(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        emails = [self._get(i, CampaignEmail) for i in self._library(account).emails]
        return {"Emails": [self._describe_email(e) for e in emails if e and not e.is_deleted]}

    # Campaigns.

    def _own_campaign(self, account: Account, value: Any) -> Campaign | None:
        found = self._get(uuid_param(value), Campaign)
        if found is None or found.account_id != account.id or found.is_deleted:
            return None
        return found

    def _changed(self, campaign: Campaign) -> None:
        if self._on_change is not None:
            self._on_change(campaign.id)

    def create_campaign(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        name = text_param(params.get("CampaignName"))
        if name is None or len(name) > 255:
            raise RequestRejected(E.CampaignCreate.MISSING_NAME)
        campaign = Campaign(
            id=new_id(), account_id=account.id, name=name, created_at=datetime.now(UTC)
        )
        with self._library_lock:
            library = self._library(account)
            library.add_campaign(campaign.id)
            answer = {"CampaignID": str(campaign.id)}
            self._app.save(library, campaign, *answered(answer))
        return answer

    def update_campaign(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        from domain.campaign_schedule import ScheduleError, parse_schedule
        from domain.segments import SegmentError, parse_segment, to_bundle

        if text_param(params.get("CampaignID")) is None:
            raise RequestRejected(E.CampaignUpdate.MISSING_ID)
        campaign = self._own_campaign(account, params["CampaignID"])
        if campaign is None:
            raise RequestRejected(E.CampaignUpdate.NOT_FOUND)
        status = text_param(params.get("CampaignStatus"))
        if status is not None and status.capitalize() not in ("Draft", "Ready"):
            raise RequestRejected(E.CampaignUpdate.INVALID_STATUS)
        email_id: UUID | None = None
        if params.get("RelEmailID") not in (None, ""):
            email = self._own_email(account, params["RelEmailID"])
            if email is None:
                raise RequestRejected(E.CampaignUpdate.EMAIL_NOT_OWNED)
            email_id = email.id
        schedule: dict[str, Any] | None = None
        if params.get("ScheduleType") not in (None, ""):
            try:
                schedule = parse_schedule(params).to_dict()
            except ScheduleError as error:
                raise RequestRejected(ErrorText(error.code, error.message)) from None
        audience: dict[str, Any] | None = None
        if params.get("RulesJsonBundle") not in (None, ""):
            try:
                segment = parse_segment(params["RulesJsonBundle"])
            except SegmentError as error:
                raise RequestRejected(
                    E.Lists.INVALID_OPTION.format(name=f"RulesJsonBundle ({error})")
                ) from None
            self._check_lists(account, [c.list_id for c in segment.criteria])
            audience = {"rules": to_bundle(segment)}
        elif params.get("RecipientListsAndSegments") not in (None, ""):
            include = _names(params.get("RecipientListsAndSegments"))
            exclude = _names(params.get("Exclude_RecipientListsAndSegments"))
            self._check_lists(account, include + exclude, segments_too=True)
            audience = {"include": include, "exclude": exclude}
        content_change = email_id is not None or schedule is not None or audience is not None
        if content_change and campaign.status not in EDITABLE:
            raise RequestRejected(E.CampaignUpdate.INVALID_STATUS)
        if status == "Ready" and campaign.status not in (
            CampaignStatus.DRAFT,
            CampaignStatus.READY,
        ):
            raise RequestRejected(E.CampaignUpdate.INVALID_STATUS)
        if status == "Draft" and campaign.status not in EDITABLE:
            raise RequestRejected(E.CampaignUpdate.INVALID_STATUS)
        name = text_param(params.get("CampaignName"))
        if name is not None and name != campaign.name:
            campaign.rename(name[:255])
        if content_change:
            campaign.change(email_id=email_id, schedule=schedule, audience=audience)
        options: dict[str, Any] = {
            key: params[key]
            for key in (
                "ApprovalUserExplanation",
                "GoogleAnalyticsDomains",
                "PublishOnRSS",
                "S2SEnabled",
            )
            if key in params and isinstance(params[key], str | int | bool)
        }
        if "IPPool" in params and self._check_pool is not None:
            # The pool its messages leave through, from the next one delivered on.
            options["IPPool"] = self._check_pool(account, params["IPPool"])
        tags = _names(params.get("Tags")) if "Tags" in params else campaign.tags
        if options or tags != campaign.tags:
            campaign.set_options({**campaign.options, **options}, tags[:50])
        if status == "Draft":
            campaign.return_to_draft()
        elif status == "Ready":
            self._check_complete(campaign, E.CampaignUpdate.INVALID_STATUS)
            campaign.approve(datetime.now(UTC))
        self._app.save(campaign)
        self._changed(campaign)
        return {}

    def _check_lists(
        self, account: Account, list_ids: list[str], segments_too: bool = False
    ) -> None:
        """Every id names a list of the account (or, where allowed, a saved segment)."""
        for list_id in list_ids:
            found: SubscriberList | SavedSegment | None = self._get(
                uuid_param(list_id), SubscriberList
            )
            if found is None and segments_too:
                found = self._get(uuid_param(list_id), SavedSegment)
            if found is None or found.account_id != account.id or found.is_deleted:
                raise RequestRejected(E.Lists.INVALID_GROUP_ID)

    def _check_complete(self, campaign: Campaign, error: ErrorText) -> None:
        if campaign.email_id is None:
            raise RequestRejected(error.format(reason="it has no email (RelEmailID)"))
        if not campaign.audience:
            raise RequestRejected(error.format(reason="it has no recipients"))

    def approve(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        if text_param(params.get("CampaignID")) is None:
            raise RequestRejected(E.CampaignApprove.MISSING_ID)
        campaign = self._own_campaign(account, params["CampaignID"])
        if campaign is None:
            raise RequestRejected(E.CampaignApprove.NOT_FOUND)
        self._check_complete(campaign, E.CampaignApprove.INCOMPLETE)
        if self._recently_sent_alike(account, campaign):
            raise RequestRejected(E.CampaignApprove.DUPLICATE)
        try:
            campaign.approve(datetime.now(UTC))
        except IllegalCampaignTransition as illegal:
            raise RequestRejected(
                E.CampaignApprove.INCOMPLETE.format(reason=f"it is {illegal.status.value}")
            ) from None
        self._app.save(campaign)
        self._changed(campaign)
        return {}

    def _recently_sent_alike(self, account: Account, campaign: Campaign) -> bool:
        """Another campaign with the same subject to one of the same lists started within
        ``DUPLICATE_CAMPAIGN_WINDOW_SECONDS`` (DuplicateMassEmailException)."""
        window = self._app.settings.duplicate_campaign_window_seconds
        email = self._get(campaign.email_id, CampaignEmail)
        if window <= 0 or email is None:
            return False
        since = datetime.now(UTC) - timedelta(seconds=window)
        lists = _audience_lists(campaign.audience)
        for other_id in self._library(account).campaigns:
            other = self._get(other_id, Campaign)
            if (
                other is None
                or other.id == campaign.id
                or other.is_deleted
                or other.sending_started_at is None
                or other.sending_started_at < since
                or not lists & _audience_lists(other.audience)
            ):
                continue
            other_email = self._get(other.email_id, CampaignEmail)
            if other_email is not None and other_email.subject.strip() == email.subject.strip():
                return True
        return False

    def _lifecycle(
        self,
        account: Account,
        params: dict[str, Any],
        missing: ErrorText,
        not_found: ErrorText,
        wrong_state: ErrorText,
        act: Callable[[Campaign, datetime], None],
    ) -> Campaign:
        if text_param(params.get("CampaignID")) is None:
            raise RequestRejected(missing)
        conflicts = 0
        while True:
            campaign = self._own_campaign(account, params["CampaignID"])
            if campaign is None:
                raise RequestRejected(not_found)
            try:
                act(campaign, datetime.now(UTC))
            except IllegalCampaignTransition as illegal:
                raise RequestRejected(wrong_state.format(status=illegal.status.value)) from None
            try:
                self._app.save(campaign)
            except IntegrityError:
                # The runner recorded the campaign's progress (a batch, its end) since it
                # was read: read it again and judge the command on what it is now.
                conflicts += 1
                if conflicts == LIFECYCLE_ATTEMPTS:
                    raise
                continue
            self._changed(campaign)
            return campaign

    def pause(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        self._lifecycle(
            account, params, E.CampaignPause.MISSING_ID, E.CampaignPause.NOT_FOUND,
            E.CampaignPause.NOT_SENDING, lambda c, at: c.pause(at),
        )  # fmt: skip
        return {}

    def resume(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        self._lifecycle(
            account, params, E.CampaignResume.MISSING_ID, E.CampaignResume.NOT_FOUND,
            E.CampaignResume.NOT_PAUSED, lambda c, at: c.resume(at),
        )  # fmt: skip
        return {}

    def cancel(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        self._lifecycle(
            account, params, E.CampaignCancel.MISSING_ID, E.CampaignCancel.NOT_FOUND,
            E.CampaignCancel.NOT_CANCELLABLE, lambda c, at: c.cancel(at),
        )  # fmt: skip
        return {}

    def copy(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        source = self._own_campaign(account, params.get("CampaignID"))
        if source is None:
            raise RequestRejected(E.CampaignCopy.INVALID_SOURCE)
        copy = Campaign(
            id=new_id(),
            account_id=account.id,
            name=f"{source.name} (copy)"[:255],
            created_at=datetime.now(UTC),
        )
        # Everything but the schedule, which the copy gets anew (Immediate) as 001 says.
        copy.change(email_id=source.email_id, schedule=None, audience=dict(source.audience))
        if source.options or source.tags:
            copy.set_options(dict(source.options), list(source.tags))
        with self._library_lock:
            library = self._library(account)
            library.add_campaign(copy.id)
            answer = {"NewCampaignID": str(copy.id)}
            self._app.save(library, copy, *answered(answer))
        return answer

    def delete_campaigns(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        ids = _names(params.get("Campaigns"))
        if not ids or len(ids) > 1000:
            raise RequestRejected(E.CampaignsDelete.INVALID)
        campaigns = [self._own_campaign(account, value) for value in ids]
        if any(c is None for c in campaigns):
            raise RequestRejected(E.CampaignsDelete.INVALID)
        now = datetime.now(UTC)
        with self._library_lock:
            library = self._library(account)
            for campaign in campaigns:
                assert campaign is not None
                campaign.delete(now)
                library.remove_campaign(campaign.id)
            self._app.save(library, *[c for c in campaigns if c is not None])
        for campaign in campaigns:
            if campaign is not None:
                self._changed(campaign)
        return {"ErrorText": ""}

    def _describe(self, campaign: Campaign, statistics: bool, tags: bool) -> dict[str, Any]:
        described: dict[str, Any] = {
            "CampaignID": str(campaign.id),
            "CampaignName": campaign.name,
            "Name": campaign.name,
            "CampaignStatus": campaign.status.value,
            "Status": campaign.status.value,
            "RelEmailID": str(campaign.email_id) if campaign.email_id else None,
            "ScheduleType": campaign.schedule.get("kind", "Immediate"),
            "Schedule": campaign.schedule,
            # As Campaign.Update takes them (empty where the audience is a RulesJsonBundle).
            "RecipientListsAndSegments": ",".join(campaign.audience.get("include", [])),
            "NextSendDate": iso_time(campaign.due_at),
            "CreatedDate": iso_time(campaign.created_at),
            "SendDate": iso_time(campaign.sending_started_at),
            "Instances": campaign.instances_started,
        }
        if tags:
            described["Tags"] = campaign.tags
        if statistics and self._statistics is not None:
            described.update(self._statistics(campaign.id))
            # Left out by the suppression lists: on record, not in the reporting tables.
            described["TotalSuppressed"] = sum(
                len(instance.suppressed)
                for number in range(1, campaign.instances_started + 1)
                if (
                    instance := self._get(
                        fanout_id(instance_id_for(campaign.id, number)), CampaignInstance
                    )
                )
                is not None
            )
        return described

    def get_campaign(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        value = params.get("campaignid", params.get("CampaignID"))
        if text_param(value) is None:
            raise RequestRejected(E.CampaignGet.MISSING_ID)
        campaign = self._own_campaign(account, value)
        if campaign is None:
            raise RequestRejected(E.CampaignGet.INVALID_ID)
        statistics = _flag(
            params.get("retrievestatistics", params.get("RetrieveStatistics")), "retrievestatistics"
        )
        tags = _flag(params.get("retrievetags", params.get("RetrieveTags")), "retrievetags")
        return {"Campaign": self._describe(campaign, statistics, tags)}

    def get_campaigns(self, account: Account, params: dict[str, Any]) -> dict[str, Any]:
        campaigns = [self._get(i, Campaign) for i in self._library(account).campaigns]
        found = [c for c in campaigns if c is not None and not c.is_deleted]
        status = (text_param(params.get("CampaignStatus")) or "All").capitalize()
        if status != "All":
            found = [c for c in found if c.status.value == status]
        keyword = (text_param(params.get("SearchKeyword")) or "").lower()
        if keyword:
            found = [c for c in found if keyword in c.name.lower()]
        wanted_tags = set(_names(params.get("Tags")))
        if wanted_tags:
            found = [c for c in found if wanted_tags & set(c.tags)]
        order_field = (text_param(params.get("OrderField")) or "CreatedDate").lower()
        descending = (text_param(params.get("OrderType")) or "DESC").upper() != "ASC"
        order = list(CampaignStatus)
        if order_field == "sort-by-status":
            # Always descending, as 001 says: the furthest along first.
            found.sort(key=lambda c: order.index(c.status), reverse=True)
        elif order_field == "sort-by-send-date":
            found.sort(
                key=lambda c: c.sending_started_at or c.due_at or datetime.min.replace(tzinfo=UTC),
                reverse=descending,
            )
        elif order_field in ("campaignname", "name"):
            found.sort(key=lambda c: c.name.lower(), reverse=descending)
        elif order_field in ("campaignstatus", "status"):
            found.sort(key=lambda c: c.status.value, reverse=descending)
        else:
            found.sort(key=lambda c: c.created_at, reverse=descending)
        start = count_param(params.get("RecordsFrom"), 0, "RecordsFrom")
        count = min(count_param(params.get("RecordsPerRequest"), 50, "RecordsPerRequest"), MAX_PAGE)
        statistics = _flag(params.get("RetrieveStatistics"), "RetrieveStatistics")
        tags = _flag(params.get("RetrieveTags"), "RetrieveTags")
        return {
            "ErrorText": "",
            "Campaigns": [
                self._describe(c, statistics, tags) for c in found[start : start + count]
            ],
            "TotalCampaigns": len(found),
        }


def _audience_lists(audience: dict[str, Any]) -> set[str]:
    if "rules" in audience:
        return {str(c.get("list_id")) for c in audience["rules"].get("criteria", [])}
    return set(audience.get("include", []))


def _csv_rows(data: Any) -> Iterable[tuple[int, dict[str, Any] | str]]:
    if not isinstance(data, str):
        raise RequestRejected(E.Lists.INVALID_OPTION.format(name="Data"))
    reader = csv.reader(io.StringIO(data))
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        return
    names = [name.strip() for name in header]
    for line, record in enumerate(reader, start=2):
        if not record or all(not cell.strip() for cell in record):
            continue
        if len(record) != len(names):
            yield line, f"expected {len(names)} values, found {len(record)}"
            continue
        yield line, dict(zip(names, record, strict=True))


def _json_rows(data: Any) -> Iterable[tuple[int, dict[str, Any] | str]]:
    if isinstance(data, str):
        try:
            data = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise RequestRejected(E.Lists.INVALID_OPTION.format(name="Data")) from None
    if not isinstance(data, list):
        raise RequestRejected(E.Lists.INVALID_OPTION.format(name="Data"))
    for line, item in enumerate(data, start=1):
        if isinstance(item, dict):
            yield line, item
        else:
            yield line, "not an object"


def rows_from_file(path: str) -> list[tuple[int, dict[str, Any] | str]]:
    """For the CLI: a .json file is an array of objects, anything else CSV with a header."""
    with open(path, encoding="utf-8-sig") as file:
        text = file.read()
    return list(_json_rows(text)) if path.lower().endswith(".json") else list(_csv_rows(text))
