"""What a bounce says about its recipient: hard, soft or block (RFC 3463 status codes).

``kind`` is about the address, not about this one message:

* ``hard``: the address does not work (no such mailbox, no such domain, disabled).
* ``soft``: the address is probably fine and the failure was about the moment, the
  message or the receiving system (greylisting, a full mailbox, a message too big, a
  system out of disk, a delay notice).
* ``block``: the receiving system refused *us*: policy, spam filtering, reputation,
  DMARC, a block list, or our own sender address.

``definitive``: the report alone proves the address bad, so the address can be suppressed
at the first report; a hard bounce that is not definitive says "undeliverable" without
saying why the address is to blame (an unspecified 5.0.0, an expired queue lifetime).

The decision is a table (``RULES``), looked up from the most specific code to the least:
``5.1.10``, then ``5.1.*``. Where the code says nothing (no enhanced status, ``X.0.0``,
or a subject RFC 3463 does not define), the SMTP reply code decides, and for a 5xx reply,
the text (``TEXT_RULES``): operators often answer a bare ``550`` or ``5.0.0`` and say in
words what happened. For "other or undefined" within a subject (``5.3.0``, ``5.2.0``…)
the words come first and the subject's rule after them (sendmail answers "553 5.3.0
Addressee unknown").

Any 4.X.Y is soft, with ``action: failed`` too: that is a message whose queue lifetime
ran out on temporary failures (Postfix keeps the last attempt's status, "Action: failed,
Status: 4.4.1" for a host that never answered), and the address was never refused;
repeated soft bounces are what the suppression list counts. A delay notice
(``action: delayed``) is soft whatever its status.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = [
    "BLOCK",
    "HARD",
    "RULES",
    "SOFT",
    "TEXT_RULES",
    "BounceClass",
    "Rule",
    "classify",
    "enhanced_status_in",
]

HARD: Final = "hard"
SOFT: Final = "soft"
BLOCK: Final = "block"

MAX_DIAGNOSTIC: Final = 1000


@dataclass(frozen=True)
class BounceClass:
    kind: str  # "hard" | "soft" | "block"
    definitive: bool
    enhanced_status: str  # the code the decision was made on ("" when none was known)
    diagnostic: str  # the remote system's words, one line, at most MAX_DIAGNOSTIC characters


@dataclass(frozen=True)
class Rule:
    code: str  # "5.1.10", "5.1.*" or "5.*"
    kind: str
    definitive: bool
    why: str


# Permanent failures (5.X.Y). 4.X.Y is always soft (a transient failure says nothing
# lasting about the address), and 2.X.Y is no failure at all.
RULES: Final[tuple[Rule, ...]] = (
    # 5.1 Addressing status: the address itself is wrong.
    Rule("5.1.*", HARD, True, "bad mailbox, bad domain, bad syntax, ambiguous or moved"),
    Rule("5.1.10", HARD, True, "the recipient's domain has a null MX (RFC 7505)"),
    # 5.1.7 and 5.1.8 are about *our* envelope sender: suppressing the recipient for them
    # would punish the wrong address.
    Rule("5.1.7", BLOCK, False, "our sender's address syntax was refused"),
    Rule("5.1.8", BLOCK, False, "our sender's domain was refused (e.g. it does not resolve)"),
    # 5.2 Mailbox status.
    Rule("5.2.*", HARD, False, "mailbox status not otherwise defined"),
    Rule("5.2.0", HARD, False, "mailbox unavailable, reason unspecified: undeliverable"),
    Rule("5.2.1", HARD, True, "mailbox disabled (closed or deactivated accounts use this)"),
    # Policy: a full mailbox is the mailbox of someone who may yet empty it. Repeated soft
    # bounces are counted by the suppression list; one does not stop mail.
    Rule("5.2.2", SOFT, False, "mailbox full (soft by policy)"),
    Rule("5.2.3", SOFT, False, "this message exceeds the mailbox's size limit"),
    Rule("5.2.4", SOFT, False, "a mailing list on the far side failed to expand"),
    # 5.3 Mail system status: about the receiving system, not the address.
    Rule("5.3.*", SOFT, False, "the receiving system is full, off, misconfigured or limited"),
    # 5.4 Network and routing status.
    Rule("5.4.*", SOFT, False, "a network or routing problem of the moment"),
    # Microsoft answers "550 5.4.1 Recipient address rejected: Access denied" for
    # addresses that do not exist in the tenant; that is by far the common 5.4.1.
    Rule("5.4.1", HARD, True, "no answer from host / recipient address rejected"),
    Rule("5.4.4", HARD, True, "unable to route: the domain has no mail host"),
    Rule("5.4.6", SOFT, False, "routing loop: a misconfiguration, not the address"),
    Rule("5.4.7", HARD, False, "delivery time expired: never reached, address unproven"),
    # 5.5 Mail delivery protocol status. Many servers answer RCPT for a missing mailbox
    # with 5.5.0 or 5.5.1 ("mailbox unavailable"), so the class is a bad destination.
    Rule("5.5.*", HARD, True, "bad destination (protocol-level refusal of the recipient)"),
    Rule("5.5.3", SOFT, False, "too many recipients in our transaction"),
    # 5.6 Message content or media status: the message, not the address.
    Rule("5.6.*", SOFT, False, "the message's content or encoding was refused"),
    # 5.7 Security or policy status: the receiver refused us.
    Rule("5.7.*", BLOCK, False, "policy, spam, reputation, authentication (DMARC), blocked"),
    Rule("5.7.13", HARD, True, "user account disabled (RFC 7372)"),
    Rule("5.7.17", HARD, True, "mailbox owner has changed (RFC 7293)"),
    Rule("5.7.18", HARD, True, "domain owner has changed (RFC 7293)"),
)
_RULES: Final = {rule.code: rule for rule in RULES}


@dataclass(frozen=True)
class TextRule:
    pattern: re.Pattern[str]
    kind: str
    definitive: bool
    why: str


# For a 5xx failure whose code names no reason (a bare 550, 5.0.0, an undefined subject)
# and before the subject's rule for an "other or undefined" X.Y.0 (sendmail's "553 5.3.0
# Addressee unknown"): tried in this order on the diagnostic text. None matching: the
# subject's rule, or for no subject, hard and not definitive.
TEXT_RULES: Final[tuple[TextRule, ...]] = (
    TextRule(
        re.compile(
            r"block|black ?list|deny ?list|spam|policy|reputation|dmarc|dnsbl|\brbl\b"
            r"|\bbanned|junk mail|not accepting mail from|sender (?:address )?rejected",
            re.IGNORECASE,
        ),
        BLOCK,
        False,
        "refused as spam, by policy, reputation or a block list, or refused our sender",
    ),
    TextRule(
        re.compile(
            r"\bquota|(?:box|folder|storage|space|disk|store)(?: is| was)? (?:currently )?full"
            r"|mail ?box full|insufficient (?:disk |storage )?(?:space|storage)"
            r"|space not enough|not enough (?:disk )?space|mailbox size limit",
            re.IGNORECASE,
        ),
        SOFT,
        False,
        "mailbox full, in words (as 5.2.2: soft by policy)",
    ),
    TextRule(
        re.compile(
            r"message (?:is )?too (?:big|large)|message size|size limit|maximum .{0,20}size"
            r"|\bloop|too many hops|hop count|try again later|please (?:try to )?resend"
            r"|host not found, try again"
            r"|temporar(?:y|ily)",
            re.IGNORECASE,
        ),
        SOFT,
        False,
        "the message's size, a mail loop, or a failure of the moment, in words",
    ),
    TextRule(
        re.compile(
            r"user unknown|unknown user|no such (?:user|mailbox|recipient|address|account"
            r"|person|domain)|does(?: not|n'?t) exist|not a valid (?:user|mailbox|recipient"
            r"|address|account)|invalid (?:recipient|mailbox|address|user|account)"
            r"|invalid .{0,20}user ?id|unknown (?:recipient|mailbox|address|local[- ]part"
            r"|account|host)|(?:user|mailbox|address|recipient|account|name) (?:is )?"
            r"(?:not (?:found|known|recogni[sz]ed)|unknown|unavailable)|no mailbox"
            r"|not our customer|unrouteable address|addressee unknown|host not found"
            r"|account (?:has been )?(?:disabled|closed|deleted|expired|suspended|discontinued)"
            r"|disabled or discontinued|(?:does not|doesn'?t) have an? .{0,40}account"
            r"|no longer valid|bad (?:address|recipient|destination)|not listed in"
            r"|no matches to|unbekannt|n'existe pas|no existe",
            re.IGNORECASE,
        ),
        HARD,
        True,
        "the address or its domain does not exist, in words",
    ),
)

# An enhanced status code (RFC 3463: class "." subject "." detail, 1-3 digits each).
_ENHANCED: Final = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d]|\.\d)")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def enhanced_status_in(text: str, classes: str = "45") -> str:
    """The first enhanced status code of one of ``classes`` in ``text``, or ""."""
    for match in _ENHANCED.finditer(text):
        if match.group(1) in classes:
            return f"{int(match.group(1))}.{int(match.group(2))}.{int(match.group(3))}"
    return ""


def _normalized(status: str) -> str:
    """``" 5.01.001 (user unknown)"`` → ``"5.1.1"``; anything that is no code → ""."""
    match = _ENHANCED.search(status.strip()[:40])
    if match is None:
        return ""
    return f"{int(match.group(1))}.{int(match.group(2))}.{int(match.group(3))}"


def _one_line(text: str) -> str:
    return " ".join(_CONTROL.sub(" ", text).split())[:MAX_DIAGNOSTIC]


def _rule(status: str) -> Rule | None:
    klass, subject, _ = status.split(".")
    return _RULES.get(status) or _RULES.get(f"{klass}.{subject}.*")


def _by_text(
    status: str, code: int | None, diagnostic: str, fallback: Rule | None = None
) -> BounceClass:
    for rule in TEXT_RULES:
        if rule.pattern.search(diagnostic):
            return BounceClass(rule.kind, rule.definitive, status, diagnostic)
    if fallback is not None:
        return BounceClass(fallback.kind, fallback.definitive, status, diagnostic)
    if code == 552:
        # RFC 5321: "exceeded storage allocation": a full mailbox, or a message too big.
        return BounceClass(SOFT, False, status, diagnostic)
    return BounceClass(HARD, False, status, diagnostic)


def classify(
    enhanced_status: str, smtp_code: int | None, diagnostic: str, action: str = "failed"
) -> BounceClass:
    """The class of one recipient's failure, from what a report (or an SMTP reply) says.

    ``enhanced_status``: the DSN's ``Status`` (or the reply's enhanced code), "" if none;
    ``smtp_code``: the SMTP reply code when known (``Diagnostic-Code: smtp; 550 …``);
    ``diagnostic``: the remote system's text; ``action``: the DSN's ``Action``.
    """
    text = _one_line(diagnostic)
    status = _normalized(enhanced_status)
    code = smtp_code if smtp_code is not None and 200 <= smtp_code <= 599 else None
    if not status or status.endswith(".0.0"):
        # "Status: 5.0.0" with "Diagnostic-Code: smtp; 550 5.1.1 user unknown" is common:
        # the diagnostic's own code is the more specific one. Of the same class only: a
        # final failure that quotes an earlier 4xx attempt stays a failure.
        classes = status[0] if status else "45"
        status = enhanced_status_in(text, classes) or status
    if not status and code is not None and code >= 400:
        status = f"{code // 100}.0.0"
    if action.strip().lower() == "delayed":
        return BounceClass(SOFT, False, status, text)
    if not status:
        # Nothing but words: a failure report is a failure.
        return _by_text("", code, text)
    if status[0] != "5":
        return BounceClass(SOFT, False, status, text)
    rule = None if status.endswith(".0.0") else _rule(status)
    if rule is None:
        return _by_text(status, code, text)
    if status.endswith(".0") and rule.code != status:
        # "Other or undefined" within a subject: the words may be more precise.
        return _by_text(status, code, text, fallback=rule)
    return BounceClass(rule.kind, rule.definitive, status, text)
