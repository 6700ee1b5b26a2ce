"""The sale's own Prometheus metrics, every name in one place (docs/metrics.md describes each).

Cheap on the hot path: a decision is a counter kept in memory (`inc()` on a child made once),
never a Redis round trip per request. Gauges are read when /metrics is scraped: from memory
(`ScrapeGauge`: streams open, loop lag) or, once per scrape and bounded in time, from Redis or
MySQL (`ReadAtScrape`: stock per product, the oldest pending payment, Redis reachable).

Each service builds the parts it owns (OrderMetrics, StockMetrics, PaymentMetrics,
GatewayMetrics) when its app is made, hands their collectors to its /metrics, and binds the
scrape-time readers in its lifespan, where the datastores are. `every_sale_metric()` lists all
of them: deploy/tests/test_observability.py checks that every name the dashboard and the alert
rules query is one of these, so neither can silently break.

Label values are bounded: outcomes and refusal codes come from fixed tables, routes are
templates, and per-product gauges show at most MAX_PRODUCTS_SHOWN products (those changed most
recently through this process).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger("shared.sale_metrics")

# Per-product gauges show this many products at most (the most recently changed here).
MAX_PRODUCTS_SHOWN = 50
# A scrape-time read (Redis, MySQL) gets this long; past it its gauges are left out this scrape.
SCRAPE_READ_SECONDS = 1.0
PROCESSOR_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
ROUND_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)

# The names, in one place. Counters are named without `_total`: prometheus_client adds it.
ORDER_DECISIONS = "preorder_order_decisions"
ORDERS_EXPIRED = "preorder_orders_expired"
ORDER_EXPIRY_LAG = "preorder_order_expiry_lag_seconds"
HOLDS = "preorder_holds"
STOCK_REMAINING = "preorder_stock_remaining_units"
STOCK_HELD = "preorder_stock_held_units"
STOCK_SOLD = "preorder_stock_sold_units"
STOCK_TOTAL = "preorder_stock_total_units"
LEDGER_REFUSALS = "preorder_stock_ledger_refusals"
RECONCILE_REPAIRS = "preorder_stock_reconcile_repairs"
PAYMENTS = "preorder_payments"
PROCESSOR_LATENCY = "preorder_processor_request_seconds"
WEBHOOKS = "preorder_processor_webhooks"
OLDEST_PENDING_PAYMENT = "preorder_payment_oldest_pending_seconds"
EDGE_ANSWERS = "preorder_edge_answers"
RATE_LIMITED = "preorder_rate_limited"
STREAMS_OPEN = "preorder_live_streams_open"
REDIS_UP = "preorder_redis_up"
LOOP_LAG = "preorder_loop_lag_seconds"
LOOP_ROUND = "preorder_loop_round_seconds"
LOOP_FAILURES = "preorder_loop_failures"
LINE_LENGTH = "preorder_line_length"
LINE_TICKETS = "preorder_line_tickets"
LINE_WAIT = "preorder_line_wait_seconds"

Samples = Mapping[tuple[str, ...], float]


@runtime_checkable
class RefreshedAtScrape(Protocol):
    """A collector whose samples are read (asynchronously) just before each scrape."""

    async def refresh(self) -> None: ...


class ScrapeGauge(Collector):
    """A gauge whose samples `read()` gives from memory when /metrics is scraped."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str],
                 read: Callable[[], Samples]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.read = read

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(self.name, self.documentation, labels=self.labels)]

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for values, value in self.read().items():
            family.add_metric(list(values), value)
        return [family]


Reader = Callable[[], Awaitable[Mapping[str, Samples]]]


class ReadAtScrape(Collector):
    """Gauge families whose samples one async reader fetches at each scrape (one Redis pipeline,
    one MySQL query), within SCRAPE_READ_SECONDS; a failed or late read leaves them out of that
    scrape rather than showing old values. Unbound (outside the lifespan) it shows none."""

    def __init__(self, families: Mapping[str, tuple[str, Sequence[str]]]) -> None:
        self.families = dict(families)  # name -> (documentation, labels)
        self.reader: Reader | None = None
        self._samples: Mapping[str, Samples] = {}

    def bind(self, reader: Reader | None) -> None:
        self.reader = reader
        self._samples = {}

    async def refresh(self) -> None:
        if self.reader is None:
            self._samples = {}
            return
        try:
            async with asyncio.timeout(SCRAPE_READ_SECONDS):
                self._samples = await self.reader()
        except Exception as error:  # a scrape must answer whatever the datastore does
            logger.warning("metrics read failed", extra={"families": sorted(self.families),
                                                         "error": repr(error)})
            self._samples = {}

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(name, doc, labels=list(labels))
                for name, (doc, labels) in self.families.items()]

    def collect(self) -> Iterable[Metric]:
        for name, (doc, labels) in self.families.items():
            family = GaugeMetricFamily(name, doc, labels=list(labels))
            for values, value in self._samples.get(name, {}).items():
                family.add_metric(list(values), value)
            yield family


