"""The console's pages: a login with a session cookie, and the account's sender domains.

Every page calls the services the commands of ``/api.php`` call, with the same
parameters, so each rule (what a domain name may be, who may see a domain, how a login is
checked and locked out) lives in one place; a refusal shows the command's own text.

Security: the session is a cookie (HttpOnly, SameSite=Strict, Secure behind https); every
form carries a CSRF token (bound to the session, or for the login form a double-submit
cookie) and a cross-origin ``Origin`` is refused; the pages' Content-Security-Policy
allows no inline script, and Jinja2 escapes every value.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from api.commands import engine_commands
from api.permissions import command_areas, require_role
from domain import errors as E
from domain.account import Account
from domain.errors import RequestRejected
from domain.users import Role, may_grant
from domain.webhook import WEBHOOK_EVENTS
from engine.accounts.callers import Caller, current_request
from engine.keys import session_secret
from engine.params import MAX_PAGED_RECORDS, time_zone, uuid_param
from engine.runtime.composition import Engine
from projections.events import EVENT_TYPE_NAMES
from projections.stats import CAMPAIGN_KINDS, SERIES_KINDS, account_overview, campaign_series

__all__ = ["ROOT", "SESSION_COOKIE", "install_console"]

ROOT = "/console"
SESSION_COOKIE = "sendstream_session"
LOGIN_COOKIE = "sendstream_login"  # the login form's CSRF token, submitted twice
MAX_FORM_BYTES = 64 * 1024
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
HOME = f"{ROOT}/overview"
_PERIODS = {"24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
# The account's suppression lists: their page's name → the commands' noun.
SUPPRESSION_LISTS = {
    "unsubscribes": "Unsubscribe", "bounces": "Bounce", "complaints": "Complaint",
    "blocks": "Block",
}  # fmt: skip
CAMPAIGN_STATUSES = ("All", "Draft", "Ready", "Scheduled", "Sending", "Paused", "Sent",
                     "Cancelled", "Failed")  # fmt: skip
# The lifecycle commands a campaign's page offers, with what it says once one is done.
CAMPAIGN_ACTIONS = {
    "edit": "The changes were saved.",
    "approve": "Approved: it is sent when it is due.",
    "pause": "Paused: no more of its mail leaves until it is resumed.",
    "resume": "Resumed.",
    "cancel": "Cancelled: the rest of its mail will not be sent.",
}
# The segment editor's bounds: the bundle allows more (domain.segments), a form this
# size stays readable.
SEGMENT_GROUPS = 10
SEGMENT_RULES = 20
SEGMENT_OPERATORS = (
    "equals", "not_equals", "contains", "not_contains", "begins_with", "ends_with",
    "is_set", "is_not_set", "greater_than", "less_than",
)  # fmt: skip
_ADDRESSES_PER_PAGE = 100
_ZONES = sorted(zoneinfo.available_timezones())
_EVENTS_PER_PAGE = 50
_LONGEST_FIELD = 600
_FLAGS = (
    ("LinkTracking", "Track link clicks"),
    ("OpenTracking", "Track opens"),
    ("UnsubscribeLink", "Add an unsubscribe link and List-Unsubscribe header"),
)


class Refused(Exception):
    """A request the console answers with a page of its own status (403, 413)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LoginNeeded(Exception):
    """No session, or one that ended: the answer is the login page."""


