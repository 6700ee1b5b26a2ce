"""What a load run leaves to show others: summary.json's figures and the PNG chart, both from the
answers the crowd (loadtests/crowd.py) and Locust (loadtests/locustfile.py) collected: the run's
outcomes file."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadtests.fairness import fairness_of, stamp_order

ORDERS = "POST /orders"
PAYMENTS = "POST /payments"
# The goals of the opening (issue 17), in seconds from sale_opens_at.
FINAL_WITHIN = 1.0  # p99 of the buyers' final answers, at the default crowd
FIRST_WITHIN = 2.0  # every buyer a ticket or a final answer, at 20,000 buyers
WAITED_AT_LEAST = 2.0  # a ticket answered sooner had no time to hear its position move
FINAL_WITHIN_LARGE = 10.0  # every buyer a final answer, at 20,000 buyers


@dataclass(frozen=True)
class Answer:
    route: str
    status: int
    code: str
    sent: float  # epoch seconds
    latency_ms: float

    @property
    def answered(self) -> float:
        return self.sent + self.latency_ms / 1000


def answers_of(outcomes: Mapping[str, Any]) -> list[Answer]:
    return [Answer(str(r[0]), int(r[1]), str(r[2]), float(r[3]), float(r[4]))
            for r in outcomes.get("records", ())]


def final_answers(outcomes: Mapping[str, Any]) -> list[Answer]:
    """The orders' final answers: a 202's is its ticket's (as a 201 when `ordered`, as the
    refusal's 409 when `refused`), timed from the order's send to that final answer; an order
    without one keeps its first answer. Payments as they were answered."""
    if "buyers" not in outcomes:
        return answers_of(outcomes)
    found = [a for a in answers_of(outcomes) if a.route != ORDERS]
    for buyer in outcomes["buyers"]:
        for tap in buyer.get("taps", ()):
            if not tap.get("sent"):
                continue
            if tap.get("final_at") is not None:
                status = int(tap.get("final_status") or (
                    201 if tap["state"] == "ordered" else 409))
                found.append(Answer(ORDERS, status, str(tap.get("final_code", "")),
                                    float(tap["sent"]),
                                    (float(tap["final_at"]) - float(tap["sent"])) * 1000))
            else:
                answered = tap.get("answered") or tap["sent"]
                found.append(Answer(ORDERS, int(tap.get("status") or 0), str(tap.get("code", "")),
                                    float(tap["sent"]),
                                    (float(answered) - float(tap["sent"])) * 1000))
    return sorted(found, key=lambda a: a.sent)


def buyers_at_opening(buyers: Sequence[Mapping[str, Any]], opens_at: float,
                      decided_again: Collection[str] = frozenset(),
                      stamps: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Per buyer, in seconds from the opening: its first answer (a ticket or a final answer)
    and its final one (the last of its orders' final answers; a buyer without one counts as
    never answered), their percentiles and the shares within the opening's goals, what the
    buyers were answered, and the line's fairness (`decided_again`: as the checker judges it,
    loadtests/fairness.py), beside how the gateway's stamps followed the sends when the line's
    records were read (`stamps`)."""
    first: list[float] = []
    final: list[float] = []
    outcomes: Counter[str] = Counter()
    tickets = 0
    for buyer in buyers:
        taps = [t for t in buyer.get("taps", ()) if t.get("sent")]
        firsts = [float(t["answered"]) for t in taps if t.get("answered") and t.get("status")]
        finals = [float(t["final_at"]) for t in taps if t.get("final_at") is not None]
        tickets += sum(1 for t in taps if t.get("ticket"))
        first.append(min(firsts) - opens_at if firsts and len(firsts) == len(taps) else math.inf)
        final.append(max(finals) - opens_at if taps and len(finals) == len(taps) else math.inf)
        for tap in taps or [{}]:
            outcomes[("ordered" if tap.get("state") == "ordered" else
                      f"refused {tap.get('final_code')}" if tap.get("state") == "refused" else
                      "no final answer")] += 1

    def shares(values: list[float], within: float) -> float:
        return round(sum(v <= within for v in values) / len(values), 4) if values else math.nan

    def seconds(values: list[float]) -> dict[str, float | None]:
        return {f"p{p}_s": _finite(percentile(values, p)) for p in (50, 95, 99)} | {
            "max_s": _finite(max(values)) if values else None}

    return {"buyers": len(buyers), "tickets": tickets, "orders_by_final": dict(sorted(
                outcomes.items())),
            "waiting": waiting_of(buyers),
            "phases": phases_of(buyers, opens_at),
            "first_answer": seconds(first) | {
                f"share_within_{FIRST_WITHIN:g}_s": shares(first, FIRST_WITHIN)},
            "final_answer": seconds(final) | {
                f"share_within_{FINAL_WITHIN:g}_s": shares(final, FINAL_WITHIN),
                f"share_within_{FINAL_WITHIN_LARGE:g}_s": shares(final, FINAL_WITHIN_LARGE)},
            "fairness": fairness_of(buyers, decided_again).as_dict()
            | ({"stamps": stamp_order(buyers, stamps)} if stamps else {})}


