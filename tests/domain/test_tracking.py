"""Tracking tokens, link rewriting, the open pixel and machine-hit detection."""

from __future__ import annotations

import base64
import hmac
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.tracking import (
    MACHINE_USER_AGENTS,
    TOKEN_LENGTH,
    TokenData,
    click_url,
    is_machine,
    link_position,
    machine_reason,
    open_url,
    pixel_html,
    rewrite_html,
    rewrite_plain,
    sign_token,
    track_html,
    track_message,
    tracking_key,
    unsubscribe_url,
    verify_token,
)

KEY = b"k" * 32
BASE = "https://track.example.com"
MESSAGE = UUID("6f1c9d1e-2b3a-4c5d-8e9f-0a1b2c3d4e5f")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

kinds = st.sampled_from(["o", "c", "u"])
uuids = st.uuids()
positions = st.integers(0, 0xFFFF)
keys = st.binary(min_size=1, max_size=64)


# --- tokens --------------------------------------------------------------------------------


@given(kinds, uuids, positions, keys)
def test_tokens_round_trip(kind: str, message_id: UUID, position: int, key: bytes) -> None:
    token = sign_token(kind, message_id, position, key)
    assert len(token) == TOKEN_LENGTH
    assert set(token) <= set(ALPHABET)
    assert verify_token(token, key) == TokenData(kind, message_id, position)


@given(kinds, uuids, positions, st.data())
def test_any_changed_character_is_refused(
    kind: str, message_id: UUID, position: int, data: st.DataObject
) -> None:
    token = sign_token(kind, message_id, position, KEY)
    index = data.draw(st.integers(0, len(token) - 1))
    replacement = data.draw(
        st.one_of(st.sampled_from(ALPHABET), st.characters()).filter(lambda c: c != token[index])
    )
    assert verify_token(token[:index] + replacement + token[index + 1 :], KEY) is None


@given(kinds, uuids, positions, st.data())
def test_any_changed_byte_is_refused(
    kind: str, message_id: UUID, position: int, data: st.DataObject
) -> None:
    raw = bytearray(base64.urlsafe_b64decode(sign_token(kind, message_id, position, KEY) + "="))
    index = data.draw(st.integers(0, len(raw) - 1))
    raw[index] ^= data.draw(st.integers(1, 255))
    altered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    assert verify_token(altered, KEY) is None


@given(kinds, uuids, positions, st.data())
def test_truncated_or_extended_tokens_are_refused(
    kind: str, message_id: UUID, position: int, data: st.DataObject
) -> None:
    token = sign_token(kind, message_id, position, KEY)
    assert verify_token(token[: data.draw(st.integers(0, len(token) - 1))], KEY) is None
    assert verify_token(token + data.draw(st.text(min_size=1, max_size=5)), KEY) is None


def test_the_spare_bits_of_the_last_character_are_not_ignored() -> None:
    # 29 bytes leave 2 unused bits in the 39th character: "A" and "B" can decode alike.
    token = sign_token("c", MESSAGE, 3, KEY)
    for other in ALPHABET:
        if other != token[-1]:
            assert verify_token(token[:-1] + other, KEY) is None


@given(kinds, uuids, positions)
def test_another_key_is_refused(kind: str, message_id: UUID, position: int) -> None:
    assert verify_token(sign_token(kind, message_id, position, KEY), b"other key") is None


@settings(max_examples=300)
@given(st.one_of(st.text(), st.text(ALPHABET + "=+/.!", min_size=36, max_size=42)))
def test_garbage_never_raises(garbage: str) -> None:
    assert verify_token(garbage, KEY) is None


@pytest.mark.parametrize(
    "garbage",
    ["", "é" * TOKEN_LENGTH, "A" * TOKEN_LENGTH, "=" * TOKEN_LENGTH, "\x00" * TOKEN_LENGTH],
)
def test_garbage_examples(garbage: str) -> None:
    assert verify_token(garbage, KEY) is None


