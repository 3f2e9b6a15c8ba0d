"""Merge tags (``%Subscriber:Field|fallback%``), rendered by the one template engine
(adapters/templating.py) as the code they stand for, and the plain-text twin of HTML
bodies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.templating import (
    _MERGE_TAG,
    from_merge_tags,
    render,
    render_subject,
    subscriber_data,
)
from domain.merge_tags import plain_from_html

FIELDS = {"FirstName": "Zoë", "City": "Lyon", "Blank": "   "}


def render_text(source: str, fields: dict[str, str]) -> str:
    return render("MessagePlain", from_merge_tags(source), subscriber_data(fields))


def render_html(source: str, fields: dict[str, str]) -> str:
    return render("MessageHTML", from_merge_tags(source), subscriber_data(fields), html=True)


def render_header(source: str, fields: dict[str, str]) -> str:
    return render_subject(from_merge_tags(source), subscriber_data(fields))


def text(template: str, fields: dict[str, str] = FIELDS) -> str:
    return render_text(template, fields)


# --- tags --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "rendered"),
    [
        ("Hi %Subscriber:FirstName%!", "Hi Zoë!"),
        ("Hi %subscriber:firstname%!", "Hi Zoë!"),
        ("Hi %SUBSCRIBER:FIRSTNAME|friend%!", "Hi Zoë!"),
        ("Hi %Subscriber:Nickname|there%!", "Hi there!"),
        ("Hi %Subscriber:Blank|there%!", "Hi there!"),
        ("Hi %Subscriber:Nickname%!", "Hi !"),
        ("Hi %Subscriber:Nickname|%!", "Hi !"),
        ("%Subscriber:FirstName%%Subscriber:City%", "ZoëLyon"),
        ("%Subscriber:FirstName% from %Subscriber:City|nowhere%", "Zoë from Lyon"),
        ("%Subscriber:Nickname|dear reader, hi|hello%", "dear reader, hi|hello"),
        ("%Subscriber:a|b|c%", "b|c"),
    ],
)
def test_tags_are_replaced(template: str, rendered: str) -> None:
    assert text(template) == rendered


@pytest.mark.parametrize(
    "template",
    [
        "%",
        "50%",
        "Save 50% today, 20% tomorrow",
        "%%%",
        "%%Subscriber%%",
        "%Other:thing%",
        "%Subscriber:%",
        "%Subscriber:|fallback%",
        "%Subscriber:First Name%",  # no spaces in a name: this is prose
        "Hi %Subscriber:FirstName, save 50%",
        "%Subscriber:FirstName",
        "%Subscriber:FirstName|no closing",
        "%Subscriber:FirstName|across\nlines%",
        "%Subscriber:" + "x" * 65 + "%",
    ],
)
def test_anything_else_is_left_as_written(template: str) -> None:
    assert text(template) == template
    assert render_html((template), FIELDS) == template


def test_tags_sit_among_lone_percent_signs() -> None:
    assert text("50%% %Subscriber:City% 100%") == "50%% Lyon 100%"
    assert text("%%Subscriber:City%%") == "%Lyon%"


def test_field_names_are_case_insensitive_and_exact_case_wins() -> None:
    assert text("%Subscriber:city%", {"CITY": "Paris"}) == "Paris"
    assert text("%Subscriber:City%", {"city": "Paris", "City": "Lyon"}) == "Lyon"


def test_a_value_is_used_as_stored() -> None:
    assert text("[%Subscriber:Name%]", {"Name": " Jo "}) == "[ Jo ]"


def test_non_text_values_are_rendered_as_text() -> None:
    assert render_text(("%Subscriber:Age%"), {"Age": 42}) == "42"  # type: ignore[dict-item]


# --- html --------------------------------------------------------------------------------


def test_html_escapes_values_and_fallbacks() -> None:
    template = '<p title="%Subscriber:Title%">Hi %Subscriber:FirstName|<b>friend</b>%</p>'
    fields = {"Title": '"><script>alert(1)</script>', "FirstName": "Tom & 'Jerry'"}
    assert render_html(template, fields) == (
        '<p title="&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">Hi Tom &amp; &#39;Jerry&#39;</p>'
    )
    assert render_html(template, {}) == '<p title="">Hi &lt;b&gt;friend&lt;/b&gt;</p>'


def test_html_leaves_the_templates_own_markup_alone() -> None:
    template = "<b>%Subscriber:City%</b> &amp; <i>more</i>"
    assert render_html(template, {"City": "Lyon"}) == "<b>Lyon</b> &amp; <i>more</i>"


# --- headers -----------------------------------------------------------------------------


def test_header_values_cannot_break_the_line() -> None:
    template = "Hello %Subscriber:FirstName|there%"
    assert render_header(template, {"FirstName": "Jo\r\nBcc: victim@example.com"}) == (
        "Hello Jo Bcc: victim@example.com"  # blanks collapse: a subject is one line
    )
    assert render_header(template, {"FirstName": "Jo\x00\x85\u2028\t"}) == "Hello Jo"
    assert render_header(template, {}) == "Hello there"


def test_header_templates_lose_their_own_line_breaks_and_outer_blanks() -> None:
    template = "  Your order\r\n %Subscriber:Id|%\n"
    assert render_header(template, {"Id": "42"}) == "Your order 42"
    assert render_header(("\r\n"), {}) == ""


# --- properties --------------------------------------------------------------------------

NAMES = st.sampled_from(["FirstName", "firstname", "City", "Nope", "x"])
# Text without "{": the rest of a template's code is the template engine's own tests'.
PROSE = st.text(max_size=10).filter(lambda s: "{" not in s)
TEMPLATE_PIECES = st.one_of(
    PROSE,
    st.sampled_from(["%", "%%", "50%", "<b>", "</b>", "%Subscriber:", "|", "%Other:x%", "\r\n"]),
    st.builds(lambda name: f"%Subscriber:{name}%", NAMES),
    st.builds(lambda name, fallback: f"%Subscriber:{name}|{fallback}%", NAMES, st.text(max_size=8)),
)
TEMPLATES = st.lists(TEMPLATE_PIECES, max_size=12).map("".join)
VALUES = st.dictionaries(
    NAMES, st.one_of(st.text(), st.sampled_from(["<script>", "\r\n", "a\nb", "<", "&lt;"]))
)


@settings(max_examples=500, deadline=None)
@given(TEMPLATES, VALUES)
def test_html_never_gains_a_less_than_sign(source: str, fields: dict[str, str]) -> None:
    literal = _MERGE_TAG.sub("", source)  # values and fallbacks are escaped
    rendered = render_html(source, fields)
    assert rendered.count("<") == literal.count("<")
    assert rendered.count(">") == literal.count(">")


@settings(max_examples=500, deadline=None)
@given(TEMPLATES, VALUES)
def test_headers_never_hold_a_line_break(source: str, fields: dict[str, str]) -> None:
    rendered = render_header((source), fields)
    assert not any(ch in rendered for ch in "\r\n\x00\x0b\x0c\x85\u2028\u2029")
    assert rendered == rendered.strip()
    assert rendered.splitlines() in ([], [rendered])


@settings(max_examples=300, deadline=None)
@given(st.text().filter(lambda s: "%" not in s and "{" not in s), VALUES)
def test_a_template_without_tags_renders_to_itself(source: str, fields: dict[str, str]) -> None:
    lines = source.replace("\r\n", "\n").replace("\r", "\n")  # as MIME would have them
    assert render_text(source, fields) == lines
    assert render_html(source, fields) == lines


@pytest.mark.parametrize(
    "source",
    [
        "%%%",
        "%Subscriber:%",
        "%Subscriber:a|b|c%",
        "%Subscriber:" * 10_000,
        "%" * 100_000,
        "%Subscriber:x|" + "y" * 100_000 + "%",
        ("%Subscriber:FirstName% " + "z" * 1000) * 200,
        "\x00\r\n%Subscriber:\x00%",
        "%Subscriber:FirstName|\ud800%",
    ],
)
def test_adversarial_templates_never_raise(source: str) -> None:
    template = source
    for rendering in (render_text, render_html, render_header):
        assert isinstance(rendering(template, FIELDS), str)


# --- plain text from html ----------------------------------------------------------------


def test_plain_from_html_reads_like_the_html() -> None:
    html = """<!doctype html><html><head><title>Offer</title>
    <style>p { color: red }</style></head>
    <body><table><tr><td><div><p>Hello &amp; welcome,
        <b>Zoë</b>!</p></div></td></tr>
    <tr><td><p>Visit <a href="https://shop.example/a?b=1&amp;c=2">our shop</a>
    or <a href="https://shop.example">https://shop.example</a>
    or write to <a href="mailto:help@shop.example">help@shop.example</a>.</p></td></tr></table>
    <ul><li>one</li><li>two</li></ul>
    <script>document.write("<p>nope</p>")</script>
    <h1>Big&nbsp;news</h1><p>Bye</p></body></html>"""
    assert plain_from_html(html) == (
        "Hello & welcome, Zoë!\n"
        "\n"
        "Visit our shop (https://shop.example/a?b=1&c=2) or https://shop.example"
        " or write to help@shop.example.\n"
        "\n"
        "- one\n"
        "- two\n"
        "\n"
        "Big news\n"
        "\n"
        "Bye"
    )


def test_plain_from_html_line_breaks() -> None:
    assert plain_from_html("a<br>b<br/>c") == "a\nb\nc"
    assert plain_from_html("a<div>b</div>c") == "a\nb\nc"
    assert plain_from_html("<p>a</p><p>b</p>") == "a\n\nb"
    assert plain_from_html("<tr><td>a</td><td>b</td></tr><tr><td>c</td></tr>") == "a b\nc"
    assert plain_from_html("<h2>T</h2>x") == "T\n\nx"


def test_plain_from_html_keeps_at_most_two_blank_lines() -> None:
    assert plain_from_html("a" + "<br>" * 10 + "b") == "a\n\n\nb"


def test_plain_from_html_links() -> None:
    assert plain_from_html('<a href="https://x.example">Go</a>') == "Go (https://x.example)"
    assert plain_from_html('<a href="https://x.example"> https://x.example </a>') == (
        "https://x.example"
    )
    assert plain_from_html('<a href="https://x.example"><img src="a.png"></a>') == (
        "https://x.example"
    )
    assert plain_from_html('<a href="https://x.example"><img alt="Logo"></a>') == (
        "Logo (https://x.example)"
    )
    assert plain_from_html('<a href="#top">Top</a>') == "Top"
    assert plain_from_html("<a>bare</a>") == "bare"


def test_plain_from_html_drops_invisible_content() -> None:
    html = (
        "<head><meta charset=utf-8><title>t</title></head><script>x()</script><style>a{}</style>ok"
    )
    assert plain_from_html(html) == "ok"
    assert plain_from_html("<head><title>t</title><body>shown") == "shown"


def test_plain_from_html_collapses_whitespace_and_decodes_entities() -> None:
    assert plain_from_html("  a \n\t b  &lt;c&gt; &eacute; &#x2603; ") == "a b <c> é ☃"
    assert plain_from_html("<pre>line 1\nline 2</pre>") == "line 1\nline 2"
    assert plain_from_html("") == ""


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=8),
            st.sampled_from(
                ["<p>", "</p>", "<br>", "<div>", "</div>", "<a href='u'>", "</a>", "<script>",
                 "</script>", "<head>", "<body>", "&amp;", "&", "<", "<!--", "-->", "<li>"]
            ),
        ),
        max_size=20,
    ).map("".join)
)  # fmt: skip
def test_plain_from_html_never_raises_and_keeps_blank_lines_in_check(html: str) -> None:
    plain = plain_from_html(html)
    assert "\n\n\n\n" not in plain
    assert plain == plain.strip()
