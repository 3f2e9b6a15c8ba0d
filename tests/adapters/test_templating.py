"""The template engine's rules: what is refused when a template is stored (with its line),
and what rendering does with values and missing data."""

from __future__ import annotations

import pytest

from adapters.templating import TemplateRefused, check, render, render_subject


@pytest.mark.parametrize(
    ("source", "line", "reason"),
    [
        ("Hello {% if %}", 1, "Expected an expression"),
        ("one\ntwo\n{% include 'x.html' %}", 3, "include, import and extends are not allowed"),
        ("{% extends 'base' %}", 1, "include, import and extends are not allowed"),
        ("{% import 'm' as m %}", 1, "include, import and extends are not allowed"),
        ("\n{{ name | no_such_filter }}", 2, "No filter named 'no_such_filter'"),
        ("{{ range(10) }}", 1, "there is no function range(): use a filter"),
        ("{% for a in x %}{% for b in a %}{% for c in b %}{% endfor %}{% endfor %}{% endfor %}",
         1, "loops nest at most 2 deep"),
        ("{% for a in x %}", 1, "Unexpected end of template"),
    ],
)  # fmt: skip
def test_what_is_refused_when_stored_names_its_part_and_line(
    source: str, line: int, reason: str
) -> None:
    with pytest.raises(TemplateRefused) as refused:
        check("HTMLContent", source, html=True)
    assert refused.value.part == "HTMLContent"
    assert refused.value.line == line
    assert refused.value.reason.startswith(reason), refused.value.reason


def test_values_cannot_add_markup_or_headers_and_missing_data_renders_empty() -> None:
    data = {"name": "<script>x</script>", "items": [{"sku": "A"}, {"sku": "B"}]}
    html = "<p>Hi {{ name }}</p>{% for i in items %}<i>{{ i.sku }}</i>{% endfor %}{{ gone.deep }}"
    check("HTMLContent", html, html=True)
    assert render("HTMLContent", html, data, html=True) == (
        "<p>Hi &lt;script&gt;x&lt;/script&gt;</p><i>A</i><i>B</i>"
    )
    assert render("PlainContent", "Hi {{ name }}", data) == "Hi <script>x</script>"
    assert render("PlainContent", "Hi {{ first | default('there') }}", {}) == "Hi there"
    subject = render_subject("Order {{ n }}", {"n": "7\r\nBcc: all@example.org"})
    assert subject == "Order 7 Bcc: all@example.org"


def test_python_internals_are_out_of_reach() -> None:
    for source in ("{{ ''.__class__.__mro__ }}", "{{ items.append(1) }}", "{{ x.__globals__ }}"):
        try:
            check("PlainContent", source)
            rendered = render("PlainContent", source, {"items": [], "x": "text"})
        except TemplateRefused:
            continue
        assert "class" not in rendered and "[1]" not in rendered, (source, rendered)


def test_what_the_data_makes_of_a_template_is_refused_not_raised() -> None:
    for source, data in (("{% for x in n %}{{ x }}{% endfor %}", {"n": 5}),
                         ("{{ 1 / z }}", {"z": 0})):  # fmt: skip
        check("PlainContent", source)
        with pytest.raises(TemplateRefused):
            render("PlainContent", source, data)
    assert render("PlainContent", "{{ order.items | join(',') }}",
                  {"order": {"items": ["a", "b"]}}) == "a,b"  # fmt: skip
