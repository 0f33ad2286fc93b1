#!/usr/bin/env python3
"""Runs every PromQL expression of the dashboards and alert rules against a
live Prometheus and reports those that return no data.

    deploy/promql_check.py http://127.0.0.1:19090
    deploy/promql_check.py http://127.0.0.1:19090 --require-prefix redis_
    deploy/promql_check.py http://127.0.0.1:19090 --skip-metric-prefix lookout_relay_
    deploy/promql_check.py --list

A dashboard query or rule that names a metric the exporter does not export,
or joins two series whose labels never match, draws an empty panel or never
fires, and nothing says so. This script says so.

What "has data" means, per expression (each is an instant query at now):

1. The expression as written returns at least one sample: `data`. A query
   that Prometheus rejects, or that fails at evaluation (duplicate series in
   a join, for example), is an `ERROR`.
2. An alert condition such as `x / y > 0.85` is empty whenever things are
   healthy, and a panel query such as `redis_memory_max_bytes > 0` is empty
   when no limit is set. So an empty result is checked again with the
   comparisons at the top level taken away: each operand of a top-level
   `and` / `or` / `unless`, with its final comparison against a number
   removed (`x / y > 0.85` becomes `x / y`). If those return samples (all
   operands for `and`, one for `or`, the left one for `unless`): `lhs`.
   This still catches a join whose labels do not match.
3. If that is empty too and a filter remains (a comparison inside
   parentheses such as `x / (y > 0)`, or `absent()`), every vector selector
   of the expression is queried on its own. If each returns samples:
   `inputs`. Otherwise, or when no filter remains (so the operands are empty
   because a join matches nothing): `NO DATA`, naming the selectors that
   return nothing, if any.

Every expression is required to have data unless filtered:
  --skip-metric-prefix P   expressions naming a metric that starts with P are
                           not queried at all (repeatable)
  --require-prefix P       only expressions whose metrics all start with one
                           of the given prefixes are required; the others are
                           queried and reported, but do not fail the run
                           (repeatable)

Exit status: 0 when every required expression has data, 1 when one has none
or errors, 2 on bad arguments or when Prometheus cannot be reached.

Rule files are read with a small reader for the part of YAML that rule files
use (`alert:` / `record:` and `expr:` as a plain or quoted scalar or a `|` /
`>` block), since the script uses the standard library only. An `expr:` in
any other form is reported as an error rather than skipped.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))

DEFAULT_DASHBOARDS = os.path.join(HERE, "grafana", "dashboards", "*.json")
DEFAULT_RULES = os.path.join(HERE, "prometheus", "alerts", "*.yml")

# Grafana's built-in interval variables, replaced by fixed values.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
    "__interval_ms": "60000",
}


@dataclass
class Expression:
    source: str  # file it came from, relative to the repository if possible
    name: str  # panel title / alert or record name
    kind: str  # "panel" or "rule"
    expr: str


@dataclass
class Result:
    status: str  # data, lhs, inputs, NO DATA, ERROR, skipped
    detail: str = ""
    required: bool = True
    metrics: list[str] = field(default_factory=list)


# --------------------------------------------------------------- extraction --


def relpath(path: str) -> str:
    root = os.path.dirname(HERE)
    path = os.path.abspath(path)
    return os.path.relpath(path, root) if path.startswith(root + os.sep) else path


def substitute_grafana_variables(expr: str) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        # A dashboard variable (e.g. $instance in a matcher) matches everything.
        return GRAFANA_VARIABLES.get(name, ".*")

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


def dashboard_expressions(path: str) -> list[Expression]:
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    out: list[Expression] = []

    def walk(panels: list) -> None:
        for panel in panels:
            walk(panel.get("panels", []))  # rows keep collapsed panels here
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if expr:
                    title = panel.get("title", "?")
                    name = f"{title} [{target.get('refId', '?')}]"
                    out.append(Expression(relpath(path), name, "panel", substitute_grafana_variables(expr)))

    walk(dash.get("panels", []))
    return out


class RuleFileError(Exception):
    pass


def _scalar(text: str, path: str, lineno: int) -> str:
    text = text.strip()
    if text.startswith("'"):
        if not text.endswith("'") or len(text) < 2:
            raise RuleFileError(f"{path}:{lineno}: unterminated single-quoted expr")
        return text[1:-1].replace("''", "'")
    if text.startswith('"'):
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise RuleFileError(f"{path}:{lineno}: double-quoted expr this reader cannot parse: {e}") from e
    # A plain scalar ends at a comment.
    return re.split(r"\s+#", text, maxsplit=1)[0].strip()


def rule_expressions(path: str) -> list[Expression]:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    out: list[Expression] = []
    name = "?"
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\s*(?:-\s+)?(alert|record):\s*(.+?)\s*$", line)
        if m:
            name = _scalar(m.group(2), path, i + 1)
        m = re.match(r"^(\s*)(?:-\s+)?expr:\s*(.*?)\s*$", line)
        if not m:
            i += 1
            continue
        indent, value = len(m.group(1)), m.group(2)
        if re.fullmatch(r"[|>][+-]?", value):
            block: list[str] = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                block.append(lines[i].strip())
                i += 1
            expr = "\n".join(block).strip()
        elif value and value[0] in "[{&*!":
            raise RuleFileError(f"{path}:{i + 1}: expr in a YAML form this reader does not support")
        else:
            expr = _scalar(value, path, i + 1)
            i += 1
        if not expr:
            raise RuleFileError(f"{path}:{i}: empty expr")
        out.append(Expression(relpath(path), name, "rule", expr))
    return out


# ------------------------------------------------------------------ PromQL --

TOKEN = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<braces>\{)
  | (?P<range>\[[^\]]*\])
  | (?P<number>(?:0x[0-9a-fA-F]+|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])?(?:\d+(?:ms|[smhdwy]))*)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>(),@=])
    """,
    re.VERBOSE,
)

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
OTHER_KEYWORDS = {"bool", "offset", "and", "or", "unless", "inf", "nan"}
COMPARISONS = {"==", "!=", ">", "<", ">=", "<="}
SET_OPERATORS = {"and", "or", "unless"}


