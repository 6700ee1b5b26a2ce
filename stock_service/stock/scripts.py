"""The live inventory in Redis, changed only by these Lua scripts: each decision (sale window,
per-user limit, remaining count, the hold itself) is one atomic step.

Every key of a product sits under one hash tag, `{p:<id>}`, and is passed in KEYS, so the
scripts run unchanged on a Redis Cluster (the slot is the product's). Per product:

    {p:<id>}:meta        hash: total remaining held sold opens closes limit price seller active gen
                         version (of the ledger row's settings: stock/models.py StockProduct)
    {p:<id>}:users       hash: user id -> units held or bought
    {p:<id>}:holds       hash: order id -> "state|user|quantity|created_ms"
    {p:<id>}:refusals    hash: order id -> refusal code (forgotten 10 minutes after the last)
    {p:<id>}:rebuilding  set while the product is rebuilt from the ledger: reserves wait

Times are milliseconds since the epoch; 0 means "no such bound" (opens, closes) or "no limit".
The sale window is judged by Redis's own clock (TIME), one clock for every replica. Each script
is idempotent per order id: replaying it changes nothing and answers as the first call did.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from shared.internal.stock import HoldState, RefusalCode, refusal_code

REFUSAL_MEMORY_MS = 600_000
# A reserve refuses with the codes of shared.internal.stock REFUSALS (the API answers them as
# they are); it answers 'held', 'replay', 'missing' or 'rebuilding' otherwise.

_HOLD_PARSER = """
local function parse_hold(value)
  local state, user, qty, ts = string.match(value, '^(%a+)|(%d+)|(%d+)|(%d+)$')
  return state, user, tonumber(qty), ts
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# One reserve, the function the two scripts below call.
# KEYS: meta users holds refusals rebuilding
_RESERVE = _HOLD_PARSER + """
local function reserve(order, user, quantity, memory_ms)
  if redis.call('EXISTS', KEYS[5]) == 1 then return {'rebuilding'} end
  local prior = redis.call('HGET', KEYS[3], order)
  if prior then return {'replay', prior} end
  local refused = redis.call('HGET', KEYS[4], order)
  if refused then return {refused} end
  local m = redis.call('HMGET', KEYS[1], 'active', 'remaining', 'opens', 'closes', 'limit',
                       'price')
  if not m[1] then return {'missing'} end
  local function refuse(code)
    redis.call('HSET', KEYS[4], order, code)
    redis.call('PEXPIRE', KEYS[4], memory_ms)
    return {code}
  end
  if m[1] ~= '1' then return refuse('not_found') end
  local now = now_ms()
  local opens, closes = tonumber(m[3]), tonumber(m[4])
  if opens > 0 and now < opens then return refuse('sale_not_open') end
  if closes > 0 and now >= closes then return refuse('sale_closed') end
  local qty, limit = tonumber(quantity), tonumber(m[5])
  local mine = tonumber(redis.call('HGET', KEYS[2], user) or '0')
  if limit > 0 and mine + qty > limit then return refuse('purchase_limit_exceeded') end
  local remaining = tonumber(m[2])
  if remaining < qty then return refuse('sold_out') end
  redis.call('HINCRBY', KEYS[1], 'remaining', -qty)
  redis.call('HINCRBY', KEYS[1], 'held', qty)
  redis.call('HINCRBY', KEYS[2], user, qty)
  local hold = 'held|' .. user .. '|' .. quantity .. '|' .. now
  redis.call('HSET', KEYS[3], order, hold)
  return {'held', hold, m[6], remaining - qty}
end
"""