def redis_up() -> ReadAtScrape:
    """1 while this process reaches Redis (a PING at scrape time), 0 when it does not."""
    return ReadAtScrape({REDIS_UP: ("1 if this process reached Redis at the scrape, else 0", ())})


def bind_redis_probe(probe: ReadAtScrape, ping: Callable[[], Awaitable[object]] | None) -> None:
    if ping is None:
        probe.bind(None)
        return

    async def read() -> Mapping[str, Samples]:
        try:
            async with asyncio.timeout(SCRAPE_READ_SECONDS / 2):
                await ping()
        except Exception:
            return {REDIS_UP: {(): 0.0}}
        return {REDIS_UP: {(): 1.0}}

    probe.bind(read)


class RecentProducts:
    """The products changed most recently through this process, at most `limit` of them: which
    products the per-product gauges show (a bounded set of label values)."""

    def __init__(self, limit: int = MAX_PRODUCTS_SHOWN) -> None:
        self.limit = limit
        self._ids: OrderedDict[int, None] = OrderedDict()

    def touched(self, product_id: int) -> None:
        self._ids[product_id] = None
        self._ids.move_to_end(product_id)
        if len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._ids))


class OrderMetrics:
    """order_service: each order decided, the line of an opening, and the expiry that gives
    unpaid units back."""

    def __init__(self) -> None:
        self.line = LineMetrics()
        self.decisions = Counter(
            ORDER_DECISIONS, "Orders decided: outcome created, refused (4xx) or failed (5xx), "
            "and the answer's problem code",
            ["outcome", "code"], registry=None)
        self.expired = Counter(ORDERS_EXPIRED, "Unpaid orders expired past their deadline",
                               registry=None)
        self._expiry_lag = 0.0
        self.expiry_lag = ScrapeGauge(
            ORDER_EXPIRY_LAG, "How far past its deadline the most overdue unpaid order was "
            "when the last expiry round looked (0: none overdue)", (),
            lambda: {(): self._expiry_lag})
        self.redis_up = redis_up()
        self._created = self.decisions.labels("created", "")
        self._refused: dict[tuple[bool, str], Counter] = {}

    def created(self) -> None:
        self._created.inc()

    def refused(self, code: str, *, failed: bool = False) -> None:
        """Refused with `code`; `failed`: a 5xx (the system could not decide), not a 4xx."""
        counter = self._refused.get((failed, code))
        if counter is None:
            counter = self._refused[failed, code] = self.decisions.labels(
                "failed" if failed else "refused", code)
        counter.inc()

    def expiry_round(self, most_overdue_seconds: float) -> None:
        self._expiry_lag = max(most_overdue_seconds, 0.0)

    def collectors(self) -> list[Collector]:
        return [self.decisions, self.expired, self.expiry_lag, self.redis_up,
                *self.line.collectors()]


class LineMetrics:
    """The line at a sale's opening (order_service): its length per product (read from Redis at
    scrape time), each ticket by what became of it, and the time from arrival to decision."""

    def __init__(self) -> None:
        self.length = ReadAtScrape({LINE_LENGTH: (
            "Places waiting in the line, per product (Redis)", ("product",))})
        self.tickets = Counter(
            LINE_TICKETS, "Line tickets by outcome: joined (a place taken, 202), full (429, the "
            "line was full), ordered, refused", ["outcome"], registry=None)
        self.wait = Histogram(LINE_WAIT, "Time from arrival at the gateway to the place's "
                              "decision", buckets=ROUND_BUCKETS, registry=None)
        self._outcomes: dict[str, Counter] = {}

    def ticket(self, outcome: str, count: int = 1) -> None:
        counter = self._outcomes.get(outcome)
        if counter is None:
            counter = self._outcomes[outcome] = self.tickets.labels(outcome)
        counter.inc(count)

    def collectors(self) -> list[Collector]:
        return [self.length, self.tickets, self.wait]


class StockMetrics:
    """stock_service: holds by what became of them, the oversell guard, and per product (read
    from Redis at scrape time) the units remaining, held, sold and in total."""

    def __init__(self) -> None:
        self.holds = Counter(
            HOLDS, "Holds by event: held (units taken), released (given back by their order), "
            "expired (given back by the expired-hold reaper), committed (sold)", ["event"],
            registry=None)
        self.ledger_refusals = Counter(
            LEDGER_REFUSALS, "Holds Redis accepted and the ledger (MySQL) refused: the oversell "
            "guard caught Redis wrong", ["code"], registry=None)
        self.reconcile_repairs = Counter(
            RECONCILE_REPAIRS, "Products the reconciler rebuilt or reconfigured in Redis from "
            "the ledger", registry=None)
        self.levels = ReadAtScrape({
            STOCK_REMAINING: ("Units left to reserve, per product (Redis)", ("product",)),
            STOCK_HELD: ("Units held by unpaid orders, per product (Redis)", ("product",)),
            STOCK_SOLD: ("Units sold, per product (Redis)", ("product",)),
            STOCK_TOTAL: ("Units for sale in total, per product (Redis)", ("product",)),
        })
        self.redis_up = redis_up()
        self.products = RecentProducts()
        self._events = {event: self.holds.labels(event)
                        for event in ("held", "released", "expired", "committed")}

    def hold_event(self, event: str, product_id: int, count: int = 1) -> None:
        self._events[event].inc(count)
        self.products.touched(product_id)

    def collectors(self) -> list[Collector]:
        return [self.holds, self.ledger_refusals, self.reconcile_repairs, self.levels,
                self.redis_up]