class Console:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.gateway = engine.gateway
        self.secret = session_secret(engine.settings)
        self.templates = Environment(
            loader=PackageLoader("api.console", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        # The /api.php commands by name: the pages run them as the endpoint does.
        self.commands = {spec.name: spec.handler for spec in engine_commands(engine).values()}
        self.command_names = {handler: name for name, handler in self.commands.items()}
        self.templates.filters["local"] = _local_time
        self.templates.filters["shown"] = _shown_value

    # Sessions and forms.

    def csrf_of(self, session: str) -> str:
        return hmac.new(self.secret, b"csrf:" + session.encode(), hashlib.sha256).hexdigest()

    def caller_of(self, request: Request) -> Caller | None:
        session = request.cookies.get(SESSION_COOKIE, "")
        if not session:
            return None
        try:
            return self.gateway.identify({"SessionID": session})
        except RequestRejected:
            return None

    def account_of(self, request: Request) -> Account | None:
        caller = self.caller_of(request)
        return caller.account if caller is not None else None

    def signed_in(self, request: Request) -> Account:
        """The dependency of every page but the login's: the session's account. Its user
        is the request's caller, whose role every command the page runs is checked for."""
        caller = self.caller_of(request)
        if caller is None:
            raise LoginNeeded
        current_request().caller = caller
        return caller.account

    async def posted(self, request: Request) -> dict[str, str]:
        """The dependency of every form but the login's: its fields, once checked."""
        self.signed_in(request)
        return await self.form(request, self.csrf_of(request.cookies[SESSION_COOKIE]))

    async def form(
        self, request: Request, expected_token: str, limit: int = MAX_FORM_BYTES
    ) -> dict[str, str]:
        """The form's fields, after the checks every POST passes; a file's as its text."""
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):
            raise Refused(403, "This form was sent from another site.")
        declared = request.headers.get("content-length", "")
        if not declared.isdigit() or int(declared) > limit:
            raise Refused(413, f"The form is larger than the console accepts ({limit:,} bytes).")
        fields: dict[str, str] = {}
        for name, value in (await request.form(max_part_size=limit)).items():
            if isinstance(value, str):
                fields[name] = value
            else:  # an uploaded file
                fields[name] = (await value.read(limit + 1)).decode("utf-8-sig", "replace")
        if not expected_token or not hmac.compare_digest(
            fields.get("csrf", "").encode(), expected_token.encode()
        ):
            raise Refused(403, "The form expired or was not sent from this console. Try again.")
        return fields

    def page(
        self,
        request: Request,
        template: str,
        account: Account | None,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        session = request.cookies.get(SESSION_COOKIE, "")
        caller = current_request().caller if account else None
        html = self.templates.get_template(template).render(
            account=account,
            caller=caller,
            csrf=self.csrf_of(session) if account else context.pop("csrf", ""),
            **context,
        )
        return HTMLResponse(
            html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
        )

    def cookie(self, response: Response, request: Request, name: str, value: str, age: int) -> None:
        response.set_cookie(
            name, value, max_age=age, path=ROOT, httponly=True, samesite="strict",
            secure=request.url.scheme == "https",
        )  # fmt: skip

    async def command(self, name: str, account: Account, **params: Any) -> dict[str, Any]:
        """The /api.php command ``name``, as the endpoint runs it for ``account``."""
        return await self.call(self.commands[name], account, **params)

    async def call(
        self, handler: Callable[[Account, dict[str, Any]], dict[str, Any]],
        account: Account, **params: Any,
    ) -> dict[str, Any]:  # fmt: skip
        """A command's service, off the event loop, as /api.php runs it (for the role of the
        session's user: a command nobody named is an owner's)."""
        context = current_request()
        if context.caller is None:
            raise LoginNeeded
        name = self.command_names.get(handler, "")
        try:
            require_role(context.caller, name)
        except RequestRejected as refused:  # a page of its own, not the form's own error
            raise Refused(403, refused.errors[0].message) from None
        context.command = name
        return await asyncio.to_thread(handler, account, params)


def _local_time(moment: datetime | str | None, zone: str) -> str:
    """A time in the account's zone, to the second, with the zone's abbreviation."""
    if moment is None or moment == "":
        return ""
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return moment
    else:
        parsed = moment
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(time_zone(zone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _shown_value(value: Any) -> str:
    """An event's field as text, long texts cut (the MIME source is shown whole apart)."""
    text = value if isinstance(value, str) else orjson.dumps(value, default=str).decode()
    if len(text) > _LONGEST_FIELD:
        return f"{text[:_LONGEST_FIELD]}… ({len(text) - _LONGEST_FIELD:,} more characters)"
    return text


def every_bucket(
    series: list[dict[str, Any]], start: datetime, end: datetime, by_day: bool, zone: str
) -> list[dict[str, Any]]:
    """The series with a point for every hour (or day of the account's zone) of the
    period, those without mail at zero: a chart's gaps are quiet hours, not missing ones."""
    found = {point["At"]: point for point in series}
    keys: list[str] = []
    if by_day:
        day, last = start.astimezone(time_zone(zone)).date(), end.astimezone(time_zone(zone)).date()
        while day <= last:
            keys.append(day.isoformat())
            day += timedelta(days=1)
    else:
        hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        while hour <= end:
            keys.append(hour.strftime("%Y-%m-%dT%H:00:00Z"))
            hour += timedelta(hours=1)
    empty = dict.fromkeys(SERIES_KINDS, 0)
    return [found.get(key, {"At": key, **empty}) for key in keys]


def _campaign_of(fields: dict[str, str]) -> dict[str, str]:
    """The campaign form's fields as Campaign.Update takes them."""
    taken = {
        "CampaignName": fields.get("name", ""), "RelEmailID": fields.get("email", ""),
        "RecipientListsAndSegments": fields.get("list", ""), "ScheduleType": "Immediate",
    }  # fmt: skip
    if fields.get("when") == "later":
        taken |= {"ScheduleType": "Future", "SendDate": fields.get("send_date", ""),
                  "SendTime": fields.get("send_time", ""),
                  "SendTimeZone": fields.get("send_zone", "")}  # fmt: skip
    return taken


def _email_of(fields: dict[str, str]) -> dict[str, str]:
    """The email form's fields as Email.Create and Email.Update take them."""
    return {
        "EmailName": fields.get("name", ""), "Subject": fields.get("subject", ""),
        "FromName": fields.get("from_name", ""), "FromEmail": fields.get("from_email", ""),
        "MessageHTML": fields.get("html", ""), "MessagePlain": fields.get("plain", ""),
    }  # fmt: skip


def _bounded(text: str, low: int, high: int) -> int:
    return max(low, min(int(text), high)) if text.isdigit() else low


def segment_form(fields: Mapping[str, str], lists: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The segment editor's form read back: ``combine`` ("all" or "any" of the groups) and
    its ``groups``, each a list, "all" or "any" of its rules, and its rule rows (a field, a
    comparison, a value), with the change its button asked for made (a rule row or a group
    added, a group removed). A fresh form is one group of the first list."""
    first_list = str(lists[0]["ListID"]) if lists else ""
    count = _bounded(fields.get("groups", "1"), 1, SEGMENT_GROUPS)
    groups: list[dict[str, Any]] = []
    for g in range(1, count + 1):
        rows = _bounded(fields.get(f"rules_{g}", "2"), 1, SEGMENT_RULES)
        groups.append({
            "list": fields.get(f"list_{g}", first_list),
            "match": "any" if fields.get(f"match_{g}") == "any" else "all",
            "rules": [
                {"field": fields.get(f"field_{g}_{n}", "").strip(),
                 "operator": fields.get(f"operator_{g}_{n}", SEGMENT_OPERATORS[0]),
                 "value": fields.get(f"value_{g}_{n}", "")}
                for n in range(1, rows + 1)
            ],
        })  # fmt: skip
    action, _, target = fields.get("action", "").partition(":")
    chosen = _bounded(target, 0, len(groups)) - 1
    if action == "add_rule" and chosen >= 0 and len(groups[chosen]["rules"]) < SEGMENT_RULES:
        groups[chosen]["rules"].append({"field": "", "operator": SEGMENT_OPERATORS[0], "value": ""})
    elif action == "add_group" and len(groups) < SEGMENT_GROUPS:
        groups.append({"list": first_list, "match": "all", "rules": [
            {"field": "", "operator": SEGMENT_OPERATORS[0], "value": ""}]})  # fmt: skip
    elif action == "remove_group" and chosen >= 0 and len(groups) > 1:
        del groups[chosen]
    return {"combine": "any" if fields.get("combine") == "any" else "all", "groups": groups}


def _bundle_of(form: Mapping[str, Any]) -> dict[str, Any]:
    """The segment editor's form as a RulesJsonBundle (001): its groups are the criteria,
    joined by "and" (all must hold) or "or"; rule rows without a field are no rules, so a
    group without rules is every subscriber of its list."""

    def joined(match: str) -> str:
        return "and" if match == "all" else "or"

    return {
        "operator": joined(form["combine"]),
        "criteria": [
            {"list_id": group["list"], "operator": joined(group["match"]),
             "rules": [{"type": "fields", "field_id": rule["field"],
                        "operator": rule["operator"], "value": rule["value"]}
                       for rule in group["rules"] if rule["field"]]}
            for group in form["groups"]
        ],
    }  # fmt: skip


def segment_text(bundle: Any, list_names: Mapping[str, str]) -> str:
    """A saved segment's RulesJsonBundle in words: "Readers: City equals Paris and …"."""
    try:
        parsed = orjson.loads(bundle) if isinstance(bundle, str | bytes) else bundle
        criteria = parsed["criteria"]
        groups = []
        for criterion in criteria:
            name = list_names.get(str(criterion["list_id"]), str(criterion["list_id"]))
            rules = [
                " ".join(str(part) for part in (rule.get("field_id"),
                         str(rule.get("operator", "")).replace("_", " "),
                         rule.get("value", "")) if part not in (None, ""))
                for rule in criterion.get("rules") or []
            ]  # fmt: skip
            inner = f" {criterion.get('operator', 'and')} ".join(rules)
            groups.append(f"{name}: {inner}" if rules else f"{name}: every subscriber")
        return f" — {parsed.get('operator', 'or')} — ".join(groups)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return _shown_value(bundle)


def _page_number(text: str, per_page: int = _EVENTS_PER_PAGE) -> int:
    return max(1, min(int(text), MAX_PAGED_RECORDS // per_page)) if text.isdigit() else 1


def install_console(app: FastAPI, engine: Engine) -> None:
    """The console's routes (none in the OpenAPI document) and its files."""
    console = Console(engine)
    router = APIRouter(include_in_schema=False)
    gateway = engine.gateway
    signed_in = Depends(console.signed_in)
    posted = Depends(console.posted)

    def login_redirect() -> RedirectResponse:
        return RedirectResponse(f"{ROOT}/login", status_code=303)

    @app.exception_handler(LoginNeeded)
    async def log_in_first(_: Request, __: Exception) -> Response:
        return login_redirect()

    @app.exception_handler(Refused)
    async def refused(request: Request, error: Exception) -> Response:
        assert isinstance(error, Refused)
        return console.page(request, "refused.html", console.account_of(request), error.status,
                            message=error.message)  # fmt: skip

    def not_found(request: Request, account: Account | None) -> Response:
        return console.page(request, "not_found.html", account, 404)

    @router.get("/")
    async def home() -> RedirectResponse:
        return RedirectResponse(ROOT, status_code=303)

    @router.get(ROOT)
    async def console_home(account: Account = signed_in) -> Response:
        return RedirectResponse(HOME, status_code=303)

    # The overview: the account's figures, their course and the domains that defer most.

    async def overview_of(account: Account, chosen: str) -> dict[str, Any]:
        period = _PERIODS.get(chosen, _PERIODS["24h"])
        domains = (await console.call(gateway.get_domains, account))["Domains"]
        end = datetime.now(UTC)
        start = end - period
        by_day = period > timedelta(days=1)
        found = await asyncio.to_thread(
            account_overview, engine.reporting, [UUID(d["DomainID"]) for d in domains],
            start, end, by_day=by_day, time_zone=account.time_zone,
        )  # fmt: skip
        stats = found["Stats"]
        bounces = stats["HardBounces"] + stats["SoftBounces"] + stats["Blocks"]
        stats["BounceRate"] = round(100 * bounces / stats["Sent"], 2) if stats["Sent"] else 0.0
        return {
            "Range": chosen if chosen in _PERIODS else "24h",
            "Stats": stats,
            "Series": every_bucket(found["Series"], start, end, by_day, account.time_zone),
            "TopDeferringDomains": found["TopDeferringDomains"],
            "Domains": len(domains),
        }

    @router.get(f"{ROOT}/overview")
    async def overview(request: Request, account: Account = signed_in) -> Response:
        shown = await overview_of(account, request.query_params.get("range", "24h"))
        return console.page(
            request, "overview.html", account, section="overview", overview=shown,
            periods=list(_PERIODS), kinds=SERIES_KINDS,
            data=orjson.dumps({"series": shown["Series"], "kinds": SERIES_KINDS,
                               "range": shown["Range"]}).decode(),
        )  # fmt: skip

    @router.get(f"{ROOT}/overview.json")
    async def overview_data(request: Request, account: Account = signed_in) -> Response:
        """What the overview page refreshes itself with while mail flows."""
        shown = await overview_of(account, request.query_params.get("range", "24h"))
        return Response(
            orjson.dumps(shown), media_type="application/json",
            headers={"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )  # fmt: skip

    @router.get(f"{ROOT}/login")
    async def login_form(request: Request) -> Response:
        if console.account_of(request) is not None:
            return RedirectResponse(HOME, status_code=303)
        return login_page(request)

    def login_page(
        request: Request, status: int = 200, headers: dict[str, str] | None = None,
        **context: Any,
    ) -> Response:  # fmt: skip
        token = secrets.token_urlsafe(24)
        response = console.page(request, "login.html", None, status, headers, csrf=token,
                                **context)  # fmt: skip
        console.cookie(response, request, LOGIN_COOKIE, token, 3600)
        return response

    @router.post(f"{ROOT}/login")
    async def login(request: Request) -> Response:
        try:
            fields = await console.form(request, request.cookies.get(LOGIN_COOKIE, ""))
        except Refused as refused:
            return login_page(request, refused.status, error=refused.message)
        params = {"Username": fields.get("username", ""), "Password": fields.get("password", "")}
        try:
            session = await asyncio.to_thread(gateway.login, params)
        except RequestRejected as rejected:
            error = rejected.errors[0]
            wait = {"Retry-After": str(rejected.retry_after)} if rejected.retry_after else None
            return login_page(request, 429 if error.code == 429 else 401, wait,
                              error=error.message, username=params["Username"])  # fmt: skip
        response = RedirectResponse(HOME, status_code=303)
        lifetime = engine.settings.session_lifetime_seconds
        console.cookie(response, request, SESSION_COOKIE, session["SessionID"], lifetime)
        response.delete_cookie(LOGIN_COOKIE, path=ROOT)
        return response

    @router.post(f"{ROOT}/logout")
    async def logout(account: Account = signed_in, fields: dict[str, str] = posted) -> Response:
        caller = current_request().caller
        assert caller is not None  # signed_in set it
        await asyncio.to_thread(gateway.logout, caller)
        response = login_redirect()
        response.delete_cookie(SESSION_COOKIE, path=ROOT)
        return response

    # Sender domains: EmailGateway.GetDomains, AddDomain, GetDomain, VerifyDomain,
    # UpdateDomain, DeleteDomain.

    @router.get(f"{ROOT}/domains")
    async def domains(request: Request, account: Account = signed_in) -> Response:
        return await domains_page(request, account)

    async def domains_page(
        request: Request, account: Account, status: int = 200, **context: Any
    ) -> Response:
        shown = (await console.call(gateway.get_domains, account))["Domains"]
        notice = {"deleted": "The domain was deleted."}.get(request.query_params.get("done", ""))
        return console.page(
            request, "domains.html", account, status, section="domains", domains=shown,
            notice=notice, **context,
        )  # fmt: skip

    @router.post(f"{ROOT}/domains")
    async def add_domain(
        request: Request, account: Account = signed_in, fields: dict[str, str] = posted
    ) -> Response:
        name = fields.get("domain_name", "")
        try:
            added = await console.call(gateway.add_domain, account, DomainName=name)
        except RequestRejected as rejected:
            return await domains_page(request, account, 422, error=rejected.errors[0].message,
                                      domain_name=name)  # fmt: skip
        return RedirectResponse(
            f"{ROOT}/domains/{added['NewSenderDomainID']}?done=added", status_code=303
        )

    async def domain_page(
        request: Request, account: Account, domain_id: str, status: int = 200, **context: Any
    ) -> Response:
        try:
            domain = (await console.call(gateway.get_domain, account, DomainID=domain_id))["Domain"]
        except RequestRejected:
            return not_found(request, account)
        notice = {
            "added": "The domain was added. Publish its records, then verify it.",
            "saved": "The settings were saved.",
        }.get(request.query_params.get("done", ""))
        return console.page(
            request, "domain.html", account, status, section="domains", domain=domain,
            flags=[(name, label, domain.get(name) == "1") for name, label in _FLAGS],
            notice=context.pop("notice", notice), **context,
        )  # fmt: skip

    @router.get(f"{ROOT}/domains/{{domain_id}}")
    async def domain(request: Request, domain_id: str, account: Account = signed_in) -> Response:
        return await domain_page(request, account, domain_id)

    @router.post(f"{ROOT}/domains/{{domain_id}}/verify")
    async def verify_domain(
        request: Request, domain_id: str, account: Account = signed_in,
        fields: dict[str, str] = posted,
    ) -> Response:  # fmt: skip
        try:
            checked = await console.call(gateway.verify_domain, account, DomainID=domain_id)
        except RequestRejected:
            return not_found(request, account)
        return await domain_page(
            request, account, domain_id, results=checked["DNSVerificationResults"],
            notice="Verified: each record's result is below.",
        )  # fmt: skip

    @router.post(f"{ROOT}/domains/{{domain_id}}/settings")
    async def domain_settings(
        request: Request, domain_id: str, account: Account = signed_in,
        fields: dict[str, str] = posted,
    ) -> Response:  # fmt: skip
        flags = {name: "1" if fields.get(name) == "1" else "0" for name, _ in _FLAGS}
        try:
            await console.call(
                gateway.update_domain, account, DomainID=domain_id, **flags,
                HostingProvider=fields.get("hosting_provider", ""),
            )  # fmt: skip
        except RequestRejected as rejected:
            error = rejected.errors[0]
            if error == E.UpdateDomain.DOMAIN_NOT_FOUND:
                return not_found(request, account)
            return await domain_page(request, account, domain_id, 422, error=error.message)
        return RedirectResponse(f"{ROOT}/domains/{domain_id}?done=saved", status_code=303)

    @router.get(f"{ROOT}/domains/{{domain_id}}/delete")
    async def confirm_delete(
        request: Request, domain_id: str, account: Account = signed_in
    ) -> Response:
        try:
            domain = (await console.call(gateway.get_domain, account, DomainID=domain_id))["Domain"]
        except RequestRejected:
            return not_found(request, account)
        return console.page(request, "delete_domain.html", account, section="domains",
                            domain=domain)  # fmt: skip

    @router.post(f"{ROOT}/domains/{{domain_id}}/delete")
    async def delete_domain(
        request: Request, domain_id: str, account: Account = signed_in,
        fields: dict[str, str] = posted,
    ) -> Response:  # fmt: skip
        try:
            await console.call(gateway.delete_domain, account, DomainID=domain_id)
        except RequestRejected:
            return not_found(request, account)
        return RedirectResponse(f"{ROOT}/domains?done=deleted", status_code=303)

    # A domain's sender keys and SMTP credentials: EmailGateway.GetAPIs, AddAPI, DeleteAPI,
    # GetSMTPs, AddSMTP, DeleteSMTP, ResetSMTPPassword. A new secret is shown once, in the
    # answer to the form that made it (never in a URL).

    async def credentials_page(
        request: Request, account: Account, domain_id: str, status: int = 200, **context: Any
    ) -> Response:
        try:
            domain = (await console.command("EmailGateway.GetDomain", account,
                                            DomainID=domain_id))["Domain"]  # fmt: skip
            keys = await console.command("EmailGateway.GetAPIs", account, DomainID=domain_id)
            smtps = await console.command("EmailGateway.GetSMTPs", account, DomainID=domain_id)
        except RequestRejected:
            return not_found(request, account)
        return console.page(
            request, "credentials.html", account, status, section="domains", domain=domain,
            keys=keys["APIKeys"], smtps=smtps["SMTPs"], **context,
        )  # fmt: skip

    @router.get(f"{ROOT}/domains/{{domain_id}}/credentials")
    async def credentials(
        request: Request, domain_id: str, account: Account = signed_in
    ) -> Response:
        return await credentials_page(request, account, domain_id)

    @router.post(f"{ROOT}/domains/{{domain_id}}/credentials")
    async def change_credentials(
        request: Request, domain_id: str, account: Account = signed_in,
        fields: dict[str, str] = posted,
    ) -> Response:  # fmt: skip
        action, target = fields.get("action", ""), fields.get("target", "")
        try:
            if action == "add_key":
                made = await console.command(
                    "EmailGateway.AddAPI", account, DomainID=domain_id,
                    Description=fields.get("description", ""),
                )  # fmt: skip
                secret = {"Sender key": made["APIKey"]["Key"]}
                notice = "The key was made. Copy it now: it is shown only this once."
            elif action == "revoke_key":
                await console.command("EmailGateway.DeleteAPI", account, ApiKeyId=target)
                secret, notice = None, "The key was revoked: it no longer sends."
            elif action == "add_smtp":
                made = await console.command("EmailGateway.AddSMTP", account, DomainID=domain_id)
                secret = {"Username": made["SMTP"]["Username"],
                          "Password": made["SMTP"]["Password"]}  # fmt: skip
                notice = "The SMTP credential was made. Copy its password now: it is shown once."
            elif action == "reset_smtp":
                made = await console.command("EmailGateway.ResetSMTPPassword", account,
                                             smtpid=target)  # fmt: skip
                secret = {"Username": made["SMTP"]["Username"],
                          "Password": made["SMTP"]["Password"]}  # fmt: skip
                notice = "A new password was issued, shown only this once; the old one is void."
            elif action == "delete_smtp":
                await console.command("EmailGateway.DeleteSMTP", account, smtpid=target)
                secret, notice = None, "The SMTP credential was deleted."
            else:
                raise Refused(400, "Unknown action.")
        except RequestRejected as rejected:
            return await credentials_page(request, account, domain_id, 422,
                                          error=rejected.errors[0].message)  # fmt: skip
        return await credentials_page(request, account, domain_id, secret=secret, notice=notice)

    # A domain's webhooks: EmailGateway.GetWebhooks, AddWebhook, DeleteWebhook,
    # GetWebhookAttempts, TestWebhook.

    async def webhooks_page(
        request: Request, account: Account, domain_id: str, status: int = 200, **context: Any
    ) -> Response:
        try:
            domain = (await console.command("EmailGateway.GetDomain", account,
                                            DomainID=domain_id))["Domain"]  # fmt: skip
            found = await console.command("EmailGateway.GetWebhooks", account,
                                          DomainID=domain_id)  # fmt: skip
        except RequestRejected:
            return not_found(request, account)
        return console.page(
            request, "webhooks.html", account, status, section="domains", domain=domain,
            signing_key=found["SigningKey"], webhooks=found["Webhooks"],
            events=sorted(WEBHOOK_EVENTS), **context,
        )  # fmt: skip

    @router.get(f"{ROOT}/domains/{{domain_id}}/webhooks")
    async def webhooks(request: Request, domain_id: str, account: Account = signed_in) -> Response:
        return await webhooks_page(request, account, domain_id)

    @router.post(f"{ROOT}/domains/{{domain_id}}/webhooks")
    async def change_webhooks(
        request: Request, domain_id: str, account: Account = signed_in,
        fields: dict[str, str] = posted,
    ) -> Response:  # fmt: skip
        action = fields.get("action", "")
        try:
            if action == "add":
                await console.command(
                    "EmailGateway.AddWebhook", account, DomainID=domain_id,
                    Event=fields.get("event", ""), WebhookURL=fields.get("url", ""),
                    Method=fields.get("method", "POST"),
                )  # fmt: skip
                notice = "The webhook was added: it is called for every new event."
            elif action == "delete":
                await console.command(
                    "EmailGateway.DeleteWebhook", account, DomainID=domain_id,
                    WebhookID=fields.get("target", ""),
                )  # fmt: skip
                notice = "The webhook was deleted."
            elif action == "test":
                await console.command("EmailGateway.TestWebhook", account,
                                      WebhookID=fields.get("target", ""))  # fmt: skip
                notice = "A test event was queued: its attempt appears in the webhook's log."
            else:
                raise Refused(400, "Unknown action.")
        except RequestRejected as rejected:
            return await webhooks_page(request, account, domain_id, 422,
                                       error=rejected.errors[0].message)  # fmt: skip
        return await webhooks_page(request, account, domain_id, notice=notice)

    @router.get(f"{ROOT}/webhooks/{{webhook_id}}")
    async def webhook_attempts(
        request: Request, webhook_id: str, account: Account = signed_in
    ) -> Response:
        outcome = request.query_params.get("status", "")
        outcome = outcome if outcome in ("success", "failure") else ""
        page = _page_number(request.query_params.get("page", ""), _EVENTS_PER_PAGE)
        try:
            found = await console.command(
                "EmailGateway.GetWebhookAttempts", account, WebhookID=webhook_id,
                Status=outcome, StartFrom=(page - 1) * _EVENTS_PER_PAGE,
                RetrieveCount=_EVENTS_PER_PAGE,
            )  # fmt: skip
        except RequestRejected:
            return not_found(request, account)
        total = int(found["TotalRecords"])
        return console.page(
            request, "webhook.html", account, section="domains", webhook=found, outcome=outcome,
            page=page, pages=max(1, -(-total // _EVENTS_PER_PAGE)), total=total,
        )  # fmt: skip

    # Lists and subscribers: Lists.Get, List.Create, List.Delete, Subscribers.Get,
    # Subscriber.Subscribe, .Unsubscribe, .Delete, Subscribers.Import.

    async def lists_page(
        request: Request, account: Account, status: int = 200, **context: Any
    ) -> Response:
        found = (await console.command("Lists.Get", account))["Lists"]
        return console.page(request, "lists.html", account, status, section="lists",
                            lists=found, **context)  # fmt: skip

    @router.get(f"{ROOT}/lists")
    async def lists(request: Request, account: Account = signed_in) -> Response:
        return await lists_page(request, account)

    @router.post(f"{ROOT}/lists")
    async def create_list(
        request: Request, account: Account = signed_in, fields: dict[str, str] = posted
    ) -> Response:
        try:
            made = await console.command(
                "List.Create", account, ListName=fields.get("list_name", ""),
                Fields=fields.get("fields", ""),
                AllowDuplicates="1" if fields.get("allow_duplicates") == "1" else "0",
            )  # fmt: skip
        except RequestRejected as rejected:
            return await lists_page(request, account, 422, error=rejected.errors[0].message,
                                    list_name=fields.get("list_name", ""))  # fmt: skip
        return RedirectResponse(f"{ROOT}/lists/{made['ListID']}", status_code=303)

    async def list_page(
        request: Request, account: Account, list_id: str, status: int = 200, **context: Any
    ) -> Response:
        shown = next(
            (entry for entry in (await console.command("Lists.Get", account))["Lists"]
             if entry["ListID"] == list_id),
            None,
        )  # fmt: skip
        if shown is None:
            return not_found(request, account)
        search = request.query_params.get("q", "").strip().lower()
        page = _page_number(request.query_params.get("page", ""), _ADDRESSES_PER_PAGE)
        if search:  # every subscriber is read, a thousand at a time, and the matches kept
            matching: list[dict[str, Any]] = []
            for start in range(0, int(shown["SubscriberCount"]), 1000):
                chunk = await console.command(
                    "Subscribers.Get", account, ListID=list_id, RecordsFrom=start,
                    RecordsPerRequest=1000,
                )  # fmt: skip
                matching += [s for s in chunk["Subscribers"]
                             if search in str(s.get("EmailAddress", "")).lower()]  # fmt: skip
            total = len(matching)
            first = (page - 1) * _ADDRESSES_PER_PAGE
            subscribers = matching[first : first + _ADDRESSES_PER_PAGE]
        else:
            found = await console.command(
                "Subscribers.Get", account, ListID=list_id,
                RecordsFrom=(page - 1) * _ADDRESSES_PER_PAGE, RecordsPerRequest=_ADDRESSES_PER_PAGE,
            )  # fmt: skip
            total, subscribers = int(found["TotalSubscribers"]), found["Subscribers"]
        return console.page(
            request, "list.html", account, status, section="lists", list=shown,
            subscribers=subscribers, total=total, search=search, page=page,
            pages=max(1, -(-total // _ADDRESSES_PER_PAGE)),
            import_limit=engine.settings.max_request_bytes, **context,
        )  # fmt: skip

    @router.get(f"{ROOT}/lists/{{list_id}}")
    async def subscriber_list(
        request: Request, list_id: str, account: Account = signed_in
    ) -> Response:
        return await list_page(request, account, list_id)

    @router.post(f"{ROOT}/lists/{{list_id}}")
    async def change_list(
        request: Request, list_id: str, account: Account = signed_in,
        fields: dict[str, str] = posted,
    ) -> Response:  # fmt: skip
        action, target = fields.get("action", ""), fields.get("target", "")
        commands = {
            "subscribe": ("Subscriber.Subscribe", fields.get("address", "")),
            "unsubscribe": ("Subscriber.Unsubscribe", target),
            "delete": ("Subscriber.Delete", target),
        }
        if action == "delete_list":
            try:
                await console.command("List.Delete", account, ListID=list_id)
            except RequestRejected:
                return not_found(request, account)
            return await lists_page(request, account, notice="The list was deleted.")
        if action not in commands:
            raise Refused(400, "Unknown action.")
        name, address = commands[action]
        try:
            await console.command(name, account, ListID=list_id, EmailAddress=address)
        except RequestRejected as rejected:
            return await list_page(request, account, list_id, 422,
                                   error=rejected.errors[0].message)  # fmt: skip
        done = {"subscribe": "subscribed", "unsubscribe": "unsubscribed", "delete": "deleted"}
        return await list_page(request, account, list_id,
                               notice=f"{address} was {done[action]}.")  # fmt: skip

    # Segments: Segment.Count, Segment.Create, Segments.Get, Segment.Delete. The editor
    # makes a RulesJsonBundle of up to SEGMENT_GROUPS lists' criteria, each of up to
    # SEGMENT_RULES rules; its buttons add rows and groups without JavaScript.

    async def segment_page(
        request: Request, account: Account, status: int = 200,
        fields: Mapping[str, str] | None = None, **context: Any,
    ) -> Response:  # fmt: skip
        lists = (await console.command("Lists.Get", account))["Lists"]
        segments = (await console.command("Segments.Get", account))["Segments"]
        names = {str(entry["ListID"]): str(entry["ListName"]) for entry in lists}
        for segment in segments:
            segment["Text"] = segment_text(segment.get("RulesJsonBundle"), names)
        form = context.pop("form", None) or segment_form(fields or {}, lists)
        return console.page(
            request, "segments.html", account, status, section="lists", lists=lists,
            segments=segments, operators=SEGMENT_OPERATORS, form=form,
            most_rules=SEGMENT_RULES, most_groups=SEGMENT_GROUPS,
            name=(fields or {}).get("name", ""), **context,
        )  # fmt: skip

    @router.get(f"{ROOT}/segments")
    async def segments(request: Request, account: Account = signed_in) -> Response:
        return await segment_page(request, account)

    @router.post(f"{ROOT}/segments")
    async def change_segments(
        request: Request, account: Account = signed_in, fields: dict[str, str] = posted
    ) -> Response:
        action = fields.get("action", "").partition(":")[0]
        try:
            if action == "delete":
                await console.command("Segment.Delete", account, SegmentID=fields.get("target"))
                return await segment_page(request, account, notice="The segment was deleted.")
            if action in ("add_rule", "add_group", "remove_group"):
                return await segment_page(request, account, fields=fields)
            lists = (await console.command("Lists.Get", account))["Lists"]
            form = segment_form(fields, lists)
            bundle = orjson.dumps(_bundle_of(form)).decode()
            if action == "count":
                counted = await console.command("Segment.Count", account, RulesJsonBundle=bundle)
                return await segment_page(request, account, fields=fields, form=form,
                                          count=counted["Subscribers"])  # fmt: skip
            if action == "save":
                await console.command("Segment.Create", account, RulesJsonBundle=bundle,
                                      SegmentName=fields.get("name", ""))  # fmt: skip
                return await segment_page(request, account, notice="The segment was saved.")
        except RequestRejected as rejected:
            return await segment_page(request, account, 422, fields=fields,
                                      error=rejected.errors[0].message)  # fmt: skip
        raise Refused(400, "Unknown action.")

    @router.post(f"{ROOT}/lists/{{list_id}}/import")
    async def import_subscribers(
        request: Request, list_id: str, account: Account = signed_in
    ) -> Response:
        session = request.cookies.get(SESSION_COOKIE, "")
        limit = engine.settings.max_request_bytes
        fields = await console.form(request, console.csrf_of(session), limit)
        try:
            report = await console.command(
                "Subscribers.Import", account, ListID=list_id, Data=fields.get("file", ""),
                Format="csv",
            )  # fmt: skip
        except RequestRejected as rejected:
            return await list_page(request, account, list_id, 422,
                                   error=rejected.errors[0].message)  # fmt: skip
        return await list_page(
            request, account, list_id, report=report,
            notice=f"Imported {report['Imported']:,}; {report['Duplicates']:,} already there; "
            f"{report['InvalidCount']:,} refused.",
        )  # fmt: skip

    # Campaigns: Campaigns.Get, Campaign.Create and .Update, .Get with its statistics,
    # .Approve, .Pause, .Resume, .Cancel; their emails: Emails.Get, Email.Create.

    @router.get(f"{ROOT}/campaigns")
    async def campaigns(request: Request, account: Account = signed_in) -> Response:
        chosen = request.query_params.get("status", "All")
        chosen = chosen if chosen in CAMPAIGN_STATUSES else "All"
        found = await console.command(
            "Campaigns.Get", account, CampaignStatus=chosen, RetrieveStatistics="1",
            RecordsPerRequest=200,
        )  # fmt: skip
        return console.page(
            request, "campaigns.html", account, section="campaigns",
            campaigns=found["Campaigns"], total=found["TotalCampaigns"], chosen=chosen,
            statuses=CAMPAIGN_STATUSES,
        )  # fmt: skip

    async def new_campaign_page(
        request: Request, account: Account, status: int = 200, **context: Any
    ) -> Response:
        emails = (await console.command("Emails.Get", account))["Emails"]
        lists = (await console.command("Lists.Get", account))["Lists"]
        return console.page(
            request, "new_campaign.html", account, status, section="campaigns", emails=emails,
            lists=lists, chosen_email=request.query_params.get("email", ""), zones=_ZONES,
            **context,
        )  # fmt: skip

    @router.get(f"{ROOT}/campaigns/new")
    async def new_campaign(request: Request, account: Account = signed_in) -> Response:
        return await new_campaign_page(request, account)

    @router.post(f"{ROOT}/campaigns")
    async def create_campaign(
        request: Request, account: Account = signed_in, fields: dict[str, str] = posted
    ) -> Response:
        try:
            made = await console.command(
                "Campaign.Create", account, CampaignName=fields.get("name", "")
            )
        except RequestRejected as rejected:
            return await new_campaign_page(request, account, 422,
                                           error=rejected.errors[0].message)  # fmt: skip
        try:
            await console.command(
                "Campaign.Update", account, CampaignID=made["CampaignID"], **_campaign_of(fields)
            )
        except RequestRejected as rejected:  # the draft stays, to be completed on its page
            return await campaign_page(request, account, made["CampaignID"], 422,
                                       error=rejected.errors[0].message)  # fmt: skip
        return RedirectResponse(f"{ROOT}/campaigns/{made['CampaignID']}", status_code=303)

    async def campaign_of(account: Account, campaign_id: str) -> dict[str, Any]:
        answer = await console.command(
            "Campaign.Get", account, CampaignID=campaign_id, RetrieveStatistics="1"
        )
        shown: dict[str, Any] = answer["Campaign"]
        recipients = int(shown.get("TotalRecipients") or 0)
        done = int(shown.get("TotalSent") or 0) + int(shown.get("TotalFailed") or 0)
        shown["Progress"] = min(100, round(100 * done / recipients)) if recipients else 0
        if shown["Status"] == "Sent":
            shown["Progress"] = 100
        shown["Chart"] = await asyncio.to_thread(
            campaign_series, engine.reporting, UUID(str(shown["CampaignID"])),
            until_now=shown["Status"] == "Sending",
        )  # fmt: skip
        return shown

    async def campaign_page(
        request: Request, account: Account, campaign_id: str, status: int = 200,
        **context: Any,
    ) -> Response:  # fmt: skip
        try:
            shown = await campaign_of(account, campaign_id)
        except RequestRejected:
            return not_found(request, account)
        emails = (await console.command("Emails.Get", account))["Emails"]
        lists = (await console.command("Lists.Get", account))["Lists"]
        schedule = shown.get("Schedule") or {}
        local = str(schedule.get("send_at_local") or "")
        editing = {
            "name": shown["CampaignName"], "email": shown.get("RelEmailID") or "",
            "list": str(shown.get("RecipientListsAndSegments") or "").split(",")[0],
            "when": "later" if schedule.get("kind") == "Future" else "now",
            "send_date": local[:10], "send_time": local[11:16],
            "send_zone": schedule.get("timezone") or "",
        }  # fmt: skip
        chart = {"kinds": CAMPAIGN_KINDS, **shown["Chart"]}
        return console.page(
            request, "campaign.html", account, status, section="campaigns", campaign=shown,
            emails=emails, lists=lists, zones=_ZONES, editing=editing, kinds=CAMPAIGN_KINDS,
            chart=orjson.dumps(chart).decode(), **context,
        )  # fmt: skip

    @router.get(f"{ROOT}/campaigns/{{campaign_id}}")
    async def campaign(
        request: Request, campaign_id: str, account: Account = signed_in
    ) -> Response:
        return await campaign_page(request, account, campaign_id)

    @router.get(f"{ROOT}/campaigns/{{campaign_id}}/progress.json")
    async def campaign_progress(campaign_id: str, account: Account = signed_in) -> Response:
        """What the campaign's page refreshes its progress bar and figures with."""
        try:
            shown = await campaign_of(account, campaign_id)
        except RequestRejected:
            return Response(status_code=404)
        return Response(orjson.dumps(shown), media_type="application/json",
                        headers={"Cache-Control": "no-store"})  # fmt: skip

    @router.post(f"{ROOT}/campaigns/{{campaign_id}}")
    async def change_campaign(
        request: Request, campaign_id: str, account: Account = signed_in,
        fields: dict[str, str] = posted,
    ) -> Response:  # fmt: skip
        action = fields.get("action", "")
        if action not in CAMPAIGN_ACTIONS:
            raise Refused(400, "Unknown action.")
        try:
            if action == "edit":
                await console.command("Campaign.Update", account, CampaignID=campaign_id,
                                      **_campaign_of(fields))  # fmt: skip
            else:
                await console.command(f"Campaign.{action.capitalize()}", account,
                                      CampaignID=campaign_id)  # fmt: skip
        except RequestRejected as rejected:
            error = rejected.errors[0]
            if error.code == 2:  # each lifecycle command's "not the user's or not there"
                return not_found(request, account)
            return await campaign_page(request, account, campaign_id, 422, error=error.message)
        return await campaign_page(request, account, campaign_id,
                                   notice=CAMPAIGN_ACTIONS[action])  # fmt: skip

    @router.get(f"{ROOT}/emails")
    async def emails(request: Request, account: Account = signed_in) -> Response:
        found = (await console.command("Emails.Get", account))["Emails"]
        return console.page(request, "emails.html", account, section="campaigns",
                            emails=found)  # fmt: skip

    async def email_page(
        request: Request, account: Account, email_id: str, status: int = 200, **context: Any
    ) -> Response:
        try:
            email = (await console.command("Email.Get", account, EmailID=email_id))["Email"]
        except RequestRejected:
            return not_found(request, account)
        lists = (await console.command("Lists.Get", account))["Lists"]
        asked = request.query_params
        chosen = {"list": asked.get("list", ""), "address": asked.get("address", "")}
        preview = None
        if chosen["list"]:
            try:
                preview = await console.command(
                    "Email.Preview", account, EmailID=email_id, ListID=chosen["list"],
                    EmailAddress=chosen["address"],
                )  # fmt: skip
            except RequestRejected as rejected:
                context.setdefault("error", rejected.errors[0].message)
                status = 422
        return console.page(
            request, "email.html", account, status, section="campaigns", email=email,
            lists=lists, chosen=chosen, preview=preview, **context,
        )  # fmt: skip

    @router.get(f"{ROOT}/emails/new")
    async def new_email(request: Request, account: Account = signed_in) -> Response:
        return console.page(request, "new_email.html", account, section="campaigns")

    @router.post(f"{ROOT}/emails")
    async def create_email(
        request: Request, account: Account = signed_in, fields: dict[str, str] = posted
    ) -> Response:
        try:
            made = await console.command("Email.Create", account, **_email_of(fields))
        except RequestRejected as rejected:
            return console.page(request, "new_email.html", account, 422, section="campaigns",
                                error=rejected.errors[0].message, given=fields)  # fmt: skip
        return RedirectResponse(f"{ROOT}/campaigns/new?email={made['EmailID']}", status_code=303)

    @router.get(f"{ROOT}/emails/{{email_id}}")
    async def email(request: Request, email_id: str, account: Account = signed_in) -> Response:
        return await email_page(request, account, email_id)

    @router.post(f"{ROOT}/emails/{{email_id}}")
    async def change_email(
        request: Request, email_id: str, account: Account = signed_in,
        fields: dict[str, str] = posted,
    ) -> Response:  # fmt: skip
        try:
            await console.command("Email.Update", account, EmailID=email_id, **_email_of(fields))
        except RequestRejected as rejected:
            error = rejected.errors[0]
            if error == E.Lists.INVALID_EMAIL_ID:
                return not_found(request, account)
            return await email_page(request, account, email_id, 422, error=error.message)
        return await email_page(request, account, email_id, notice="The email was saved.")

    # Messages: EmailGateway.GetEvents, and a message's history from the event store.

    @router.get(f"{ROOT}/messages")
    async def messages(request: Request, account: Account = signed_in) -> Response:
        domains = (await console.call(gateway.get_domains, account))["Domains"]
        asked = request.query_params
        filters = {
            "domain": asked.get("domain") or (domains[0]["DomainID"] if domains else ""),
            "query": asked.get("query", ""),
            "event": asked.get("event", ""),
            "from": asked.get("from", ""),
            "to": asked.get("to", ""),
        }
        page = _page_number(asked.get("page", ""))
        found: dict[str, Any] = {"TotalRecords": 0, "Events": []}
        error, status = None, 200
        if filters["domain"]:
            try:
                found = await console.call(
                    gateway.get_events, account, DomainID=filters["domain"],
                    StartFrom=(page - 1) * _EVENTS_PER_PAGE, RetrieveCount=_EVENTS_PER_PAGE,
                    Query=filters["query"], Event=filters["event"],
                    StartDate=filters["from"], EndDate=filters["to"],
                )  # fmt: skip
            except RequestRejected as rejected:
                error, status = rejected.errors[0].message, 422
        total = int(found["TotalRecords"])
        pages = max(1, -(-total // _EVENTS_PER_PAGE))
        return console.page(
            request, "messages.html", account, status, section="messages", domains=domains,
            filters=filters, events=found["Events"], total=total, page=page, pages=pages,
            first=(page - 1) * _EVENTS_PER_PAGE + 1, event_names=sorted(EVENT_TYPE_NAMES),
            per_page=_EVENTS_PER_PAGE, error=error,
        )  # fmt: skip

    @router.get(f"{ROOT}/messages/{{message_id}}")
    async def message(request: Request, message_id: str, account: Account = signed_in) -> Response:
        submission = uuid_param(message_id)
        shown = (
            await asyncio.to_thread(engine.history.of, account.id, submission)
            if submission is not None
            else None
        )
        if shown is None:
            return not_found(request, account)
        return console.page(request, "message.html", account, section="messages",
                            message=shown)  # fmt: skip

    # Suppressions: Unsubscribes.Get, Unsubscribe.Add, .Remove, Unsubscribes.Export, and
    # the same for bounces, complaints and blocks.

    def chosen_list(request: Request) -> str:
        chosen = request.query_params.get("list", "")
        return chosen if chosen in SUPPRESSION_LISTS else "unsubscribes"

    @router.get(f"{ROOT}/suppressions")
    async def suppressions(request: Request, account: Account = signed_in) -> Response:
        return await suppressions_page(request, account)

    async def suppressions_page(
        request: Request, account: Account, status: int = 200, **context: Any
    ) -> Response:
        chosen = chosen_list(request)
        noun = SUPPRESSION_LISTS[chosen]
        found = await console.command(f"{noun}s.Get", account, RecordsPerRequest=1_000_000)
        search = request.query_params.get("q", "").strip().lower()
        addresses = [a for a in found["Addresses"] if search in a["EmailAddress"]]
        page = _page_number(request.query_params.get("page", ""), _ADDRESSES_PER_PAGE)
        first = (page - 1) * _ADDRESSES_PER_PAGE
        return console.page(
            request, "suppressions.html", account, status, section="suppressions",
            lists=SUPPRESSION_LISTS, chosen=chosen, search=search, total=len(addresses),
            addresses=addresses[first : first + _ADDRESSES_PER_PAGE], page=page,
            pages=max(1, -(-len(addresses) // _ADDRESSES_PER_PAGE)),
            notice=context.get("notice"), error=context.get("error"),
            address=context.get("address", ""),
        )  # fmt: skip

    @router.post(f"{ROOT}/suppressions")
    async def change_suppression(
        request: Request, account: Account = signed_in, fields: dict[str, str] = posted
    ) -> Response:
        chosen = chosen_list(request)
        noun = SUPPRESSION_LISTS[chosen]
        address = fields.get("address") or fields.get("target", "")
        verb = "Remove" if fields.get("action") == "remove" else "Add"
        try:
            done = await console.command(f"{noun}.{verb}", account, EmailAddress=address)
        except RequestRejected as rejected:
            return await suppressions_page(request, account, 422,
                                           error=rejected.errors[0].message,
                                           address=address)  # fmt: skip
        what = "added to" if verb == "Add" else "removed from"
        return await suppressions_page(
            request, account, notice=f"{done['EmailAddress']} was {what} the list."
        )

    @router.get(f"{ROOT}/suppressions/export")
    async def export_suppressions(request: Request, account: Account = signed_in) -> Response:
        chosen = chosen_list(request)
        exported = await console.command(f"{SUPPRESSION_LISTS[chosen]}s.Export", account)
        return Response(
            exported["Data"], media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{chosen}.csv"',
                     "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
        )  # fmt: skip

    # Account settings: Account.Get and Account.Update.

    @router.get(f"{ROOT}/settings")
    async def settings(request: Request, account: Account = signed_in) -> Response:
        return await settings_page(request, account)

    async def settings_page(
        request: Request, account: Account, status: int = 200, **context: Any
    ) -> Response:
        shown = (await console.command("Account.Get", account))["Account"]
        return console.page(
            request, "settings.html", account, status, section="settings", settings=shown,
            zones=_ZONES, **context,
        )  # fmt: skip

    @router.post(f"{ROOT}/settings")
    async def change_settings(
        request: Request, account: Account = signed_in, fields: dict[str, str] = posted
    ) -> Response:
        try:
            await console.command(
                "Account.Update", account, TimeZone=fields.get("time_zone", ""),
                CustomIDHeader=fields.get("custom_id_header", ""),
            )  # fmt: skip
        except RequestRejected as rejected:
            return await settings_page(request, account, 422, error=rejected.errors[0].message)
        fresh = console.account_of(request) or account
        return await settings_page(request, fresh, notice="The settings were saved.")

    # The team: Users.Get, User.Create, User.Update, User.Delete and Account.AuditLog.

    @router.get(f"{ROOT}/team")
    async def team(request: Request, account: Account = signed_in) -> Response:
        return await team_page(request, account)

    async def team_page(
        request: Request, account: Account, status: int = 200, **context: Any
    ) -> Response:
        caller = current_request().caller
        assert caller is not None  # signed_in set it
        users = (await console.command("Users.Get", account))["Users"]
        manages = caller.may(command_areas("User.Create"))
        changes = (
            (await console.command("Account.AuditLog", account, PageSize=50))["Entries"]
            if manages else []
        )  # fmt: skip
        grantable = [role.value for role in Role if may_grant(caller.role, role)]
        return console.page(
            request, "team.html", account, status, section="team", users=users,
            manages=manages, changes=changes, grantable=grantable,
            is_owner=caller.role is Role.OWNER, account_id=str(account.id), **context,
        )  # fmt: skip

    @router.post(f"{ROOT}/team")
    async def change_team(
        request: Request, account: Account = signed_in, fields: dict[str, str] = posted
    ) -> Response:
        action = fields.get("action", "")
        named = {u["UserID"]: u["Username"]
                 for u in (await console.command("Users.Get", account))["Users"]}  # fmt: skip
        user_id = fields.get("user_id", "")
        try:
            if action == "add":
                await console.command(
                    "User.Create", account, Username=fields.get("username", ""),
                    Password=fields.get("password", ""), Role=fields.get("role", ""),
                )  # fmt: skip
                notice = f"{fields.get('username', '')} was added."
            elif action == "role":
                await console.command("User.Update", account, UserID=user_id,
                                      Role=fields.get("role", ""))  # fmt: skip
                notice = f"{named.get(user_id, 'The user')} is now {fields.get('role', '')}."
            elif action == "delete":
                await console.command("User.Delete", account, UserID=user_id)
                notice = f"{named.get(user_id, 'The user')} was removed."
            else:
                raise Refused(400, "This form asks for nothing the console does.")
        except RequestRejected as rejected:
            return await team_page(request, account, 422, error=rejected.errors[0].message,
                                   username=fields.get("username", ""))  # fmt: skip
        return await team_page(request, account, notice=notice)

    @router.get(ROOT + "/{anything:path}")
    async def unknown(request: Request, anything: str) -> Response:
        return not_found(request, console.account_of(request))

    static = Path(__file__).with_name("static")
    app.mount(f"{ROOT}/static", StaticFiles(directory=static), name="console-static")
    app.include_router(router)