def test_non_string_never_raises() -> None:
    assert verify_token(None, KEY) is None  # type: ignore[arg-type]
    assert verify_token(b"x" * TOKEN_LENGTH, KEY) is None  # type: ignore[arg-type]


def test_a_signed_token_of_an_unknown_kind_is_refused() -> None:
    payload = b"x" + MESSAGE.bytes + b"\x00\x00"
    mac = hmac.digest(KEY, payload, "sha256")[:10]
    forged = base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")
    assert verify_token(forged, KEY) is None


@pytest.mark.parametrize(("kind", "position"), [("x", 0), ("oc", 0), ("c", -1), ("c", 65536)])
def test_sign_refuses_what_does_not_fit(kind: str, position: int) -> None:
    with pytest.raises(ValueError):
        sign_token(kind, MESSAGE, position, KEY)


def test_urls() -> None:
    assert open_url(BASE + "/", MESSAGE, KEY).startswith(BASE + "/t/o/")
    assert open_url(BASE, MESSAGE, KEY).endswith(".gif")
    assert click_url(BASE, MESSAGE, 7, KEY) == f"{BASE}/t/c/{sign_token('c', MESSAGE, 7, KEY)}"
    assert unsubscribe_url(BASE, MESSAGE, KEY) == f"{BASE}/t/u/{sign_token('u', MESSAGE, 0, KEY)}"


def test_tracking_key_is_derived_not_the_secret() -> None:
    derived = tracking_key(b"server secret")
    assert derived != b"server secret" and len(derived) == 32
    assert tracking_key(b"server secret") == derived


# --- HTML ----------------------------------------------------------------------------------


def undo(rewritten: str, raw_hrefs: list[str]) -> str:
    """Put each rewritten href's original text back, in link order."""
    for index, raw in enumerate(raw_hrefs):
        url = click_url(BASE, MESSAGE, index, KEY)
        assert rewritten.count(url) == 1
        rewritten = rewritten.replace(url, raw)
    return rewritten


def test_rewrite_html_replaces_hrefs_only() -> None:
    html = (
        "<html><body>\n"
        '<p class="intro">Hi &amp; welcome</p>\n'
        '<A HREF="https://shop.example/?a=1&amp;b=2" class=btn>Shop</A>\n'
        "<a href='https://shop.example/x'>single</a>\r\n"
        "<a href=https://shop.example/y>unquoted</a>\n"
        '<a href="mailto:me@example.com">mail</a> <a href="tel:+331234">tel</a>\n'
        '<a href="#top">top</a> <a href="/relative">rel</a> <a href="javascript:void(0)">js</a>\n'
        f'<a href="{BASE}/t/u/sometoken">unsubscribe</a>\n'
        '<a data-sendstream-notrack href="https://shop.example/keep">keep</a>\n'
        '<!-- <a href="https://comment.example/">no</a> -->\n'
        "<script>var s = '<a href=\"https://script.example/\">';</script>\n"
        "</body></html>"
    )
    rewritten, urls = rewrite_html(html, BASE, MESSAGE, KEY)
    assert urls == [
        "https://shop.example/?a=1&b=2",
        "https://shop.example/x",
        "https://shop.example/y",
    ]
    assert (
        undo(
            rewritten,
            [
                "https://shop.example/?a=1&amp;b=2",
                "https://shop.example/x",
                "https://shop.example/y",
            ],
        )
        == html
    )
    assert '<A HREF="https://track.example.com/t/c/' in rewritten
    assert "href='https://track.example.com/t/c/" in rewritten


