"""Which mailbox provider a recipient's domain belongs to, for counting outcomes by provider.

Operators watch deliveries by destination (is one provider deferring us?), but a label per
recipient domain would grow without bound. So the well-known consumer domains are grouped
under the provider names that ``engine/delivery/shaping.toml`` shapes traffic by (google,
microsoft, yahoo, apple, comcast), plus a few large European ones, and every other domain
is ``other``. The rule is the recipient's domain, not the MX host that answered: it holds
for relayed mail too, where the MX is the relay's business. (Shaping's own rule groups MX
hosts, so a company domain hosted by Google is shaped as google but counted as other.)
"""

from __future__ import annotations

OTHER = "other"

_PROVIDERS: dict[str, tuple[str, ...]] = {
    "google": ("gmail.com", "googlemail.com"),
    "microsoft": (
        "outlook.com", "outlook.fr", "outlook.de", "outlook.es", "outlook.it",
        "hotmail.com", "hotmail.co.uk", "hotmail.fr", "hotmail.de", "hotmail.es",
        "hotmail.it", "live.com", "live.co.uk", "live.fr", "live.de", "live.nl", "msn.com",
    ),
    "yahoo": (
        "yahoo.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de", "yahoo.es", "yahoo.it",
        "yahoo.ca", "yahoo.com.au", "yahoo.in", "ymail.com", "rocketmail.com",
        "aol.com", "aim.com",
    ),
    "apple": ("icloud.com", "me.com", "mac.com"),
    "comcast": ("comcast.net",),
    "gmx": ("gmx.de", "gmx.net", "gmx.com", "gmx.at", "gmx.ch", "web.de"),
    "proton": ("proton.me", "protonmail.com", "pm.me"),
}  # fmt: skip

_BY_DOMAIN = {domain: name for name, domains in _PROVIDERS.items() for domain in domains}

PROVIDERS: tuple[str, ...] = (*_PROVIDERS, OTHER)
"""Every name ``provider_of`` answers: a label with these values stays bounded."""


def provider_of(recipient: str) -> str:
    """The provider of ``recipient``'s mailbox (an address, or a bare domain), or ``other``."""
    domain = recipient.rpartition("@")[2].strip().lower().rstrip(".")
    return _BY_DOMAIN.get(domain, OTHER)