def phases_of(buyers: Sequence[Mapping[str, Any]], opens_at: float) -> dict[str, float | None]:
    """Where the final answers' time went, in seconds from the opening: the crowd's last send;
    the first order answered (the gateway reading the crowd, then one decision); the first
    `sold_out` answered (the stock all taken); the final answers' p99 follows once the crowd
    behind the sell-out has been told. A run whose p99 moves shows here which part moved."""
    taps = [tap for buyer in buyers for tap in buyer.get("taps", ()) if tap.get("sent")]

    def earliest(state: str, code: str | None = None) -> float | None:
        found = [float(tap["final_at"]) - opens_at for tap in taps
                 if tap.get("final_at") is not None and tap.get("state") == state
                 and (code is None or tap.get("final_code") == code)]
        return _finite(min(found)) if found else None

    return {"last_sent_s": _finite(max(float(tap["sent"]) for tap in taps) - opens_at)
            if taps else None,
            "first_order_s": earliest("ordered"),
            "first_sold_out_s": earliest("refused", "sold_out")}


def waiting_of(buyers: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the buyers who waited in line at least WAITED_AT_LEAST seconds for their final
    answer saw of it: how many heard their position come nearer the front, and the longest
    each went without hearing it move (the percentiles over them)."""
    waited = [tap for buyer in buyers for tap in buyer.get("taps", ())
              if tap.get("ticket") and tap.get("final_at") is not None and tap.get("answered")
              and float(tap["final_at"]) - float(tap["answered"]) >= WAITED_AT_LEAST]
    unmoved = [float(tap.get("longest_unmoved") or 0.0) for tap in waited]
    return {f"waited_{WAITED_AT_LEAST:g}_s_or_more": len(waited),
            "heard_a_move": round(sum(1 for tap in waited if tap.get("moves")) / len(waited), 4)
            if waited else None,
            "longest_unmoved": {f"p{p}_s": _finite(percentile(unmoved, p)) for p in (50, 95)}}


def _finite(value: float) -> float | None:
    """Seconds rounded to the millisecond; None for a buyer never answered (or none at all)."""
    return round(value, 3) if math.isfinite(value) else None


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def latency(answers: Sequence[Answer]) -> dict[str, float | int]:
    values = [a.latency_ms for a in answers]
    return {"count": len(values), **{f"p{p}_ms": round(percentile(values, p), 1)
                                     for p in (50, 95, 99)},
            "max_ms": round(max(values), 1) if values else math.nan}


def decisions_at_opening(answers: Sequence[Answer], opens_at: float) -> dict[str, float | int]:
    """Every buyer orders at the opening: orders decided (201, or 409 of any kind) per second
    from the opening to the last decision. How many the load generator managed to send within
    the first second is given too: a client short of CPU spreads the burst out."""
    orders = [a for a in answers if a.route == ORDERS]
    decided = [a for a in orders if a.status in (201, 409)]
    first_second = len([a for a in orders if a.sent < opens_at + 1.0])
    if not decided:
        return {"orders": len(orders), "sent_in_first_second": first_second, "decided": 0,
                "seconds": 0.0, "per_second": 0.0}
    seconds = max(max(a.answered for a in decided) - opens_at, 1e-3)
    return {"orders": len(orders), "sent_in_first_second": first_second,
            "decided": len(decided), "seconds": round(seconds, 3),
            "per_second": round(len(decided) / seconds, 1)}


def order_and_payment_rate(answers: Sequence[Answer]) -> dict[str, float | int]:
    """Order and payment requests answered per second from the first sent to the last answer,
    and their mean latency: the figure public write-ups of the same brief quote."""
    if not answers:
        return {"requests": 0, "seconds": 0.0, "per_second": 0.0, "mean_ms": math.nan}
    seconds = max(max(a.answered for a in answers) - min(a.sent for a in answers), 1e-3)
    return {"requests": len(answers), "seconds": round(seconds, 3),
            "per_second": round(len(answers) / seconds, 1),
            "mean_ms": round(sum(a.latency_ms for a in answers) / len(answers), 1)}


def answer_counts(outcomes: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """route -> "status code" -> count, over every answer of the run."""
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for route, status, code, n in outcomes.get("counts", ()):
        counts[route][f"{status} {code}".strip()] += int(n)
    for a in answers_of(outcomes):
        counts[a.route][f"{a.status} {a.code}".strip()] += 1
    return {route: dict(sorted(c.items())) for route, c in sorted(counts.items())}


def errors_by_code(counts: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    """Every answer that was not a 2xx or 3xx, by status and problem code, all routes."""
    errors: Counter[str] = Counter()
    for by_code in counts.values():
        for key, n in by_code.items():
            if not 200 <= int(key.split()[0]) < 400:
                errors[key] += n
    return dict(sorted(errors.items()))


def summarise(outcomes: Mapping[str, Any], opens_at: float,
              decided_again: Collection[str] = frozenset(),
              stamps: Mapping[str, int] | None = None) -> dict[str, Any]:
    answers = answers_of(outcomes)
    counts = answer_counts(outcomes)
    buyers = (buyers_at_opening(outcomes["buyers"], opens_at, decided_again, stamps)
              if "buyers" in outcomes else None)
    return {
        "decisions_at_opening": decisions_at_opening(final_answers(outcomes), opens_at),
        **({"buyers_at_opening": buyers} if buyers is not None else {}),
        "orders_and_payments": order_and_payment_rate(answers),
        "latency": {ORDERS: latency([a for a in answers if a.route == ORDERS]),
                    PAYMENTS: latency([a for a in answers if a.route == PAYMENTS])},
        "buyers_done": outcomes.get("buyers_done", 0),
        "answers": counts,
        "errors_by_code": errors_by_code(counts),
    }


def outcome_label(answer: Answer) -> str:
    if answer.status == 0:
        return "no answer"
    if answer.status >= 500:
        return "5xx"
    return f"{answer.status} {answer.code}".strip()


# The same outcome keeps its colour from chart to chart; anything else takes the cycle's.
COLOURS = {"order 201": "tab:green", "order 409 sold_out": "tab:blue",
           "order 409 purchase_limit_exceeded": "tab:purple",
           "order 409 unpaid_order_exists": "tab:brown",
           "order 409 sale_not_open": "tab:cyan", "order 409 sale_closed": "tab:gray",
           "order 5xx": "tab:red", "order no answer": "black",
           "payment 201 succeeded": "tab:olive", "payment 201 failed": "tab:orange",
           "payment 5xx": "tab:pink", "payment no answer": "dimgray"}


def draw_chart(outcomes: Mapping[str, Any], opens_at: float, path: Path, title: str,
               step: float = 0.25) -> None:
    """Two panels over seconds from the opening, in steps of `step` seconds (an opening is
    decided within a second or two): the rate of order and payment outcomes answered in each
    step (stacked, per second), and p50/p95/p99 of orders and payments by the step they were
    sent in."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file is all that is wanted
    import matplotlib.pyplot as plt

    def bucket(at: float) -> int:
        return math.floor((at - opens_at) / step)

    answers = final_answers(outcomes)
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 8), sharex=True)
    if answers:
        steps = list(range(min(bucket(a.sent) for a in answers),
                           max(bucket(a.answered) for a in answers) + 1))
        xs = [n * step for n in steps]
        per_step: defaultdict[str, Counter[int]] = defaultdict(Counter)
        for a in answers:
            kind = "order" if a.route == ORDERS else "payment"
            per_step[f"{kind} {outcome_label(a)}"][bucket(a.answered)] += 1
        base = [0.0] * len(steps)
        for label in sorted(per_step, key=lambda name: -sum(per_step[name].values())):
            rates = [per_step[label][n] / step for n in steps]
            top.bar(xs, rates, bottom=base, width=step * 0.9, align="edge", label=label,
                    color=COLOURS.get(label))
            base = [b + r for b, r in zip(base, rates, strict=True)]
        top.legend(fontsize=8, ncol=2)
        for route, style in ((ORDERS, "-"), (PAYMENTS, "--")):
            sent: defaultdict[int, list[float]] = defaultdict(list)
            for a in answers:
                if a.route == route:
                    sent[bucket(a.sent)].append(a.latency_ms)
            for p in (50, 95, 99):
                bottom.plot([(n + 0.5) * step for n in sorted(sent)],
                            [percentile(sent[n], p) for n in sorted(sent)], style, marker="o",
                            markersize=3, label=f"{route} p{p}")
        bottom.legend(fontsize=8, ncol=2)
    top.margins(y=0.08)
    top.set_ylabel(f"answers per second (in {step:g} s steps)")
    top.set_title(title)
    bottom.set_ylabel(f"latency (ms), by {step:g} s step sent")
    bottom.set_xlabel("seconds from sale_opens_at")
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