# ARGV: order_id user_id quantity refusal_memory_ms
RESERVE = _RESERVE + """
return reserve(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""

# Many reserves of one product in one call, decided in the order given (an earlier one takes
# the last units), each as a reserve of its own: one round trip for the holds order_service
# asks for at once, where a call each queued behind the others' replies on a busy loop.
# ARGV: refusal_memory_ms, then order_id user_id quantity for each reserve; one reply each.
RESERVE_MANY = _RESERVE + """
local replies = {}
for i = 2, #ARGV, 3 do
  replies[#replies + 1] = reserve(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[1])
end
return replies
"""

# Takes back a hold only Redis made (the ledger refused it, or could not be asked), and
# remembers the refusal, if any, so a replay answers the same.
# KEYS: meta users holds refusals; ARGV: order_id refusal_code ('' for none) refusal_memory_ms
UNRESERVE = _HOLD_PARSER + """
local hold = redis.call('HGET', KEYS[3], ARGV[1])
if hold then
  local state, user, qty = parse_hold(hold)
  if state == 'held' then
    redis.call('HINCRBY', KEYS[1], 'remaining', qty)
    redis.call('HINCRBY', KEYS[1], 'held', -qty)
    if redis.call('HINCRBY', KEYS[2], user, -qty) <= 0 then redis.call('HDEL', KEYS[2], user) end
  end
  redis.call('HDEL', KEYS[3], ARGV[1])
end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[4], ARGV[3])
end
return hold and 1 or 0
"""

# KEYS: meta users holds; ARGV: order_id. Held or sold units come back, once.
RELEASE = _HOLD_PARSER + """
local hold = redis.call('HGET', KEYS[3], ARGV[1])
if not hold then return {'unknown'} end
local state, user, qty, ts = parse_hold(hold)
if state == 'released' then return {'released', 'released'} end
redis.call('HINCRBY', KEYS[1], 'remaining', qty)
redis.call('HINCRBY', KEYS[1], state == 'held' and 'held' or 'sold', -qty)
if redis.call('HINCRBY', KEYS[2], user, -qty) <= 0 then redis.call('HDEL', KEYS[2], user) end
redis.call('HSET', KEYS[3], ARGV[1], 'released|' .. user .. '|' .. qty .. '|' .. ts)
return {'released', state}
"""

# KEYS: meta users holds; ARGV: order_id. A held unit becomes a sold one; a released hold stays
# released (the sale came too late).
COMMIT = _HOLD_PARSER + """
local hold = redis.call('HGET', KEYS[3], ARGV[1])
if not hold then return {'unknown'} end
local state, user, qty, ts = parse_hold(hold)
if state ~= 'held' then return {state, state} end
redis.call('HINCRBY', KEYS[1], 'held', -qty)
redis.call('HINCRBY', KEYS[1], 'sold', qty)
redis.call('HSET', KEYS[3], ARGV[1], 'committed|' .. user .. '|' .. qty .. '|' .. ts)
return {'committed', 'held'}
"""

# KEYS: meta rebuilding. What the public stock route shows, with Redis's clock.
VIEW = _HOLD_PARSER + """
local m = redis.call('HMGET', KEYS[1], 'active', 'remaining', 'opens', 'closes')
return {m[1] or '', m[2] or '0', m[3] or '0', m[4] or '0', now_ms(),
        redis.call('EXISTS', KEYS[2])}
"""

# KEYS: meta. A registration change that moves no hold: the window, price, limit, seller,
# whether it may be ordered, and the total (remaining moves by the same difference), at the
# ledger row's version: settings older than the ones Redis has change nothing ('stale').
# ARGV: JSON of the fields.
CONFIGURE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local f = cjson.decode(ARGV[1])
local m = redis.call('HMGET', KEYS[1], 'total', 'version')
if f.version < tonumber(m[2] or '0') then
  return {'stale', redis.call('HGET', KEYS[1], 'remaining')}
end
redis.call('HINCRBY', KEYS[1], 'remaining', f.total - tonumber(m[1]))
redis.call('HSET', KEYS[1], 'total', f.total, 'opens', f.opens, 'closes', f.closes,
           'limit', f.limit, 'price', f.price, 'seller', f.seller, 'active', f.active,
           'version', f.version)
return {'configured', redis.call('HGET', KEYS[1], 'remaining')}
"""

# KEYS: meta users holds refusals rebuilding; ARGV: token meta_json users_json holds_json.
# Replaces the product's whole live state with what the ledger says, then lets reserves in.
# Only the rebuild that set the flag (its token) may write: one that outlived its flag stops.
LOAD = """
if redis.call('GET', KEYS[5]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
local function put(key, flat)
  for i = 1, #flat, 1000 do
    redis.call('HSET', key, unpack(flat, i, math.min(i + 999, #flat)))
  end
end
put(KEYS[1], cjson.decode(ARGV[2]))
local users = cjson.decode(ARGV[3])
if #users > 0 then put(KEYS[2], users) end
local holds = cjson.decode(ARGV[4])
if #holds > 0 then put(KEYS[3], holds) end
redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('DEL', KEYS[5])
return 1
"""


@dataclass(frozen=True)
class ProductKeys:
    meta: str
    users: str
    holds: str
    refusals: str
    rebuilding: str

    @classmethod
    def of(cls, product_id: int) -> ProductKeys:
        tag = f"{{p:{product_id}}}"
        return cls(f"{tag}:meta", f"{tag}:users", f"{tag}:holds", f"{tag}:refusals",
                   f"{tag}:rebuilding")

    @property
    def all(self) -> list[str]:
        return [self.meta, self.users, self.holds, self.refusals, self.rebuilding]


@dataclass(frozen=True)
class HoldRecord:
    """A hold as Redis keeps it, in the hash of its product's holds under its order id: the
    encoding of the live state, not a row (the ledger's and the API's hold is
    shared.internal.stock.Hold)."""

    state: HoldState
    user_id: int
    quantity: int
    created_ms: int

    @classmethod
    def parse(cls, value: str) -> HoldRecord:
        state, user, quantity, created = value.split("|")
        return cls(cast(HoldState, state), int(user), int(quantity), int(created))

    def encode(self) -> str:
        return f"{self.state}|{self.user_id}|{self.quantity}|{self.created_ms}"


