"""How plans and findings are shown: a table for people, JSON for scripts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from anklume.units.findings import Finding
from anklume.units.key import short
from anklume.units.plan import ACTIONS, Plan, show_value

_STYLE = {"create": "green", "update": "yellow", "replace": "bold magenta", "move": "cyan", "delete": "red",
          "unchanged": "dim"}


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "changes": [{"action": c.action, "unit": c.uid, "reasons": [r.render() for r in c.reasons],
                     "fields": [msgspec.to_builtins(r) for r in c.reasons if r.text is None],
                     "blocked": c.blocked, "key": c.key, "recorded_key": c.old_key,
                     **({"rebuild": True} if c.rebuild else {})} for c in plan.changes],
        "summary": {a: plan.count(a) for a in (*ACTIONS, "unchanged")},
        "pending": len(plan.pending),
    }


def print_plan(plan: Plan, console: Console, *, show_unchanged: bool = False) -> None:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    table.add_column("action")
    table.add_column("unit")
    table.add_column("why")
    for c in plan.changes:
        if c.action == "unchanged" and not show_unchanged:
            continue
        why = escape("; ".join(r.render() for r in c.reasons) or f"key {short(c.key or '')}")
        if c.blocked:
            why += f" [bold red](blocked: {escape(c.blocked)})[/]"
        table.add_row(f"[{_STYLE[c.action]}]{c.action}[/]", escape(c.uid), why)
    if table.row_count:
        console.print(table)
    console.print(f"plan: {plan.summary()}")


def findings_json(findings: Sequence[Finding]) -> dict[str, Any]:
    return {"clean": not findings, "findings": [msgspec.to_builtins(f) for f in findings]}


def print_findings(findings: Sequence[Finding], console: Console) -> None:
    table = Table("object", "field", "expected", "actual", box=None, header_style="bold")
    for f in findings:
        table.add_row(escape(f.object), escape(f.field), escape(show_value(f.expected)), escape(show_value(f.actual)))
    console.print(table)