@dataclass
class Token:
    kind: str
    text: str
    start: int
    end: int


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(expr):
        if expr[pos] == "{":
            end = _matching_brace(expr, pos)
            tokens.append(Token("braces", expr[pos:end], pos, end))
            pos = end
            continue
        m = TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"cannot tokenize PromQL at {expr[pos:pos + 20]!r}")
        kind = m.lastgroup or "?"
        if kind not in ("space", "comment"):
            tokens.append(Token(kind, m.group(), m.start(), m.end()))
        pos = m.end()
    return tokens


def _matching_brace(expr: str, pos: int) -> int:
    i = pos + 1
    quote = ""
    while i < len(expr):
        c = expr[i]
        if quote:
            if c == "\\" and quote != "`":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c == "}":
            return i + 1
        i += 1
    raise ValueError("unterminated { in PromQL")


def vector_selectors(expr: str) -> list[str]:
    """The instant-vector selectors of an expression, ranges dropped:
    `rate(x{a="b"}[5m]) / y` gives `x{a="b"}` and `y`."""
    tokens = tokenize(expr)
    out: list[str] = []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if t.kind == "ident":
            low = t.text.lower()
            if low in LABEL_LIST_KEYWORDS and nxt is not None and nxt.text == "(":
                i = _skip_parens(tokens, i + 1)
                continue
            if low == "offset":
                i += 2
                continue
            if low in OTHER_KEYWORDS or (nxt is not None and nxt.text == "("):
                i += 1
                continue
            if low in AGGREGATIONS and nxt is not None and nxt.text.lower() in ("by", "without"):
                i += 1
                continue
            selector = t.text
            if nxt is not None and nxt.kind == "braces":
                selector += nxt.text
                i += 1
            out.append(selector)
        elif t.kind == "braces":  # a selector without a metric name
            out.append(t.text)
        i += 1
    return list(dict.fromkeys(out))


def _skip_parens(tokens: list[Token], i: int) -> int:
    depth = 0
    while i < len(tokens):
        if tokens[i].text == "(":
            depth += 1
        elif tokens[i].text == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return i


def metric_names(expr: str) -> list[str]:
    names = []
    for sel in vector_selectors(expr):
        m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", sel)
        if m:
            names.append(m.group())
        else:
            m = re.search(r"__name__\s*=\s*\"([^\"]+)\"", sel)
            names.append(m.group(1) if m else "")
    return names