def test_duplicated_urls_get_their_own_index_and_occurrence_number() -> None:
    html = (
        '<a href="https://a.example/">1</a><a href="https://b.example/">2</a>'
        '<a href="https://a.example/">3</a>'
    )
    _, plain, links = track_message(html, "https://a.example/ and https://b.example/", BASE,
                                  MESSAGE, KEY)  # fmt: skip
    assert links == [
        ("https://a.example/", True),
        ("https://b.example/", True),
        ("https://a.example/", True),
        ("https://a.example/", False),
        ("https://b.example/", False),
    ]
    assert [link_position(links, i) for i in range(5)] == [1, 1, 2, 1, 1]
    assert plain is not None and click_url(BASE, MESSAGE, 3, KEY) in plain
    for index in range(5):
        token = click_url(BASE, MESSAGE, index, KEY).rsplit("/", 1)[1]
        assert verify_token(token, KEY) == TokenData("c", MESSAGE, index)


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("https://x.example/?a=1&amp;b=2", "https://x.example/?a=1&b=2"),
        ("https://x.example/?a=1&#38;b=2", "https://x.example/?a=1&b=2"),
        ("https://x.example/?a=1&#x26;b=2", "https://x.example/?a=1&b=2"),
        # Browsers keep a named reference without ";" before "=" or an alphanumeric.
        ("https://x.example/?a=1&copy=2", "https://x.example/?a=1&copy=2"),
        ("https://x.example/?a=1&ampx", "https://x.example/?a=1&ampx"),
        ("https://x.example/?a=1&amp b", "https://x.example/?a=1& b"),
        ("  https://x.example/pad \n", "https://x.example/pad"),
        ("HTTPS://X.example/Up", "HTTPS://X.example/Up"),
    ],
)
def test_href_values_are_decoded_as_browsers_do(raw: str, url: str) -> None:
    html = f'<p><a href="{raw}">x</a></p>'
    rewritten, urls = rewrite_html(html, BASE, MESSAGE, KEY)
    assert urls == [url]
    assert undo(rewritten, [raw]) == html


def test_rewriting_twice_changes_nothing_the_second_time() -> None:
    html = '<a href="https://a.example/t/c/shirts">a</a> https://a.example/t/o/x'
    once, urls = rewrite_html(html, BASE, MESSAGE, KEY)
    assert urls == ["https://a.example/t/c/shirts"]  # another site's /t/c/ path is tracked
    assert rewrite_html(once, BASE, MESSAGE, KEY) == (once, [])
    plain_once, plain_urls = rewrite_plain(html, BASE, MESSAGE, KEY)
    assert plain_urls == ["https://a.example/t/c/shirts", "https://a.example/t/o/x"]
    assert rewrite_plain(plain_once, BASE, MESSAGE, KEY) == (plain_once, [])


def test_first_of_repeated_hrefs_is_the_link() -> None:
    html = '<a href="https://first.example/" href="https://second.example/">x</a>'
    rewritten, urls = rewrite_html(html, BASE, MESSAGE, KEY)
    assert urls == ["https://first.example/"]
    assert 'href="https://second.example/"' in rewritten


def test_odd_but_valid_tags() -> None:
    html = (
        '<a\nclass="x"\n  href = "https://a.example/"\n>a</a>'
        '<a title="href=https://no.example/" href="https://b.example/">b</a>'
        '<a href="https://c.example/"/>'
        "<a href>empty</a><a>none</a>"
    )
    rewritten, urls = rewrite_html(html, BASE, MESSAGE, KEY)
    assert urls == ["https://a.example/", "https://b.example/", "https://c.example/"]
    assert undo(rewritten, urls) == html


def test_an_unquoted_value_stays_well_formed() -> None:
    rewritten, _ = rewrite_html("<a href=https://a.example/>x</a>", "https://t.example/a b",
                                MESSAGE, KEY)  # fmt: skip
    assert rewritten.startswith('<a href="https://t.example/a b/t/c/')


def test_broken_html_is_left_as_it_is() -> None:
    for html in ["<a href=", "<a href='https://a.example/", "<<<>>>&&&", "<!", "<![if x]>"]:
        rewritten, urls = rewrite_html(html, BASE, MESSAGE, KEY)
        assert (rewritten, urls) == (html, [])


