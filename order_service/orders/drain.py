"""Admitting the line's places as fast as the order path decides them, one process at a time.

A product's drain runs in each process that took a place in its line or heard it open: it
admits as many places as the process has free reserve slots (orders/scripts.py CLAIM, earliest
arrival first), decides each one as a POST /orders would be (orders/creation.py), gives the
place its answer (FINISH, batched per loop turn), and admits the next as soon as a slot frees.
It stops once the line is empty.

Near the end of the stock (`one_drainer_below` units left, by stock_service's levels, or none
heard yet) only one process's drain admits a product's places at a time (the line's drainer,
scripts.py): two replicas deciding neighbouring places raced for the last units, and the later
place could win. The others look again every IDLE_SECONDS and take over once the drainer's hold
runs out. With more units left than places could be decided at once, every place admitted wins
whichever reserve comes first, and every process with free slots admits places: one drainer
halved the decisions of a 20,000-buyer opening over two replicas, and the units coming back from
unpaid orders then kept it from ever selling out (docs/performance.md).

Answers follow the line. A drain decides the places it admits side by side, and a later batch's
decisions can end before an earlier one's (`make load`: a later batch's answers 50 ms ahead
brought the winners' rank correlation with their arrival to 0.45). So each process gives its
places' answers in the order it admitted them (AnswersInTurn, one per product): a decision that
ends early waits for those admitted before it, at most OVERTAKE_AFTER_SECONDS, after which it
goes ahead of one still being decided (a stock call waiting out its timeout must not hold every
answer behind it). A place whose answer waits is no longer counted against the product's places
being decided (`max_deciding`, which bounds the reserves in flight): the next places are
admitted while it waits.

The places that went straight on (orders/admission.py) take their turn too, numbered when they
go: the line's answers after them wait until their requests have been answered. Their `201`
crosses both busy loops as a response, where a line's answer is one published message that
every gateway hears at once; given first, the line's answers reached the crowd before the
earliest arrivals' own (`make load`: 0.17 s ahead, the winners' rank correlation 0.67).

Crash safety. An admitted place carries a lease (`lease_ms`); one whose replica died or stalled
past it is admitted again and decided again. That is safe because MySQL is the truth: each
place's order carries an idempotency key (the buyer's own, or `line:<ticket>`) under the
order's unique (user, key) index, and a place decided again first looks for the order its key
made. A place is answered once: FINISH applies only to a place still being decided.

The sell-out. When stock_service announces that a product is sold out (its edge answer,
shared/edge_answers.py) or a decision here is refused sold_out for a single unit, every waiting
place is refused at once (REFUSE_WAITING); places being decided get their own answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

from order_service.orders.admission import OrderAdmission
from order_service.orders.creation import OrderCreation
from order_service.orders.ids import NotedId
from order_service.orders.line import product_of
from order_service.orders.schemas import OrderCreate
from order_service.orders.scripts import Claimed, LineScripts
from shared.batching import FlushPerTurn
from shared.errors import ProblemError, ServiceUnavailable, problem_document
from shared.idempotency import IdempotencyKeyInUse, StoredAnswer, problem_answer
from shared.internal.stock import SoldOut
from shared.request_context import request_id_var
from shared.sold_out import Slot
from shared.stock_levels import remaining_of

logger = logging.getLogger("order_service.line")

# A place whose decision failed for a passing reason (stock_service or MySQL away, its key in
# use by a request still running) is admitted again, up to this many times in all; then it is
# refused with that reason.
MAX_ATTEMPTS = 3
# The route stock_service's sold-out edge answer is for.
ORDERS_ROUTE = "POST /api/v1/orders"
# A drain with nothing to do looks again this often (places whose lease ran out, a wake lost).
IDLE_SECONDS = 0.5
# Each place refused with it names the request that took it (orders/scripts.py REFUSE_WAITING).
SOLD_OUT_PROBLEM = problem_document(SoldOut.status, SoldOut.code, SoldOut.title,
                                    SoldOut().detail) | {"request_id": None}


# A place whose key is held by a request still running (or by one that died, until its claim
# goes stale: shared/idempotency.py) is admitted again after this, the admission not counted.
KEY_IN_USE_PAUSE_SECONDS = 1.0


# How long a decided place's answer may wait for places admitted before it (see above).
OVERTAKE_AFTER_SECONDS = 1.0
# Units left of products heard from stock_service kept at most (a sale has a few products);
# past it they are forgotten, as unheard: their lines are admitted by one process at a time.
MAX_LEVELS = 100_000
# A level heard longer ago than this counts as unheard: while a product's stock moves,
# stock_service publishes every 0.1 s, and one not heard since may be far off (a subscription
# gone quiet, a loop too busy to read it).
LEVEL_FRESH_SECONDS = 2.0

T = TypeVar("T")


class AnswersInTurn(Generic[T]):
    """Answers given in the order their places were numbered (`number()` as each is admitted),
    whatever order they come in; one still missing is passed over once a later one has waited
    `overtake_after` seconds for it, and is given as soon as it comes."""

    def __init__(self, give: Callable[[T], None], *, overtake_after: float) -> None:
        self._give = give
        self.overtake_after = overtake_after
        self._numbered = 0
        self._next = 0  # the first number neither given nor passed over
        # Answered, waiting for an earlier number (None: that place has no answer to give).
        self._ready: dict[int, T | None] = {}

    def number(self) -> int:
        self._numbered += 1
        return self._numbered - 1

    @property
    def idle(self) -> bool:
        """Every number taken was given or passed over, and nothing waits."""
        return self._next == self._numbered and not self._ready

    @property
    def waiting(self) -> int:
        """Answers decided and not yet given."""
        return sum(answer is not None for answer in self._ready.values())

    def answered(self, number: int, answer: T | None) -> None:
        """`answer` for the place numbered `number`, or None: it has none to give (sent back
        to the line, its decision given up)."""
        if number < self._next:  # passed over meanwhile
            if answer is not None:
                self._give(answer)
            return
        self._ready[number] = answer
        self._give_in_turn()
        if number in self._ready:
            asyncio.get_running_loop().call_later(self.overtake_after, self._overtake, number)

    def give_all(self) -> None:
        """Every answer decided, now (the process stops)."""
        for number in sorted(self._ready):
            answer = self._ready.pop(number)
            if answer is not None:
                self._give(answer)
        self._next = self._numbered

    def _give_in_turn(self) -> None:
        while self._next in self._ready:
            answer = self._ready.pop(self._next)
            self._next += 1
            if answer is not None:
                self._give(answer)

    def _overtake(self, number: int) -> None:
        if number not in self._ready:
            return  # given in turn meanwhile
        while self._next <= number:
            answer = self._ready.pop(self._next, None)
            self._next += 1
            if answer is not None:
                self._give(answer)
        self._give_in_turn()


# A place's answer: its ticket and body. A turn: where one place's answer is given, and its number.
PlaceAnswer = tuple[str, dict[str, Any]]
Turn = tuple[AnswersInTurn[PlaceAnswer], int]


def answered_body(ticket: str, product_id: int, position: int,
                  answer: StoredAnswer) -> dict[str, Any]:
    """A place's final state from its order route's answer: ordered (a 201) or refused."""
    body: dict[str, Any] = {"ticket": ticket, "product_id": product_id, "position": position}
    if answer.status == 201:
        return body | {"state": "ordered", "order": answer.body}
    return body | {"state": "refused", "problem": answer.body}


class _Retry(Exception):
    """The place goes back to its place in the line; `uncounted`: after a pause, the admission
    not counted among its attempts."""

    def __init__(self, *, uncounted: bool = False) -> None:
        super().__init__()
        self.uncounted = uncounted


class _Answers(FlushPerTurn):
    """Answers of one loop turn, one FINISH per product."""

    def __init__(self, scripts: LineScripts) -> None:
        super().__init__()
        self.scripts = scripts
        self._answers: dict[int, list[tuple[str, str, str]]] = {}

    def give(self, product_id: int, ticket: str, state: str, body: dict[str, Any]) -> None:
        self._answers.setdefault(product_id, []).append(
            (ticket, state, json.dumps(body, separators=(",", ":"))))
        self.schedule_flush()

    async def flush(self) -> None:
        answers, self._answers = self._answers, {}
        await asyncio.gather(*(self._finish(product_id, group)
                               for product_id, group in answers.items()))

    async def _finish(self, product_id: int, group: list[tuple[str, str, str]]) -> None:
        try:
            await self.scripts.finish(product_id, group)
        except Exception:
            # The places stay admitted; their lease runs out and they are decided again (the
            # order made is found by its key): late, never lost.
            logger.exception("could not give the line's answers",
                             extra={"product_id": product_id, "places": len(group)})


class LineDrain:
    """The drains of this process, one task per product with a line."""

    def __init__(self, *, scripts: LineScripts, admission: OrderAdmission,
                 creation: OrderCreation, claim_batch: int = 64,
                 one_drainer_below: int = 256) -> None:
        self.scripts = scripts
        self.admission = admission
        self.creation = creation
        self.claim_batch = claim_batch
        self.one_drainer_below = one_drainer_below
        # Units left of each product, as stock_service's levels last said (heard_level), and
        # when that was heard (monotonic).
        self._remaining: dict[int, tuple[int, float]] = {}
        self._answers = _Answers(scripts)
        self._drains: dict[int, _ProductDrain] = {}
        self._turns: dict[int, AnswersInTurn[PlaceAnswer]] = {}
        # Places this process is deciding (admitted here, or gone straight on), by product:
        # their leases are renewed every sweep while they are.
        self._held: dict[int, set[str]] = {}
        self._refusing: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # The process stops: no place is admitted here any more (stop_admitting).
        self.closing = False
        # A slot freed by any order of the product (one that went straight on included) lets
        # its drain admit the next place at once.
        admission.reserving.on_release = self._slot_freed

    def _slot_freed(self, product_id: int) -> None:
        drain = self._drains.get(product_id)
        if drain is not None:
            drain.wakeup.set()

    def active(self, product_id: int) -> bool:
        """A drain runs here for the product with places to admit: new orders for it take
        their place in line (Redis would send them there anyway; this spares a slot)."""
        drain = self._drains.get(product_id)
        return drain is not None and not drain.probing

    def start(self, product_id: int, *, probe: bool = False) -> None:
        """Drain the product's line here (again: a place was taken since it last looked).
        `probe`: only to look whether anything is left to admit (the sweep); such a drain
        counts as active once it finds places waiting or claims one."""
        drain = self._drains.get(product_id)
        if drain is None:
            drain = self._drains[product_id] = _ProductDrain(self, product_id, probing=probe)
            self._keep(drain.run())
        elif not probe:
            drain.probing = False
        drain.poke()

    def turns(self, product_id: int) -> AnswersInTurn[PlaceAnswer]:
        """The product's answers in turn here: (ticket, body) of each place, given by FINISH."""
        turns = self._turns.get(product_id)
        if turns is None:
            turns = self._turns[product_id] = AnswersInTurn(
                functools.partial(self._give, product_id), overtake_after=OVERTAKE_AFTER_SECONDS)
        return turns

    def _give(self, product_id: int, answer: PlaceAnswer) -> None:
        ticket, body = answer
        # Its lease was renewed while its answer waited: no other process decides it again.
        self.release(product_id, ticket)
        self._answers.give(product_id, ticket, body["state"], body)

    def _forget_turns(self, product_id: int) -> None:
        """Once nothing is numbered and unanswered and no drain runs (a drain or a request
        keeps the one it numbered in: a late answer goes to it)."""
        turns = self._turns.get(product_id)
        if turns is not None and turns.idle and product_id not in self._drains:
            del self._turns[product_id]

    def went_straight_on(self, product_id: int, ticket: str) -> Turn:
        """A request went straight on with its place: decided here under a lease, its answer
        given in its turn (`straight_answered`)."""
        self.hold(product_id, ticket)
        turns = self.turns(product_id)
        return turns, turns.number()

    def hold(self, product_id: int, ticket: str) -> None:
        """A place this process decides from now: its lease is renewed until `release`."""
        self._held.setdefault(product_id, set()).add(ticket)

    def release(self, product_id: int, ticket: str) -> None:
        held = self._held.get(product_id)
        if held is not None:
            held.discard(ticket)
            if not held:
                del self._held[product_id]

    async def renew(self) -> None:
        """The leases of every place this process still decides run again from now."""
        for product_id, tickets in list(self._held.items()):
            drain = self._drains.get(product_id)
            try:
                # The line's hold only while its drain runs here: places held by a drain that
                # failed must not keep every other process from draining the line.
                await self.scripts.renew(product_id, list(tickets), line=drain is not None
                                         and not drain.probing and not self.closing)
            except Exception:
                logger.exception("could not renew the places' leases",
                                 extra={"product_id": product_id})

    def straight_answered(self, product_id: int, ticket: str, answer: StoredAnswer | None,
                          turn: Turn) -> None:
        """A request that went straight on with its place (`went_straight_on`, its `turn`) was
        answered: the answers after its turn may go now. The place takes the route's answer at
        once (its buyer has it already: a retry with the key finds it, not a decision still
        running), or is forgotten if there was none to keep (a 5xx, its key in use)."""
        self.release(product_id, ticket)
        if answer is None:
            self._keep(self._drop(product_id, ticket))
        else:
            body = answered_body(ticket, product_id, 1, answer)
            self._answers.give(product_id, ticket, body["state"], body)
        turns, number = turn
        turns.answered(number, None)
        self._forget_turns(product_id)

    async def _drop(self, product_id: int, ticket: str) -> None:
        try:
            await self.scripts.drop(product_id, [ticket])
        except Exception:
            # Its lease runs out and it is decided again: by its key, or its order found.
            logger.exception("could not forget a place", extra={"ticket": ticket})

    def heard_answers(self, message: str) -> None:
        """A message of the tickets channel: places answered (here or at another replica) free
        room among the product's places being decided, for this process's drain too."""
        head, _, rest = message.partition("\n")
        if head != "final":
            return
        product_id = product_of(rest.partition(" ")[0])
        drain = self._drains.get(product_id) if product_id is not None else None
        if drain is not None:
            drain.wakeup.set()

    def heard_level(self, message: str) -> None:
        """A message of stock_service's levels channel: a product's units left."""
        level = remaining_of(message)
        if level is None:
            return
        if len(self._remaining) >= MAX_LEVELS:
            self._remaining.clear()
        product_id, remaining = level
        self._remaining[product_id] = (remaining, time.monotonic())

    def levels_missed(self) -> None:
        """The subscription was down: the levels heard may be old (none: one drainer)."""
        self._remaining.clear()

    def one_drainer(self, product_id: int) -> bool:
        """The product's line is to be admitted by one process at a time: its end is near, or
        nothing was heard of it lately."""
        heard = self._remaining.get(product_id)
        if heard is None:
            return True
        remaining, at = heard
        return remaining <= self.one_drainer_below or \
            time.monotonic() - at > LEVEL_FRESH_SECONDS

    def heard_open(self, message: str) -> None:
        """A message of the line-open channel: a product id."""
        with contextlib.suppress(ValueError):
            self.start(int(message))

    def heard_edge_answer(self, message: str) -> None:
        """A message of the edge answers' channel: a sell-out refuses the product's line."""
        try:
            parsed = json.loads(message)
            if parsed.get("route") != ORDERS_ROUTE or not parsed.get("answer"):
                return
            if parsed["answer"].get("code") != SoldOut.code:
                return
            product_id = int(parsed["key"])
        except (ValueError, TypeError, KeyError, AttributeError):
            return
        if self.active(product_id):
            self._keep(self.refuse_waiting(product_id))

    async def refuse_waiting(self, product_id: int) -> None:
        if product_id in self._refusing:
            return  # one sell-out, one refusal of the line from this process at a time
        self._refusing.add(product_id)
        try:
            refused = await self.scripts.refuse_waiting(product_id, SOLD_OUT_PROBLEM)
            for _ in range(refused):
                self.admission.metrics.refused(SoldOut.code)
            self.admission.metrics.line.ticket("refused", refused)
            if refused:
                logger.info("sold out: the line refused",
                            extra={"product_id": product_id, "places": refused})
        except Exception:
            logger.exception("could not refuse the line", extra={"product_id": product_id})
        finally:
            self._refusing.discard(product_id)

    async def sweep(self) -> None:
        """One round of the sweep: the leases of the places decided here are renewed, and every
        product with a line is drained somewhere; here too, for places admitted by a replica
        that died (their lease ran out)."""
        await self.renew()
        for product_id in await self.scripts.open_lines():
            # A line record may be only straight-on orders': a drain that merely looks must
            # not send the next buyers into a line nobody waits in (while the product's slots
            # are busy it waits its idle time before it looks).
            self.start(product_id, probe=True)
        if self.admission.line is not None:
            # Tickets watched here whose line another replica drains move up too.
            await self.admission.line.refresh_positions()

    def _keep(self, coroutine: Coroutine[Any, Any, None]) -> None:
        # A context of its own: not the request's that started it (its request id, say).
        task = asyncio.create_task(coroutine, context=contextvars.Context())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stopped(self, product_id: int) -> None:
        self._drains.pop(product_id, None)
        self._forget_turns(product_id)

    async def stop_admitting(self) -> None:
        """The process stops: its drains admit no more places, and another process drains
        their lines from now; the places being decided here go on to their answers."""
        self.closing = True
        for product_id in list(self._drains):
            try:
                await self.scripts.release(product_id)
            except Exception:
                logger.exception("could not let the line go", extra={"product_id": product_id})

    async def close(self) -> None:
        """Stops admitting and deciding (a place being decided keeps its lease: another
        process decides it, or this one once it is back)."""
        tasks = list(self._tasks)
        for turns in self._turns.values():
            turns.give_all()
        drained = list(self._drains)
        for drain in self._drains.values():
            tasks += drain.deciding
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for product_id in drained:
            # Another process drains the line at once, not a lease later.
            with contextlib.suppress(Exception):
                await self.scripts.release(product_id)


