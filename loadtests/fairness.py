"""Was the line fair? Two figures from the buyers' records (loadtests/crowd.py), for the checker
and the report.

- A buyer's **arrival** is when the load generator sent its first `POST /orders` (its send
  order); a buyer is **granted** when one of its orders was made (a 201, or a ticket that turned
  `ordered`), at the moment that final answer reached the generator.
- **spearman**: Spearman's rank correlation over the granted buyers between the rank of their
  arrival and the rank of their grant (ties take their average rank). 1.0: the line served
  them exactly in the order they came; 0: no relation.
- **earliest_share**: with N buyers granted, the share of the first N arrivals that were
  granted. 1.0: the winners are exactly the earliest arrivals.

Refused buyers are left out of the rank correlation on purpose: every ticket still waiting turns
`sold_out` at the same instant, so the order in which those refusals arrive is noise, not
fairness; whether the right buyers were refused is what earliest_share measures.

A winner whose order request was cut by a fault (a replica killed under it: the crowd sent it
again with its Idempotency-Key, `Tap.retried`) is left out of the rank correlation too, and only
of it: the place its first request took is kept (docs/line.md), so it still wins in its turn
and counts in earliest_share, but its answer waits for the fault to be noticed (the place's
lease, the key's claim going stale), seconds after the others'. When it was answered says how
long the fault took to notice, not the line's order.

Neither figure can be better than the order the gateway stamped the requests in (a place's
order is its stamp's). `stamp_order` says how closely the stamps, read from the line's records,
followed the sends: a figure to read beside the two, not judged. Docker's userland proxy, for
one, relayed an opening's requests to the gateway with blocks reversed (docs/replicas.md).

So is a winner whose place was decided more than once (`decided_again`: the line's records,
read by the checker from Redis, count a place's decisions): the replica deciding it died or
stalled, and it was decided again once its lease ran out, the buyer seeing nothing of it but a
late answer. It too counts in earliest_share.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

# Below this many winners the figures say little: they are reported, not judged.
MIN_WINNERS = 20
MIN_SPEARMAN = 0.9
MIN_EARLIEST_SHARE = 0.9


def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties given the average of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            out[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Pearson's correlation of the ranks; NaN when either side has no spread."""
    if len(xs) != len(ys):
        raise ValueError("two samples of different sizes")
    rx, ry = ranks(xs), ranks(ys)
    n = len(rx)
    if n < 2:
        return math.nan
    mx, my = sum(rx) / n, sum(ry) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx and vy else math.nan


@dataclass(frozen=True)
class Fairness:
    buyers: int  # buyers who sent an order
    granted: int
    spearman: float
    earliest_share: float
    # Winners whose order request was cut by a fault, or whose place's decision was (decided
    # again): counted in earliest_share, left out of the rank correlation (see above).
    cut_by_faults: int = 0
    decided_again: int = 0

    @property
    def judged(self) -> bool:
        return self.granted >= MIN_WINNERS

    def as_dict(self) -> dict[str, Any]:
        return {"buyers": self.buyers, "granted": self.granted,
                "cut_by_faults": self.cut_by_faults, "decided_again": self.decided_again,
                "spearman": None if math.isnan(self.spearman) else round(self.spearman, 4),
                "earliest_share": (None if math.isnan(self.earliest_share)
                                   else round(self.earliest_share, 4)),
                "judged": self.judged, "min_spearman": MIN_SPEARMAN,
                "min_earliest_share": MIN_EARLIEST_SHARE}


def fairness_of(buyers: Sequence[Mapping[str, Any]],
                decided_again: Collection[str] = frozenset()) -> Fairness:
    """`decided_again`: tickets whose place was decided more than once."""
    arrivals: list[float] = []
    grants: list[float | None] = []
    cut: list[bool] = []
    again: list[bool] = []
    for buyer in buyers:
        taps = [t for t in buyer.get("taps", ()) if t.get("sent")]
        if not taps:
            continue
        arrivals.append(min(float(t["sent"]) for t in taps))
        granted = [float(t["final_at"]) for t in taps
                   if t.get("state") == "ordered" and t.get("final_at") is not None]
        grants.append(min(granted) if granted else None)
        cut.append(any(int(t.get("retried") or 0) > 0 for t in taps))
        again.append(not cut[-1] and any(t.get("ticket") in decided_again for t in taps))
    won = [(a, g) for a, g in zip(arrivals, grants, strict=True) if g is not None]
    in_turn = [(a, g) for a, g, c, d in zip(arrivals, grants, cut, again, strict=True)
               if g is not None and not c and not d]
    decided_later = sum(1 for g, d in zip(grants, again, strict=True) if g is not None and d)
    rho = (spearman([a for a, _ in in_turn], [g for _, g in in_turn]) if len(in_turn) >= 2
           else math.nan)
    if won:
        first = sorted(range(len(arrivals)), key=lambda i: arrivals[i])[:len(won)]
        share = sum(grants[i] is not None for i in first) / len(won)
    else:
        share = math.nan
    return Fairness(len(arrivals), len(won), rho, share,
                    len(won) - len(in_turn) - decided_later, decided_later)


def stamp_order(buyers: Sequence[Mapping[str, Any]], stamps: Mapping[str, int]) -> dict[str, Any]:
    """How the gateway's arrival stamps (`stamps`: ticket -> microseconds) followed the sends:
    Spearman's rank correlation over the tickets found in both, and how many tickets, taken in
    send order, were stamped before the one sent just ahead of them."""
    sent: dict[str, float] = {}
    for buyer in buyers:
        for tap in buyer.get("taps", ()):
            ticket = tap.get("ticket")
            if ticket in stamps and tap.get("sent"):
                # Two taps of one buyer share a ticket: the first send took the place.
                sent[ticket] = min(float(tap["sent"]), sent.get(ticket, math.inf))
    in_send_order = sorted(sent, key=lambda ticket: sent[ticket])
    stamped = [stamps[ticket] for ticket in in_send_order]
    rho = spearman([sent[t] for t in in_send_order], stamped) if len(stamped) >= 2 else math.nan
    return {"tickets": len(stamped),
            "spearman": None if math.isnan(rho) else round(rho, 4),
            "stamped_before_the_send_ahead": sum(
                1 for ahead, this in pairwise(stamped) if this < ahead)}
