"""bench/run.py's report: the records of a run, and the markdown tables made from them."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from _scenarios import Scenario

Record = dict[str, Any]
TICK_NOTE = (
    "Broker CPU is counted in 10 ms clock ticks: a run in which the broker used less than about "
    "1 s of CPU (quick runs, short synchronous ones) gives a coarse figure."
)
NOISY_OTHER_CORES = 0.25  # a run where other processes used more cores than this is flagged


class Results:
    """Every record of the run, by broker and scenario, also appended to the --out file."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.brokers: list[str] = []
        self.cells: dict[tuple[str, str], list[Record]] = {}

    def add(self, broker: str, records: list[Record]) -> None:
        """Keep records of one broker and write them out at once (a crash loses nothing)."""
        if broker not in self.brokers:
            self.brokers.append(broker)
        with self.out.open("a") as fh:
            for r in records:
                self.cells.setdefault((broker, r["run_scenario"]), []).append(r)
                fh.write(json.dumps(r, separators=(",", ":")) + "\n")

    def get(self, broker: str, scenario: Scenario) -> list[Record]:
        """The records of one cell (empty when it was not run)."""
        return self.cells.get((broker, scenario.name), [])


def fmt(v: float) -> str:
    """A number as people read it: thousands separated, few decimals."""
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def spread(values: list[float]) -> str:
    """Median, and the min-max range when the runs differ."""
    med, lo, hi = statistics.median(values), min(values), max(values)
    return fmt(med) if lo == hi else f"{fmt(med)} ({fmt(lo)}-{fmt(hi)})"


def number(value: Any) -> float | None:
    """value when it is a number (bools and missing figures are not)."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


def cpu_us_per_msg(record: Record, scenario: Scenario) -> float | None:
    """Broker CPU microseconds per delivered message in one run, when both are known."""
    received = number(record.get("result", {}).get("received"))
    broker_s = number(record.get("cpu", {}).get("broker_s"))
    if not received or broker_s is None or not scenario.deliveries_per_received:
        return None
    return broker_s * 1e6 / (received * scenario.deliveries_per_received)


def why_failed(records: list[Record]) -> str:
    """What went wrong in the failed runs of a cell, in a few words."""
    reasons: list[str] = []
    for r in records:
        found = list(r.get("errors") or []) + ([r["error"]] if r.get("error") else [])
        found += result_problems(r.get("result", {}))
        reasons += [e for e in found or ["incomplete"] if e not in reasons]
    text = "; ".join(" ".join(str(e).split()) for e in reasons[:3])
    return text if len(text) <= 300 else text[:297] + "..."


def result_problems(result: Record) -> list[str]:
    """Problems a stompbench result shows in its figures: losses, refused connections."""
    problems = []
    lost = number(result.get("lost"))
    if lost:
        problems.append(f"lost {lost:,.0f} messages")
    connected, requested = number(result.get("connected")), number(result.get("requested"))
    if connected is not None and requested and connected < requested:
        problems.append(f"connected {connected:,.0f} of {requested:,.0f}")
    for reason, count in (result.get("failures") or {}).items():
        problems.append(f"{count} x {' '.join(str(reason).split())[:100]}")
    return problems


class Notes:
    """Numbered footnotes for failed cells; a broker's cells that failed alike share one."""

    def __init__(self) -> None:
        self.numbers: dict[tuple[str, str], int] = {}  # (broker, what failed) -> number
        self.scenarios: dict[int, list[str]] = {}

    def ref(self, broker: str, scenario: Scenario, records: list[Record]) -> str:
        """The footnote mark of a cell's failures, creating the note the first time."""
        n = self.numbers.setdefault((broker, why_failed(records)), len(self.numbers) + 1)
        names = self.scenarios.setdefault(n, [])
        if scenario.name not in names:
            names.append(scenario.name)
        return f"[{n}]"

    def render(self) -> list[str]:
        """The footnotes as markdown lines."""
        return [
            f"- [{n}] {broker}, {', '.join(self.scenarios[n])}: {why}"
            for (broker, why), n in self.numbers.items()
        ]


