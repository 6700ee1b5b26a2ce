"""What a chaos run leaves: report.json (everything, for tools) and report.md (for people): the
bounds, the fault timeline with the samples of what must always hold and the moments of the
broken cases, the verdict with examples, the faults just before each broken case and the log
lines that name its order."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.chaos.buyers import Attempt
from loadtests.chaos.checker import INVARIANTS, Breach, ChaosVerdict, answer_label
from loadtests.chaos.faults import FaultRecord

LOG_LINES_PER_BREACH = 4
FAULTS_BEFORE_BREACH = 3


@dataclass(frozen=True)
class Sample:
    """What must hold at every moment, read during the sale (seconds from its start)."""

    at: float
    broken: list[str] | None  # None: could not be read (a datastore was down, say)
    orders_by_status: dict[str, int]
    error: str | None


def faults_before(faults: Sequence[FaultRecord], at: float | None) -> list[str]:
    if at is None:
        return []
    before = [r for r in faults if r.began <= at]
    return [f"{r.fault.label()} at {r.began:.1f} s" for r in before[-FAULTS_BEFORE_BREACH:]]


def log_lines_naming(logs: Path, order_id: int | None) -> list[str]:
    """A few log lines (of any app) that name the order, to start reading from."""
    if order_id is None or not logs.is_dir():
        return []
    # As the apps log an order: a field of the line, or a path that carries its id.
    pattern = re.compile(rf'"order_id": {order_id}\b|/(?:orders|holds)/{order_id}\b')
    found: list[str] = []
    for path in sorted(logs.glob("*.log")):
        with path.open(errors="replace") as lines:
            for line in lines:
                if pattern.search(line):
                    found.append(f"{path.stem}: {line.strip()[:400]}")
                    if len(found) >= LOG_LINES_PER_BREACH:
                        return found
    return found


def timeline(faults: Sequence[FaultRecord], samples: Sequence[Sample],
             verdict: ChaosVerdict) -> list[tuple[float, str]]:
    events: list[tuple[float, str]] = []
    for record in faults:
        outcome = (f"error: {record.error}" if record.error else
                   f"back at {record.restored:.1f} s" + (
                       f" ({record.attempts} starts)" if record.attempts > 1 else ""))
        events.append((record.began, f"FAULT {record.fault.label()} (down "
                                     f"{record.fault.down_seconds:.1f} s; {outcome})"))
    for sample in samples:
        if sample.broken is None:
            what = f"sample: {sample.error}"
        else:
            status = ", ".join(f"{k} {v}" for k, v in sorted(sample.orders_by_status.items()))
            what = (f"sample: BROKEN {', '.join(sample.broken)}" if sample.broken
                    else "sample: always-invariants ok") + (f" (orders: {status})" if status
                                                            else "")
        events.append((sample.at, what))
    for invariant, breaches in verdict.breaches.items():
        for breach in breaches:
            if breach.at is not None:
                events.append((breach.at, f"BREACH {invariant}: {breach.detail}"))
    return sorted(events, key=lambda event: event[0])


def _markdown(report: dict[str, Any], verdict: ChaosVerdict, faults: Sequence[FaultRecord],
              samples: Sequence[Sample], attempts: Sequence[Attempt], logs: Path) -> str:
    bounds = report["bounds"]
    out = [f"# Chaos run, seed {report['seed']}: {'PASS' if verdict.ok else 'FAIL'}", "",
           f"{report['date']}; product {report['product_id']}; sale opened at "
           f"{report['sale_opened_at']} (t = 0 below), ended at "
           f"{report['sale_ended_at']} s, settled in {report['settled_in']} s"
           f"{'' if report['settled'] else ' (NOT quiet at the bound)'}.", "",
           "## Bounds", "",
           f"- sale {bounds['duration']:.0f} s; {bounds['faults']} faults between "
           f"{bounds['fault_window'][0]:.0f} and {bounds['fault_window'][1]:.0f} s, each down "
           f"at most {bounds['max_down_seconds']} s",
           f"- {bounds['buyers']} buyers arriving within {bounds['arrive_within']:.0f} s; each "
           f"request at most {bounds['attempts_per_operation']} attempts within "
           f"{bounds['seconds_per_operation']:.0f} s",
           f"- settle at most {bounds['settle_within']:.0f} s; whole sale at most "
           f"{bounds['run_within']:.0f} s",
           f"- timers: {json.dumps(report['timers'])}", "",
           "## Verdict", ""]
    for invariant in INVARIANTS:
        found = verdict.breaches.get(invariant, [])
        out.append(f"- **{'BROKEN' if found else 'ok'}** `{invariant}`"
                   + (f": {verdict.counts[invariant]} cases" if found else ""))
    for invariant, breaches in verdict.breaches.items():
        out += ["", f"### `{invariant}`", ""]
        for breach in breaches:
            out += _breach_lines(breach, faults, logs)
    out += ["", "## Timeline (seconds from the opening)", "", "| t | event |", "|---:|---|"]
    out += [f"| {at:.1f} | {what.replace('|', '/')} |" for at, what in
            timeline(faults, samples, verdict)]
    answers = Counter(answer_label(a) for a in attempts)
    out += ["", "## Answers the buyers got", "", "| answer | count |", "|---|---:|"]
    out += [f"| {answer} | {count} |" for answer, count in sorted(answers.items())]
    out += ["", "## Facts", "", "```json", json.dumps(verdict.facts, indent=2), "```", "",
            f"Logs: `{logs}`; every attempt: `attempts.json`."]
    return "\n".join(out) + "\n"


def _breach_lines(breach: Breach, faults: Sequence[FaultRecord], logs: Path) -> list[str]:
    parts = ([f"order {breach.order_id}"] if breach.order_id is not None else []) + (
        [f"at {breach.at} s"] if breach.at is not None else [])
    lines = [f"- {breach.detail}" + (f" ({', '.join(parts)})" if parts else "")]
    before = faults_before(faults, breach.at)
    if before:
        lines.append(f"  - faults just before: {'; '.join(before)}")
    lines += [f"  - `{line}`" for line in log_lines_naming(logs, breach.order_id)]
    return lines


def write_report(out: Path, report: dict[str, Any], verdict: ChaosVerdict,
                 faults: Sequence[FaultRecord], samples: Sequence[Sample],
                 attempts: Sequence[Attempt]) -> tuple[Path, Path]:
    json_path, md_path = out / "report.json", out / "report.md"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    md_path.write_text(_markdown(report, verdict, faults, samples, attempts, out / "logs"))
    return md_path, json_path