def split_top_level(expr: str) -> tuple[str, list[str]]:
    """Splits on the top-level set operator of lowest precedence:
    ("or", [a, b]) for `a or b`, ("", [expr]) when there is none."""
    tokens = tokenize(expr)
    for op in ("or", "and", "unless"):  # `or` binds loosest
        cuts = []
        depth = 0
        for idx, t in enumerate(tokens):
            if t.text in ("(",):
                depth += 1
            elif t.text == ")":
                depth -= 1
            elif depth == 0 and t.kind == "ident" and t.text.lower() == op:
                cuts.append(idx)
        if cuts:
            parts, start = [], 0
            for c in cuts:
                end = c
                # a vector-matching clause after the operator belongs to it
                parts.append(expr[_pos(tokens, start) : tokens[end].start].strip())
                start = _after_matching_clause(tokens, c + 1)
            parts.append(expr[_pos(tokens, start) :].strip())
            return op, parts
    return "", [expr]


def _pos(tokens: list[Token], idx: int) -> int:
    return tokens[idx].start if idx < len(tokens) else tokens[-1].end


def _after_matching_clause(tokens: list[Token], i: int) -> int:
    while i < len(tokens) and tokens[i].kind == "ident" and tokens[i].text.lower() in LABEL_LIST_KEYWORDS:
        i = _skip_parens(tokens, i + 1) if i + 1 < len(tokens) and tokens[i + 1].text == "(" else i + 1
    return i


def has_filter(expr: str) -> bool:
    """Whether anything in the expression may legitimately drop every
    series: a comparison without `bool`, or absent()."""
    tokens = tokenize(expr)
    for idx, t in enumerate(tokens):
        nxt = tokens[idx + 1] if idx + 1 < len(tokens) else None
        if t.kind == "op" and t.text in COMPARISONS and not (nxt and nxt.text.lower() == "bool"):
            return True
        if t.kind == "ident" and t.text in ("absent", "absent_over_time") and nxt and nxt.text == "(":
            return True
    return False


def strip_comparison(expr: str) -> str:
    """`x / y > 0.85` -> `x / y`: removes a final top-level comparison whose
    right-hand side is a number (with an optional `bool`)."""
    tokens = tokenize(expr)
    depth = 0
    last_cmp = -1
    for idx, t in enumerate(tokens):
        if t.text == "(":
            depth += 1
        elif t.text == ")":
            depth -= 1
        elif depth == 0 and t.kind == "op" and t.text in COMPARISONS:
            last_cmp = idx
    if last_cmp <= 0:
        return expr
    rest = [t for t in tokens[last_cmp + 1 :] if t.text.lower() != "bool"]
    if rest and rest[0].text in "+-":
        rest = rest[1:]
    if len(rest) == 1 and rest[0].kind == "number":
        return strip_comparison(expr[: tokens[last_cmp].start].strip())
    return expr


# ------------------------------------------------------------- Prometheus --


class Unreachable(Exception):
    pass