def cell(
    values: list[tuple[Record, float | None]], broker: str, scenario: Scenario, notes: Notes
) -> str:
    """One table cell: the median over complete runs, or what failed."""
    if not values:
        return "not run"
    good = [v for r, v in values if r.get("complete") and v is not None]
    failed = [r for r, _ in values if not r.get("complete")]
    if not failed:
        return spread(good) if good else "-"
    mark = notes.ref(broker, scenario, failed)
    if good:
        return f"{spread(good)}, {len(failed)} of {len(values)} failed {mark}"
    partial = [v for r, v in values if v is not None]
    return f"FAILED {mark}" + (f"; got {spread(partial)}" if partial else "")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def results_table(res: Results, scenarios: list[Scenario], notes: Notes) -> list[str]:
    """Rows: scenario figures; columns: brokers."""
    rows = []
    for s in scenarios:
        for key, label in s.metrics:
            row = [f"{s.name}: {label}"]
            for b in res.brokers:
                pairs = [(r, number(r.get("result", {}).get(key))) for r in res.get(b, s)]
                row.append(cell(pairs, b, s, notes))
            rows.append(row)
    return table(["scenario", *res.brokers], rows)


def cpu_table(res: Results, scenarios: list[Scenario], notes: Notes) -> list[str]:
    """Broker CPU µs per delivered message; rows: scenarios, columns: brokers."""
    rows = []
    for s in (s for s in scenarios if s.deliveries_per_received):
        row = [s.name]
        for b in res.brokers:
            row.append(cell([(r, cpu_us_per_msg(r, s)) for r in res.get(b, s)], b, s, notes))
        rows.append(row)
    return table(["broker CPU µs / delivered msg", *res.brokers], rows)


def cores_table(res: Results, scenarios: list[Scenario]) -> list[str]:
    """Median CPU cores busy during the runs: broker / generator / other processes."""
    rows = []
    for s in scenarios:
        row = [s.name]
        for b in res.brokers:
            cpus = [r.get("cpu", {}) for r in res.get(b, s) if "cpu" in r]
            parts = []
            for key in ("broker_cores", "generator_cores", "other_cores"):
                vals = [v for c in cpus if (v := number(c.get(key))) is not None]
                parts.append(fmt(statistics.median(vals)) if vals else "-")
            row.append(" / ".join(parts))
        rows.append(row)
    return table(["cores: broker / generator / other", *res.brokers], rows)


def noisy_runs(res: Results) -> list[str]:
    """Per broker: how many of its cells had runs where other processes were busy."""
    out = []
    for broker in res.brokers:
        cells = [rs for (b, _), rs in res.cells.items() if b == broker]
        worst = [max(noise(rs), default=0.0) for rs in cells]
        noisy = [w for w in worst if w > NOISY_OTHER_CORES]
        if noisy:
            out.append(f"{broker} {len(noisy)} of {len(cells)} (up to {max(noisy):.2f} cores)")
    return out


def noise(records: list[Record]) -> list[float]:
    """The other_cores figure of each run that has one."""
    others = (number(r.get("cpu", {}).get("other_cores")) for r in records)
    return [v for v in others if v is not None]


def report(res: Results, scenarios: list[Scenario], heading: str, about: str) -> str:
    """The whole markdown report: figures, CPU per message, cores used, noise, failures."""
    notes = Notes()
    lines = [heading, "", about, ""]
    lines += [*results_table(res, scenarios, notes), ""]
    lines += [*cpu_table(res, scenarios, notes), "", TICK_NOTE, ""]
    lines += [*cores_table(res, scenarios), ""]
    noisy = noisy_runs(res)
    if noisy:
        lines += [f"Scenarios with a run during which other processes used more than "
                  f"{NOISY_OTHER_CORES} cores: " + "; ".join(noisy) + ".", ""]  # fmt: skip
    if notes.numbers:
        lines += ["Failures:", "", *notes.render(), ""]
    return "\n".join(lines)