@dataclass(frozen=True)
class Outcome:
    """What a script answered: a word, and what came with it. `refusal`: the word, when it is
    one of a reserve's refusals."""

    word: str
    hold: HoldRecord | None = None
    price: int | None = None
    # Units left once a reserve held its own.
    remaining: int | None = None

    @property
    def refusal(self) -> RefusalCode | None:
        return refusal_code(self.word)


@dataclass(frozen=True)
class LiveView:
    active: bool | None  # None: Redis knows nothing of the product
    remaining: int
    opens_ms: int
    closes_ms: int
    now_ms: int
    rebuilding: bool


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _outcome(reply: list[str]) -> Outcome:
    """A reserve's reply: 'held' with the hold and the price, 'replay' with the hold, or a
    word alone (a refusal, 'missing', 'rebuilding')."""
    if reply[0] == "held":
        return Outcome("held", HoldRecord.parse(reply[1]), int(reply[2]), int(reply[3]))
    if reply[0] == "replay":
        return Outcome("replay", HoldRecord.parse(reply[1]))
    return Outcome(reply[0])


class StockScripts:
    """The scripts, registered once per client (EVALSHA, loaded again if Redis forgot them)."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._reserve_many = redis.register_script(RESERVE_MANY)
        self._unreserve = redis.register_script(UNRESERVE)
        self._release = redis.register_script(RELEASE)
        self._commit = redis.register_script(COMMIT)
        self._view = redis.register_script(VIEW)
        self._configure = redis.register_script(CONFIGURE)
        self._load = redis.register_script(LOAD)

    async def reserve(self, product_id: int, order_id: int, user_id: int,
                      quantity: int) -> Outcome:
        [outcome] = await self.reserve_many(product_id, [(order_id, user_id, quantity)])
        return outcome

    async def reserve_many(self, product_id: int,
                           asks: Sequence[tuple[int, int, int]]) -> list[Outcome]:
        """(order id, user id, quantity) of each reserve, decided in this order; an outcome
        each, in the same order."""
        args: list[int] = [REFUSAL_MEMORY_MS]
        for ask in asks:
            args.extend(ask)
        replies = await self._reserve_many(keys=ProductKeys.of(product_id).all, args=args)
        return [_outcome([_text(part) for part in reply]) for reply in replies]

    async def unreserve(self, product_id: int, order_id: int, *,
                        remember: RefusalCode | None = None) -> bool:
        keys = ProductKeys.of(product_id)
        undone = await self._unreserve(keys=[keys.meta, keys.users, keys.holds, keys.refusals],
                                       args=[order_id, remember or "", REFUSAL_MEMORY_MS])
        return bool(int(undone))

    async def release(self, product_id: int, order_id: int) -> Outcome:
        keys = ProductKeys.of(product_id)
        reply = [_text(part) for part in await self._release(
            keys=[keys.meta, keys.users, keys.holds], args=[order_id])]
        return Outcome(reply[0])

    async def commit(self, product_id: int, order_id: int) -> Outcome:
        keys = ProductKeys.of(product_id)
        reply = [_text(part) for part in await self._commit(
            keys=[keys.meta, keys.users, keys.holds], args=[order_id])]
        return Outcome(reply[0])

    async def view(self, product_id: int) -> LiveView:
        keys = ProductKeys.of(product_id)
        active, remaining, opens, closes, now, rebuilding = (
            _text(part) for part in await self._view(keys=[keys.meta, keys.rebuilding]))
        return LiveView(active=None if active == "" else active == "1", remaining=int(remaining),
                        opens_ms=int(opens), closes_ms=int(closes), now_ms=int(now),
                        rebuilding=rebuilding == "1")

    async def configure(self, product_id: int, fields: Mapping[str, int]) -> int | None:
        """The product's remaining, or None if Redis has no state for it (rebuild it). Fields
        older (by `version`) than the ones Redis has are left out: a newer change was applied."""
        reply = [_text(part) for part in await self._configure(
            keys=[ProductKeys.of(product_id).meta], args=[json.dumps(dict(fields))])]
        return None if reply[0] == "missing" else int(reply[1])

    async def load(self, product_id: int, token: str, meta: Mapping[str, int],
                   users: Mapping[int, int], holds: Mapping[int, HoldRecord]) -> bool:
        flat_meta: list[Any] = [item for pair in meta.items() for item in pair]
        flat_users: Sequence[Any] = [item for user, units in users.items()
                                     for item in (str(user), units)]
        flat_holds: Sequence[Any] = [item for order, hold in holds.items()
                                     for item in (str(order), hold.encode())]
        loaded = await self._load(keys=ProductKeys.of(product_id).all,
                                  args=[token, json.dumps(flat_meta), json.dumps(flat_users),
                                        json.dumps(flat_holds)])
        return bool(int(loaded))