class Prometheus:
    def __init__(self, url: str, timeout: float):
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query(self, expr: str) -> tuple[int, str]:
        """(number of samples, error message or "")."""
        data = urllib.parse.urlencode({"query": expr}).encode()
        req = urllib.request.Request(f"{self.url}/api/v1/query", data=data, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = json.load(resp)
        except urllib.error.HTTPError as e:  # 400/422: a bad or failing query
            try:
                body = json.load(e)
            except ValueError:
                return 0, f"HTTP {e.code}"
        except (urllib.error.URLError, OSError) as e:
            raise Unreachable(f"cannot reach Prometheus at {self.url}: {e}") from e
        if body.get("status") != "success":
            return 0, f"{body.get('errorType', 'error')}: {body.get('error', '?')}"
        result = body["data"]["result"]
        if body["data"]["resultType"] in ("scalar", "string"):
            return 1, ""
        return len(result), ""


def check(prom: Prometheus, e: Expression) -> Result:
    try:
        selectors = vector_selectors(e.expr)
    except ValueError as err:
        return Result("ERROR", str(err))
    n, err = prom.query(e.expr)
    if err:
        return Result("ERROR", err)
    if n:
        return Result("data", f"{n} series")

    op, parts = split_top_level(e.expr)
    counts = []
    for part in parts:
        stripped = strip_comparison(part)
        c, err = prom.query(stripped)
        if err:
            return Result("ERROR", f"{stripped}: {err}")
        counts.append(c)
    if (op == "or" and any(counts)) or (op == "unless" and counts[0]) or (op in ("", "and") and all(counts)):
        return Result("lhs", "empty as written; without its comparison: " + ", ".join(map(str, counts)) + " series")

    stripped_parts = [strip_comparison(part) for part in parts]
    if not any(has_filter(x) for x in stripped_parts):
        # Nothing filters the operands any more, yet they are empty although
        # (maybe) each input has data: a join whose labels never match.
        missing = [sel for sel in selectors if not prom.query(sel)[0]]
        if missing:
            return Result("NO DATA", "no data for " + ", ".join(missing))
        return Result("NO DATA", "every selector has data, but the expression joins them to nothing")

    missing = []
    for sel in selectors:
        c, err = prom.query(sel)
        if err:
            return Result("ERROR", f"{sel}: {err}")
        if not c:
            missing.append(sel)
    if selectors and not missing:
        return Result("inputs", "empty as written; every selector has data")
    return Result("NO DATA", "no data for " + (", ".join(missing) if missing else "an expression without selectors"))


# -------------------------------------------------------------------- main --


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        description="Report dashboard and alert-rule PromQL expressions that return no data.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    ap.add_argument("prometheus_url", nargs="?", help="e.g. http://127.0.0.1:19090")
    ap.add_argument("--list", action="store_true",
                    help="print the expressions and their selectors without querying; exit 1 if a file cannot be read")
    ap.add_argument("--dashboard", action="append", metavar="GLOB",
                    help=f"dashboard JSON files (default {relpath(DEFAULT_DASHBOARDS)})")
    ap.add_argument("--rules", action="append", metavar="GLOB",
                    help=f"rule files (default {relpath(DEFAULT_RULES)})")
    ap.add_argument("--require-prefix", action="append", default=[], metavar="P",
                    help="require data only for expressions whose metrics all start with P")
    ap.add_argument("--skip-metric-prefix", action="append", default=[], metavar="P",
                    help="do not query expressions naming a metric that starts with P")
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per query (default 10)")
    ap.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    args = ap.parse_args(argv)

    dashboards = sorted({p for g in (args.dashboard or [DEFAULT_DASHBOARDS]) for p in glob.glob(g)})
    rules = sorted({p for g in (args.rules or [DEFAULT_RULES]) for p in glob.glob(g)})
    if not dashboards and not rules:
        print("promql_check: no dashboard or rule files found", file=sys.stderr)
        return 2

    exprs: list[Expression] = []
    load_errors = []
    for p in dashboards:
        try:
            exprs += dashboard_expressions(p)
        except (OSError, ValueError) as e:
            load_errors.append(f"{relpath(p)}: {e}")
    for p in rules:
        try:
            exprs += rule_expressions(p)
        except (OSError, RuleFileError) as e:
            load_errors.append(str(e))

    if args.list:
        for msg in load_errors:
            print(f"ERROR     {msg}")
        for e in exprs:
            try:
                sels = ", ".join(vector_selectors(e.expr))
            except ValueError as err:
                sels, load_errors = f"ERROR {err}", load_errors + [str(err)]
            print(f"{e.kind:<5} {e.source}: {e.name}\n      {' '.join(e.expr.split())}\n      selectors: {sels}")
        print(f"{len(exprs)} expressions")
        return 1 if load_errors else 0
    if not args.prometheus_url:
        ap.error("the Prometheus URL is required (or --list)")

    prom = Prometheus(args.prometheus_url, args.timeout)
    passed = failed = skipped = 0
    for msg in load_errors:
        print(f"ERROR     {msg}")
        failed += 1
    for e in exprs:
        try:
            names = metric_names(e.expr)
        except ValueError:
            names = []
        if any(n.startswith(p) for n in names for p in args.skip_metric_prefix):
            res = Result("skipped", "metric prefix skipped")
        else:
            try:
                res = check(prom, e)
            except Unreachable as err:
                print(f"promql_check: {err}", file=sys.stderr)
                return 2
            if args.require_prefix:
                res.required = bool(names) and all(
                    any(n.startswith(p) for p in args.require_prefix) for n in names
                )
        ok = res.status in ("data", "lhs", "inputs")
        if res.status == "skipped":
            skipped += 1
        elif ok or not res.required:
            passed += 1
        else:
            failed += 1
        label = res.status if res.required or ok or res.status == "skipped" else f"{res.status} (not required)"
        if not args.quiet or (not ok and res.required and res.status != "skipped"):
            one_line = " ".join(e.expr.split())
            print(f"{label:<9} {e.kind:<5} {e.source}: {e.name}\n          {one_line}\n          {res.detail}")
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
