"""Which metrics a PromQL expression reads, and which names a `/metrics` scrape exports.

promtool has no command that prints an expression's selectors, and a Go helper for one test would be
another binary to build; so this is a small tokenizer. It is not a PromQL parser, and it does not need
to be: the expressions it reads are ours (the chart's alerts and the dashboard's panels), and
`promtool check rules` parses the alert expressions for real in the same test. What it must get right
is which identifiers are metric names:

- string literals (label values, `label_replace` arguments) and `[...]` ranges are dropped;
- in a `{...}` matcher block only `__name__="..."` names a metric; the rest are labels;
- an identifier followed by `(` is a function or an aggregation; aggregation operators, keywords and
  set operators (`by`, `on`, `offset`, `and`, ...) are never metrics; the parenthesised label lists
  after `by`, `without`, `on`, `ignoring`, `group_left` and `group_right` are labels;
- numbers and durations (`0.99`, `5m`, `1e3`) start with a digit and are skipped;
- Grafana's `$var` / `${var}` / `$__rate_interval` are replaced before tokenizing, and its
  `label_values(<selector>, <label>)` variable queries are reduced to the selector.
"""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

AGGREGATIONS = frozenset(
    [
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ]
)
KEYWORDS = frozenset(
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "offset",
        "bool",
        "and",
        "or",
        "unless",
        "atan2",
    ]
)
LABEL_LISTS = frozenset(["by", "without", "on", "ignoring", "group_left", "group_right"])
CONSTANTS = frozenset({"inf", "nan"})

_TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<matchers>\{[^{}]*\})
    |(?P<range>\[[^\]]*\])
    |(?P<number>[0-9][0-9a-zA-Z_.+]*)
    |(?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    |(?P<open>\()
    |(?P<close>\))
    |(?P<other>\S)
    """,
    re.VERBOSE,
)
_NAME_MATCHER = re.compile(r"""__name__\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<selector>.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.S)


def grafana_to_promql(query: str) -> str:
    """A Grafana target or variable query as plain PromQL (variables become a placeholder token)."""
    match = _LABEL_VALUES.match(query)
    if match:
        query = match.group("selector")
    # Inside quotes or brackets the placeholder is harmless (`=~"x"`, `[x]`); elsewhere no panel uses one.
    return _GRAFANA_VAR.sub("x", query)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects, e.g. {"workqueue_depth"} for `max by (name) (workqueue_depth)`."""
    tokens = [(m.lastgroup, m.group()) for m in _TOKEN.finditer(expr)]
    names: set[str] = set()
    in_label_list = False
    for i, (kind, text) in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
        if kind == "matchers":
            for quoted in _NAME_MATCHER.findall(text):
                names.add(quoted[0] or quoted[1])
        elif kind == "close":
            in_label_list = False
        elif kind == "ident":
            if in_label_list:
                continue
            lowered = text.lower()
            if lowered in LABEL_LISTS and nxt[0] == "open":
                in_label_list = True
            elif lowered in KEYWORDS or lowered in AGGREGATIONS or lowered in CONSTANTS:
                continue
            elif nxt[0] == "open":
                continue  # a function call
            else:
                names.add(text)
    return names


def exported_names(scrape: str) -> set[str]:
    """Every sample name a scrape exports, or would export once a labelled family has children
    (a family with no series yet still has its HELP/TYPE lines)."""
    out: set[str] = set()
    suffixes = {
        "counter": ("_total",),
        "histogram": ("_bucket", "_sum", "_count"),
        "summary": ("_sum", "_count", ""),
        "gauge": ("",),
        "info": ("_info",),
    }
    for family in text_string_to_metric_families(scrape):
        out.update(sample.name for sample in family.samples)
        out.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return out
