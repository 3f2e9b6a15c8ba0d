"""The Grafana dashboard (``deploy/grafana/sendstream.json``) against the metrics the code
defines (``adapters/metrics.py``): no Grafana or Prometheus runs here, so each PromQL
expression is read token by token, and every metric it names must be one that
``/metrics`` exposes (a counter's ``_total``, a histogram's ``_bucket``, ``_sum`` and
``_count``), with every label it selects or groups by. A renamed metric or label then fails
here rather than leaving an empty panel in production."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from adapters import metrics

pytestmark = pytest.mark.unit

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "sendstream.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
PANEL_TYPES = {"row", "stat", "timeseries"}

# The PromQL functions and aggregations this checker knows; an unknown name followed by
# "(" is a typo, not a metric.
FUNCTIONS = {
    "abs", "absent", "avg", "avg_over_time", "bottomk", "ceil", "clamp_min", "count",
    "count_over_time", "delta", "deriv", "floor", "group", "histogram_quantile", "idelta",
    "increase", "irate", "label_replace", "max", "max_over_time", "min", "min_over_time",
    "quantile", "rate", "resets", "round", "scalar", "sort", "sort_desc", "stddev", "sum",
    "sum_over_time", "time", "topk", "vector",
}  # fmt: skip
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset"}

_TOKEN = re.compile(
    r"""(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      |(?P<range>\[[^\]]*\])
      |(?P<variable>\$\{[^}]*\}|\$\w+)
      |(?P<number>\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      |(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
      |(?P<op>=~|!~|!=|==|>=|<=|[-+*/%^(){},=<>])
      |(?P<space>\s+)""",
    re.VERBOSE,
)


def defined_metrics() -> dict[str, frozenset[str]]:
    """Every series name ``/metrics`` can show, with its labels."""
    found: dict[str, frozenset[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name, labels = value._name, frozenset(value._labelnames)
        if value._type == "counter":
            found[f"{name}_total"] = labels
        elif value._type == "histogram":
            found[f"{name}_bucket"] = labels | {"le"}
            found[f"{name}_sum"] = found[f"{name}_count"] = labels
        else:
            found[name] = labels
    collectors = [
        value for value in vars(metrics).values()
        if isinstance(value, type) and value.__module__ == metrics.__name__
        and Collector in value.__mro__
    ]  # fmt: skip
    # Each collector as /metrics builds it, over sample figures.
    built: dict[type, Collector] = {
        metrics.LagCollector: metrics.LagCollector(lambda: [("reader", "where", 0)]),
        metrics.BacklogCollector: metrics.BacklogCollector(lambda: (3, 1, 2)),
    }
    assert set(collectors) == set(built), "a new collector: describe it here"
    for collector in built.values():
        for family in collector.collect():
            for sample in family.samples:
                found[sample.name] = found.get(sample.name, frozenset()) | frozenset(sample.labels)
    return found


def tokens(expr: str) -> list[tuple[str, str]]:
    """``(kind, text)`` pairs of a PromQL expression, spaces left out."""
    found, at = [], 0
    while at < len(expr):
        match = _TOKEN.match(expr, at)
        assert match is not None, f"cannot read {expr[at:]!r} in {expr!r}"
        kind = match.lastgroup
        assert kind is not None
        if kind != "space":
            found.append((kind, match.group()))
        at = match.end()
    return found


def _closing(toks: list[tuple[str, str]], opening: int) -> int:
    """The index of the parenthesis or brace that closes the one at ``opening``."""
    depth = 0
    for index in range(opening, len(toks)):
        text = toks[index][1]
        if text in ("(", "{"):
            depth += 1
        elif text in (")", "}"):
            depth -= 1
            if depth == 0:
                return index
    raise AssertionError(f"unbalanced: {' '.join(t for _, t in toks)}")


def _opening(toks: list[tuple[str, str]], closing: int) -> int:
    depth = 0
    for index in range(closing, -1, -1):
        text = toks[index][1]
        if text == ")":
            depth += 1
        elif text == "(":
            depth -= 1
            if depth == 0:
                return index
    raise AssertionError(f"unbalanced: {' '.join(t for _, t in toks)}")


def problems(expr: str, known: dict[str, frozenset[str]]) -> list[str]:
    """What is wrong with ``expr``: unknown functions, metrics and labels."""
    toks = tokens(expr)
    wrong: list[str] = []
    selectors: list[tuple[int, str]] = []  # (token index, metric name)
    groupings: list[tuple[str, list[str], int, int]] = []  # (keyword, labels, from, to)
    skip: set[int] = set()  # label names inside braces and grouping lists
    for index, (kind, text) in enumerate(toks):
        if kind != "name" or index in skip:
            continue
        following = toks[index + 1][1] if index + 1 < len(toks) else ""
        if text in GROUPING:
            assert following == "(", f"{text} without a label list in {expr!r}"
            end = _closing(toks, index + 1)
            labels = [t for k, t in toks[index + 2 : end] if k == "name"]
            skip.update(range(index + 1, end))
            if text in ("by", "without"):
                # ``sum by (x) (expr)`` or ``sum(expr) by (x)``: the aggregated argument.
                if end + 1 < len(toks) and toks[end + 1][1] == "(":
                    start, stop = end + 1, _closing(toks, end + 1)
                else:
                    stop = index - 1
                    start = _opening(toks, stop)
                groupings.append((text, labels, start, stop))
            continue
        if text in KEYWORDS:
            continue
        if following in ("(", "by", "without"):  # a call, or ``sum by (x) (…)``
            if text not in FUNCTIONS:
                wrong.append(f"unknown function {text}")
            continue
        if text not in known:
            wrong.append(f"unknown metric {text}")
            continue
        selectors.append((index, text))
        if following == "{":
            end = _closing(toks, index + 1)
            inside = toks[index + 2 : end]
            skip.update(range(index + 1, end))
            matched = [
                label
                for (label_kind, label), (_, after) in pairwise(inside)
                if label_kind == "name" and after in ("=", "!=", "=~", "!~")
            ]
            wrong += [
                f"{text} has no label {label}" for label in matched if label not in known[text]
            ]
    for keyword, labels, start, stop in groupings:
        within = [name for at, name in selectors if start < at < stop]
        if not within:
            wrong.append(f"{keyword} ({', '.join(labels)}) groups no metric")
        for name in within:
            for label in labels:
                if label not in known[name]:
                    wrong.append(f"{keyword} ({label}): {name} has no label {label}")
    if not selectors and not wrong:
        wrong.append("no metric")
    return wrong


def legend_problems(expr: str, legend: str, known: dict[str, frozenset[str]]) -> list[str]:
    """Labels a legend shows must survive the expression: a grouped one, or else one every
    metric of the expression has."""
    toks = tokens(expr)
    grouped = {
        label
        for index, (_, text) in enumerate(toks)
        if text == "by"
        for kind, label in toks[index + 2 : _closing(toks, index + 1)]
        if kind == "name"
    }
    names = {text for kind, text in toks if kind == "name" and text in known}
    shown = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
    common = set.intersection(*(set(known[name]) for name in names)) if names else set()
    kept = grouped or common
    return [f"legend shows {label}, which {expr!r} does not keep" for label in shown - kept]


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row keeps its panels


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target


def test_the_checker_catches_wrong_names_and_labels() -> None:
    known = defined_metrics()
    good = (
        "histogram_quantile(0.99, sum by (route, le) "
        "(rate(sendstream_http_request_seconds_bucket[$__rate_interval])))"
    )
    assert problems(good, known) == []
    assert problems("sum(rate(sendstream_delivery_outcome_total[5m]))", known) == [
        "unknown metric sendstream_delivery_outcome_total"
    ]
    assert problems('sendstream_webhook_calls_total{status="failed"}', known) == [
        "sendstream_webhook_calls_total has no label status"
    ]
    assert problems("sum(rate(sendstream_http_requests_total[5m])) by (server)", known) == [
        "by (server): sendstream_http_requests_total has no label server"
    ]
    assert problems("sum by (le) (rate(sendstream_http_request_seconds_count[5m]))", known) == [
        "by (le): sendstream_http_request_seconds_count has no label le"
    ]
    assert problems("summ(sendstream_reader_lag)", known) == ["unknown function summ"]
    assert legend_problems("sum by (outcome) (sendstream_webhook_calls_total)", "{{route}}", known)


def test_the_dashboard_imports_with_a_prometheus_datasource_input(
    dashboard: dict[str, Any],
) -> None:
    assert dashboard["schemaVersion"] == 39
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["id"] is None  # Grafana gives an imported dashboard its own
    [source] = dashboard["__inputs"]
    assert source["name"] == "DS_PROMETHEUS"
    assert (source["type"], source["pluginId"]) == ("datasource", "prometheus")
    required = {(item["type"], item["id"]) for item in dashboard["__requires"]}
    for panel in panels(dashboard):
        assert panel["type"] in PANEL_TYPES, panel["title"]
        if panel["type"] == "row":
            continue
        assert ("panel", panel["type"]) in required, panel["type"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["datasource"] == DATASOURCE, variable["name"]


def test_panel_ids_are_unique_and_every_panel_has_its_own_place(
    dashboard: dict[str, Any],
) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert all(isinstance(panel_id, int) for panel_id in ids)
    assert len(ids) == len(set(ids)), sorted(ids)
    taken: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        place = panel["gridPos"]
        assert set(place) >= {"h", "w", "x", "y"}, panel["title"]
        assert all(isinstance(place[key], int) for key in "hwxy"), panel["title"]
        assert place["h"] > 0 and place["w"] > 0 and place["x"] >= 0 and place["y"] >= 0
        assert place["x"] + place["w"] <= 24, panel["title"]  # Grafana's grid is 24 wide
        cells = {
            (x, y)
            for x in range(place["x"], place["x"] + place["w"])
            for y in range(place["y"], place["y"] + place["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
    for panel in panels(dashboard):
        assert "gridPos" in panel, panel["title"]


def test_every_expression_names_defined_metrics_and_their_labels(
    dashboard: dict[str, Any],
) -> None:
    known = defined_metrics()
    wrong = [
        f"{title}: {expr_problem}"
        for title, target in targets(dashboard)
        for expr_problem in problems(target["expr"], known)
        + legend_problems(target["expr"], target.get("legendFormat", ""), known)
    ]
    assert wrong == []


def test_the_variables_read_labels_the_metrics_have(dashboard: dict[str, Any]) -> None:
    known = defined_metrics()
    variables = dashboard["templating"]["list"]
    assert variables
    for variable in variables:
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else (
            variable["query"])  # fmt: skip
        match = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", query)
        assert match is not None, query
        metric, label = match.groups()
        assert label in known.get(metric, ()), query
    used = {
        name
        for _, target in targets(dashboard)
        for name in re.findall(r"\$(\w+)", target["expr"])
        if not name.startswith("__")
    }
    assert used <= {variable["name"] for variable in variables}


def test_every_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    known = defined_metrics()
    named = {
        text
        for _, target in targets(dashboard)
        for kind, text in tokens(target["expr"])
        if kind == "name"
    }
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in known}
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in named & set(known)}
    assert families - shown == set()