# Pieces of documents: (raw text, the raw href of the tracked link it holds, its URL).
_TRACKED = [
    ("https://x.example/a", "https://x.example/a"),
    ("https://x.example/?q=1&amp;r=2", "https://x.example/?q=1&r=2"),
    ("https://x.example/?q=1&not=2", "https://x.example/?q=1&not=2"),
    ("HTTP://X.EXAMPLE/", "HTTP://X.EXAMPLE/"),
    ("https://x.example/é?π", "https://x.example/é?π"),
]
_UNTRACKED = [
    '<a href="mailto:a@b.example">m</a>',
    '<a href="#anchor">a</a>',
    '<a href="tel:+1">t</a>',
    '<a href="javascript:alert(1)">j</a>',
    '<a href="relative/path">r</a>',
    f'<a href="{BASE}/t/u/abc">u</a>',
    '<a href="https://x.example/n" data-sendstream-notrack>n</a>',
    '<!-- <a href="https://c.example/"> -->',
    '<img src="https://img.example/a.png" alt="">',
    '<p class="c">text &amp; more</p>',
    "<br/>",
    "\r\n",
    "\n",
    "<style>a[href='https://s.example/'] { color: red }</style>",
]


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    pieces: list[str] = []
    raws: list[str] = []
    urls: list[str] = []
    for _ in range(draw(st.integers(0, 12))):
        choice = draw(st.integers(0, 2))
        if choice == 0:
            raw, url = draw(st.sampled_from(_TRACKED))
            name = draw(st.sampled_from(["href", "HREF", "Href"]))
            quote = draw(st.sampled_from(['"', "'"] + ([""] if "&" not in raw else [])))
            before = draw(st.sampled_from(["", ' class="b"', "\n  ", " id=x"]))
            pieces.append(f"<a{before} {name}={quote}{raw}{quote}>link</a>")
            raws.append(raw)
            urls.append(url)
        elif choice == 1:
            pieces.append(draw(st.sampled_from(_UNTRACKED)))
        else:
            pieces.append(draw(st.text(st.characters(exclude_characters="<&"), max_size=20)))
    return "".join(pieces), raws, urls


@settings(max_examples=200)
@given(documents())
def test_rewrite_html_keeps_every_other_byte(doc: tuple[str, list[str], list[str]]) -> None:
    html, raws, urls = doc
    rewritten, found = rewrite_html(html, BASE, MESSAGE, KEY)
    assert found == urls
    assert undo(rewritten, raws) == html


# --- the pixel -----------------------------------------------------------------------------


def test_pixel_goes_before_the_last_body_end_tag() -> None:
    html = "<html><BODY><p>Hi</p><!-- </body> --></BODY >\n</html>"
    with_pixel = pixel_html(html, BASE, MESSAGE, KEY)
    pixel = with_pixel[len("<html><BODY><p>Hi</p><!-- </body> -->") : with_pixel.index("</BODY >")]
    assert with_pixel.replace(pixel, "") == html
    assert pixel.startswith(f'<img src="{open_url(BASE, MESSAGE, KEY)}"')
    for attribute in ['width="1"', 'height="1"', 'alt=""', "display:block"]:
        assert attribute in pixel


def test_pixel_is_appended_without_a_body_end_tag() -> None:
    html = "<p>Hello</p>"
    with_pixel = pixel_html(html, BASE, MESSAGE, KEY)
    assert with_pixel.startswith(html)
    assert with_pixel[len(html) :].startswith("<img ")
    assert with_pixel.endswith("/>")


@pytest.mark.parametrize(
    "html",
    [
        '<html><body><a href="https://a.example/">a</a></body></html>',
        '<p><a href="https://a.example/">a</a></p>',
        "<html><body>no links</body></html>",
    ],
)
def test_links_and_pixel_in_one_pass_equal_one_after_the_other(html: str) -> None:
    rewritten, urls = rewrite_html(html, BASE, MESSAGE, KEY)
    both, same_urls = track_html(html, BASE, MESSAGE, KEY, links=True, opens=True)
    assert both == pixel_html(rewritten, BASE, MESSAGE, KEY)
    assert same_urls == urls