class _ProductDrain:
    def __init__(self, owner: LineDrain, product_id: int, *, probing: bool = False) -> None:
        self.owner = owner
        self.product_id = product_id
        self.probing = probing
        self.wakeup = asyncio.Event()
        self.poked = False
        self.deciding: set[asyncio.Task[None]] = set()
        self.answers = owner.turns(product_id)

    def poke(self) -> None:
        self.poked = True
        self.wakeup.set()

    async def run(self) -> None:
        owner, product_id = self.owner, self.product_id
        reserving = owner.admission.reserving
        try:
            while True:
                self.wakeup.clear()
                self.poked = False
                free = 0 if owner.closing else min(reserving.free(product_id), owner.claim_batch)
                waiting = deciding = 0
                if free > 0:
                    elsewhere = False
                    try:
                        claimed, waiting, deciding, elsewhere = await owner.scripts.claim(
                            product_id, free, answered=self.answers.waiting,
                            exclusive=owner.one_drainer(product_id))
                        if owner.closing:
                            # Claimed while the process let its lines go: let this one go too.
                            await owner.scripts.release(product_id)
                        if claimed or waiting:
                            self.probing = False
                        if claimed and owner.admission.line is not None:
                            # The places behind moved up: their streams here hear it.
                            owner.admission.line.positions_moved(product_id)
                    except Exception:
                        logger.exception("could not admit places", extra={"product_id": product_id})
                        claimed, waiting = [], 1
                    await self._decide_all(claimed)
                    if not claimed and not self.deciding and not waiting and not self.poked:
                        forgotten = await self._let_go(deciding)
                        if not self.poked:
                            return
                        # A place taken here while it let go (its start found this drain):
                        # drained here after all, and listed again for the sweep.
                        if forgotten:
                            await owner.scripts.mark_open(product_id)
                        continue
                    if elsewhere:
                        # Another process drains the line: this one looks again in a while,
                        # deaf to the answers (each would be a look), and takes the line over
                        # if that process dies (its hold runs out).
                        await asyncio.sleep(IDLE_SECONDS)
                        continue
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(IDLE_SECONDS):
                        await self.wakeup.wait()
        except Exception:
            # The sweep starts it again; meanwhile another process may drain the line.
            logger.exception("the line's drain failed", extra={"product_id": product_id})
            with contextlib.suppress(Exception):
                await owner.scripts.release(product_id)
        finally:
            owner._stopped(product_id)

    async def _let_go(self, deciding: int) -> bool:
        """Nothing left to admit here: another process may drain the line from now, and with
        nothing being decided anywhere the sweep forgets it (True)."""
        scripts = self.owner.scripts
        try:
            await scripts.release(self.product_id)
        except Exception:
            # Held a lease longer: a later place waits that long, then another process drains.
            logger.exception("could not let the line go", extra={"product_id": self.product_id})
        if deciding or self.poked:
            return False
        await scripts.forget_if_empty(self.product_id)
        return True

    async def _decide_all(self, claimed: list[Claimed]) -> None:
        reserving = self.owner.admission.reserving
        back: list[str] = []
        taken: list[tuple[Claimed, Slot]] = []
        try:
            for place in claimed:
                slot = await reserving.try_take(self.product_id)
                if slot is None:  # taken meanwhile by a request that went straight on
                    back.append(place.ticket)
                    continue
                self.owner.hold(self.product_id, place.ticket)
                taken.append((place, slot))
            noted = await self._order_ids([place for place, _ in taken])
        except BaseException:
            # No decision started (an id could not be had, say): the places go back to the
            # line, their slots and leases with them, before the drain fails.
            for place, slot in taken:
                self.owner.release(self.product_id, place.ticket)
                slot.give_back()
            with contextlib.suppress(Exception):
                # Not decided: the admission is not counted among the places' attempts.
                await self.owner.scripts.requeue(self.product_id,
                                                 [place.ticket for place in claimed],
                                                 uncounted=True)
            raise
        for place, slot in taken:
            task = asyncio.create_task(self._decide(place, slot, noted[place.ticket],
                                                    self.answers.number()))
            self.deciding.add(task)
            task.add_done_callback(self._decided)
        if back:
            await self.owner.scripts.requeue(self.product_id, back)

    async def _order_ids(self, places: list[Claimed]) -> dict[str, NotedId]:
        """The order id each place is decided under: the one an earlier decision of it noted
        (its hold, if that decision died after reserving, is taken over), or a new one, noted
        in the place's record before the reserve (one NOTE for the batch)."""
        noted: dict[str, NotedId] = {}
        fresh: list[tuple[str, int]] = []
        for place in places:
            if place.record.order_id is not None:
                noted[place.ticket] = NotedId(
                    place.record.order_id, decided_before=True,
                    note_again=functools.partial(self._note_again, place.ticket,
                                                 place.record.order_id))
                continue
            order_id = await self.owner.creation.ids.next()
            noted[place.ticket] = NotedId(order_id, decided_before=False)
            fresh.append((place.ticket, order_id))
        try:
            await self.owner.scripts.note(self.product_id, fresh)
        except Exception:
            # Decided all the same: only a replica dying after the reserve then leaves its hold
            # to the orphan sweep, as before ids were noted.
            logger.exception("could not note the places' order ids",
                             extra={"product_id": self.product_id})
        return noted

    async def _note_again(self, ticket: str, replacing: int, order_id: int) -> None:
        try:
            await self.owner.scripts.note_again(self.product_id, ticket, replacing=replacing,
                                                order_id=order_id)
        except Exception:
            # Decided all the same, as when the first note failed (_order_ids).
            logger.exception("could not note a place's new order id",
                             extra={"product_id": self.product_id})

    def _decided(self, task: asyncio.Task[None]) -> None:
        self.deciding.discard(task)
        self.wakeup.set()

    async def _decide(self, place: Claimed, slot: Slot, noted: NotedId, turn: int) -> None:
        owner, product_id = self.owner, self.product_id
        # Decided as the POST that took the place: its problem and log lines carry its
        # request id (this task's own context: the drain's is untouched).
        request_id_var.set(place.record.request_id)
        answered = False
        try:
            try:
                answer = await self._answer(place, slot, noted)
            except _Retry as retry:
                owner.release(product_id, place.ticket)
                slot.give_back()
                # Sent back to the line: the answers after it need not wait out its pause.
                self.answers.answered(turn, None)
                answered = True
                try:
                    if retry.uncounted:
                        await asyncio.sleep(KEY_IN_USE_PAUSE_SECONDS)
                    await owner.scripts.requeue(product_id, [place.ticket],
                                                uncounted=retry.uncounted)
                except Exception:
                    logger.exception("could not put a place back", extra={"ticket": place.ticket})
                return
            finally:
                slot.give_back()
            record = place.record
            body = answered_body(place.ticket, product_id, record.position, answer)
            self.answers.answered(turn, (place.ticket, body))
            answered = True
            line = owner.admission.metrics.line
            line.ticket(body["state"])
            line.wait.observe(max(time.time() - record.arrived_us / 1e6, 0.0))
            if answer.status == SoldOut.status and record.quantity == 1 and \
                    isinstance(answer.body, dict) and answer.body.get("code") == SoldOut.code:
                # Not even one unit is left: nobody waiting can have one.
                await owner.refuse_waiting(product_id)
        finally:
            if not answered:
                # Cancelled, or failed before its answer: the places after it need not wait.
                owner.release(product_id, place.ticket)
                self.answers.answered(turn, None)

    async def _answer(self, place: Claimed, slot: Slot, noted: NotedId) -> StoredAnswer:
        record = place.record
        creation = self.owner.creation
        request = OrderCreate(product_id=self.product_id, quantity=record.quantity)
        try:
            if record.key:
                # The buyer's own key: its answer is kept for the buyer's retries too.
                return await creation.create(record.user_id, request, record.key, slot=slot,
                                             noted=noted)
            order = await creation.create_in_line(
                record.user_id, request, f"line:{place.ticket}", slot=slot,
                again=record.attempts > 1, noted=noted)
            return StoredAnswer(201, order.model_dump(mode="json"))
        except IdempotencyKeyInUse:
            raise _Retry(uncounted=True) from None
        except ProblemError as problem:
            if problem.status >= 500:
                return self._retry_or(place, problem)
            return problem_answer(problem)
        except Exception:
            logger.exception("a place's decision failed", extra={"ticket": place.ticket})
            return self._retry_or(place, ServiceUnavailable("The order could not be decided."))

    @staticmethod
    def _retry_or(place: Claimed, problem: ProblemError) -> StoredAnswer:
        if place.record.attempts < MAX_ATTEMPTS:
            raise _Retry()
        return problem_answer(problem)