class PaymentMetrics:
    """payment_service: payments by the status they were decided with, the card processor's
    latency, its webhooks, and (read from MySQL at scrape time) the oldest pending payment."""

    def __init__(self) -> None:
        self.payments = Counter(
            PAYMENTS, "Payments decided, by status and failure code", ["status", "failure_code"],
            registry=None)
        self.processor_latency = Histogram(
            PROCESSOR_LATENCY, "Time for one request to the card processor, by operation and "
            "outcome (answered or unanswered)", ["operation", "outcome"],
            buckets=PROCESSOR_BUCKETS, registry=None)
        self.webhooks = Counter(
            WEBHOOKS, "Processor webhooks by outcome: taken, bad_signature, malformed",
            ["outcome"], registry=None)
        self.oldest_pending = ReadAtScrape({OLDEST_PENDING_PAYMENT: (
            "Age of the oldest payment still pending (0: none pending)", ())})
        self.redis_up = redis_up()

    def decided(self, status: str, failure_code: str | None) -> None:
        self.payments.labels(status, failure_code or "").inc()

    def collectors(self) -> list[Collector]:
        return [self.payments, self.processor_latency, self.webhooks, self.oldest_pending,
                self.redis_up]


class GatewayMetrics:
    """The gateway: answers given at the edge without forwarding, rate-limited refusals, and
    the live streams open (read at scrape time)."""

    def __init__(self) -> None:
        self.open_streams: Callable[[], int] = lambda: 0  # the proxy's count, bound once made
        self.edge_answers = Counter(
            EDGE_ANSWERS, "Answers given at the edge from a service's published answer, by "
            "route template", ["route"], registry=None)
        self.rate_limited = Counter(
            RATE_LIMITED, "Requests refused 429 rate_limited, by route template", ["route"],
            registry=None)
        self.streams_open = ScrapeGauge(STREAMS_OPEN, "Live event streams open through this "
                                        "gateway", (), lambda: {(): float(self.open_streams())})
        self.redis_up = redis_up()
        self._edge: dict[str, Counter] = {}
        self._limited: dict[str, Counter] = {}

    def edge_answer(self, route: str) -> None:
        counter = self._edge.get(route)
        if counter is None:
            counter = self._edge[route] = self.edge_answers.labels(route)
        counter.inc()

    def limited(self, route: str) -> None:
        counter = self._limited.get(route)
        if counter is None:
            counter = self._limited[route] = self.rate_limited.labels(route)
        counter.inc()

    def collectors(self) -> list[Collector]:
        return [self.edge_answers, self.rate_limited, self.streams_open, self.redis_up]


class LoopMetrics:
    """Every background loop of the process (shared/loops.py run_periodically): the time since
    its last round that ended without an error (the lag an alert watches), each round's
    duration, and its failed rounds. One per process; each app shows it on its /metrics."""

    def __init__(self) -> None:
        self.rounds = Histogram(LOOP_ROUND, "Duration of one background loop round", ["loop"],
                                buckets=ROUND_BUCKETS, registry=None)
        self.failures = Counter(LOOP_FAILURES, "Background loop rounds that failed", ["loop"],
                                registry=None)
        self._last_good: dict[str, float] = {}
        self.lag = ScrapeGauge(LOOP_LAG, "Seconds since the loop's last round that succeeded "
                               "(from its start while none has)", ("loop",), self._lags)

    def started(self, loop: str) -> None:
        self._last_good.setdefault(loop, time.monotonic())

    def round_ended(self, loop: str, seconds: float, *, failed: bool) -> None:
        self.rounds.labels(loop).observe(seconds)
        if failed:
            self.failures.labels(loop).inc()
        else:
            self._last_good[loop] = time.monotonic()

    def stopped(self, loop: str) -> None:
        self._last_good.pop(loop, None)

    def _lags(self) -> Samples:
        now = time.monotonic()
        return {(loop,): now - last for loop, last in list(self._last_good.items())}

    def collectors(self) -> list[Collector]:
        return [self.rounds, self.failures, self.lag]


LOOPS = LoopMetrics()


def every_sale_metric() -> list[Collector]:
    """Every collector defined here, once: what the dashboard and alert rules may query."""
    return [*OrderMetrics().collectors(),
            *StockMetrics().collectors()[:-1], *PaymentMetrics().collectors()[:-1],
            *GatewayMetrics().collectors()[:-1], *LOOPS.collectors()]