def test_track_message_switches() -> None:
    html, plain = '<a href="https://a.example/">a</a>', "https://b.example/"
    assert track_message(html, plain, BASE, MESSAGE, KEY, links=False, opens=False) == (
        html,
        plain,
        [],
    )
    only_opens = track_message(html, plain, BASE, MESSAGE, KEY, links=False, opens=True)
    assert only_opens == (pixel_html(html, BASE, MESSAGE, KEY), plain, [])
    assert track_message(None, plain, BASE, MESSAGE, KEY)[2] == [("https://b.example/", False)]


# --- plain text ----------------------------------------------------------------------------


def test_rewrite_plain() -> None:
    text = (
        "Visit https://a.example/page. Or (see https://b.example/x_(y)), "
        f"or https://a.example/page!\nUnsubscribe: {BASE}/t/u/tok\nhttp://c.example/?q=1&r=2\n"
        "ftp://no.example/ and www.no.example"
    )
    rewritten, urls = rewrite_plain(text, BASE, MESSAGE, KEY, start=2)
    assert urls == [
        "https://a.example/page",
        "https://b.example/x_(y)",
        "https://a.example/page",
        "http://c.example/?q=1&r=2",
    ]
    expected = text
    for index, url in enumerate(urls, 2):
        expected = expected.replace(url, click_url(BASE, MESSAGE, index, KEY), 1)
    assert rewritten == expected
    assert f"{BASE}/t/u/tok" in rewritten


# --- machines ------------------------------------------------------------------------------

HUMAN_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/125.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17126; Pro)",
    "Mozilla/5.0 (Linux; Android 12; CUBOT X50) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Mobile Safari/537.36",
    "Thunderbird/115.0",
]
MACHINE_AGENTS = [
    ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
     "google-image-proxy"),
    ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
     "yahoo-mail-proxy"),
    ("Mozilla/5.0", "apple-mail-privacy"),
    ("Mozilla/4.0 (compatible; ms-office; MSOffice 16)", "microsoft-scanner"),
    ("Microsoft Office Existence Discovery", "microsoft-scanner"),
    ("Mozilla/5.0 (compatible; BingPreview/1.0b)", "microsoft-scanner"),
    ("Proofpoint URL Defense", "proofpoint"),
    ("Mimecast-URL-Protect/1.0", "mimecast"),
    ("Barracuda Sentinel (EE)", "barracuda"),
    ("python-requests/2.32.3", "http-library"),
    ("curl/8.5.0", "http-library"),
    ("Go-http-client/1.1", "http-library"),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "HeadlessChrome/125.0.0.0 Safari/537.36", "headless-browser"),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "bot"),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "bot"),
    ("SkypeUriPreview Preview/0.5", "bot"),
    ("SomeCrawler/1.0", "bot"),
    ("  ", "no-user-agent"),
]  # fmt: skip


@pytest.mark.parametrize("agent", HUMAN_AGENTS)
def test_people_are_not_machines(agent: str) -> None:
    assert not is_machine(agent, 3600.0, "o")
    assert not is_machine(agent, None, "c")


@pytest.mark.parametrize(("agent", "reason"), MACHINE_AGENTS)
def test_machines_by_user_agent(agent: str, reason: str) -> None:
    assert machine_reason(agent, 3600.0, "c") == reason
    assert is_machine(agent, None, "o")


@pytest.mark.parametrize("seconds", [0.0, 0.4, 0.999, -2.0])
def test_anything_within_a_second_of_delivery_is_a_machine(seconds: float) -> None:
    assert machine_reason(HUMAN_AGENTS[0], seconds, "c") == "too-fast"
    assert is_machine(HUMAN_AGENTS[0], seconds, "o")


def test_a_second_or_more_is_not_too_fast() -> None:
    assert not is_machine(HUMAN_AGENTS[0], 1.0, "c")


def test_unsubscribes_are_never_machines() -> None:
    assert not is_machine("python-requests/2.0", 0.1, "u")


def test_every_table_row_is_documented_and_distinct() -> None:
    labels = [label for label, _, _ in MACHINE_USER_AGENTS]
    assert len(labels) == len(set(labels))
    assert all(why for _, _, why in MACHINE_USER_AGENTS)
