"""Which area of the API each ``/api.php`` command belongs to, for the caller's role
(``domain.users``). Every command is named here: one that is not is refused to all but
owners, and a test keeps the table whole."""

from __future__ import annotations

from domain.errors import Command, RequestRejected
from domain.users import Area
from engine.accounts.callers import Caller

_READ = frozenset({Area.READ})
_SENDING = frozenset({Area.SENDING})
_MARKETING = frozenset({Area.MARKETING})
_EITHER = frozenset({Area.SENDING, Area.MARKETING})  # what developers and marketers share
_USERS = frozenset({Area.USERS})
_ACCOUNT = frozenset({Area.ACCOUNT})
_SUPPRESSIONS = ("Unsubscribe", "Bounce", "Complaint", "Block")

# Commands that only read, whatever their verb.
_READS = frozenset({
    "Account.Get", "Users.Get", "Account.GetAPIKeys", "Agency.GetClients", "Agency.Stats",
    "Email.Preview", "Segment.Count", "EmailGateway.AggrEvents", "EmailGateway.DomainStats",
    *(f"{noun}s.Export" for noun in _SUPPRESSIONS),
})  # fmt: skip
_EXACT = {
    "Account.Update": _ACCOUNT,
    "Agency.AddClient": _ACCOUNT,
    "Account.AddAPIKey": _USERS,
    "Account.DeleteAPIKey": _USERS,
    # The trail of who did what is the administrators'.
    "Account.AuditLog": _USERS,
    # A read that answers a secret (the domain's webhook signing key, made on first use).
    "EmailGateway.GetWebhooks": _SENDING,
}
_PREFIXES = (
    ("EmailGateway.", _SENDING), ("Route.", _SENDING), ("Template.", _EITHER),
    *((f"{noun}.", _EITHER) for noun in _SUPPRESSIONS),
    ("List.", _MARKETING), ("Subscriber.", _MARKETING), ("Subscribers.", _MARKETING),
    ("Segment.", _MARKETING), ("Email.", _MARKETING), ("Campaign.", _MARKETING),
    ("Campaigns.", _MARKETING), ("User.", _USERS),
)  # fmt: skip


def command_areas(name: str) -> frozenset[Area]:
    """The areas ``name`` (as the command table spells it) belongs to; empty: unclassified."""
    if name in _EXACT:
        return _EXACT[name]
    verb = name.partition(".")[2]
    if name in _READS or verb == "Get" or verb.startswith("Get"):
        return _READ
    for prefix, areas in _PREFIXES:
        if name.startswith(prefix):
            return areas
    return frozenset()


def require_role(caller: Caller, name: str) -> None:
    """Refuse ``caller`` a command its role does not grant (403)."""
    if not caller.may(command_areas(name)):
        raise RequestRejected(Command.FORBIDDEN.format(role=caller.role.value, command=name))
