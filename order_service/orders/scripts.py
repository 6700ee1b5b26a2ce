"""The line of an opening in Redis (orders/line.py), changed only by these Lua scripts: each
step (taking a place, admitting the next places, giving a place its answer, refusing every
waiting place at a sell-out) is one atomic step, whichever replica runs it.

Every key of a product's line sits under the product's hash tag, `{p:<id>}`, and is passed in
KEYS, so the scripts run unchanged on a Redis Cluster. Per product:

    line:{p:<id>}:waiting    sorted set: ticket -> arrival at the gateway (microseconds)
    line:{p:<id>}:deciding   sorted set: ticket -> lease deadline (ms): admitted, being decided
    line:{p:<id>}:tickets    hash: ticket -> its record (JSON, every value a string: see Record)
    line:{p:<id>}:buyers     hash: user id -> ticket, while the ticket waits or is decided
    line:{p:<id>}:keys       hash: "<user>:<sha256 of the Idempotency-Key>" -> ticket
    line:{p:<id>}:done       sorted set: ticket -> when it got its answer (ms); kept `keep_ms`
    line:{p:<id>}:drainer    string: the process admitting the product's places, under a lease
    line:{p:<id>}:moved      string: how many places have left the line's front (the edge's
                             queue `line:<id>`, shared/edge_finals.py)

Near the end of a product's stock one process at a time admits its places (the drainer): two
replicas deciding neighbouring places raced for the last units, and the later place's reserve
could reach stock_service first. A process that asks for the line at CLAIM (`exclusive`) takes
it when it admits places or places wait and nobody holds it, keeps it by claiming and by RENEW
(`lease_ms`, as a place's lease), and lets it go (RELEASE) when its drain stops, or at a CLAIM
that no longer asks for it; one that died loses it a lease after its last renewal. While
another process holds it, CLAIM admits nothing and JOIN sends nobody straight on; while nobody
does, every process admits places.

and, outside any product's slot, `line:products` (a set of the products that have a line, for
the sweep that finds places whose deciding replica died). Times are judged by Redis's clock.
Every script renews the expiry of the product's keys: an idle line is forgotten whole.

Messages, on `<prefix>line-tickets` (one channel: a process keeps watching only the tickets its
clients wait for):

    final\\n<ticket> <body>\\n<ticket> <body>...        answers given (bodies are JSON)
    refusals <product_id>\\n<problem JSON>\\n<ticket> <position> <request id>\\n...
                                                      a sell-out's refusals: the problem without
                                                      its request_id, each place's own after it
                                                      (empty: none kept); `refused`, before
                                                      places kept it, had one problem for all

and on `<prefix>line-open`: a product id, when its line stops being empty (every replica then
starts its drain; the one that takes the line admits its places).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

PRODUCTS_KEY = "line:products"
# Where a ticket is read (API.md): `<TICKETS_PATH>/<ticket>`, and its stream under it.
TICKETS_PATH = "/api/v1/orders/tickets"

_COMMON = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The first `n` keys (all by default): the drainer's key has its own lease.
local function renew(ttl, n)
  for i = 1, n or #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
end
-- The drainer's key (KEYS[k]) is free, or the caller's (`me`).
local function drains_here_or_nowhere(k, me)
  local holder = redis.call('GET', KEYS[k])
  return not holder or holder == me
end
"""

# Edge finals (shared/edge_finals.py): the answers given, for the gateway to give their owners,
# and (JOIN) the places just taken, `pending`.
# ARGV[f] finals_channel ('' publishes none), ARGV[f + 1] ttl_ms, ARGV[f + 2] the tickets' path.
_FINALS = """
local function publish_finals(f, entries, pending)
  if ARGV[f] == '' or (#entries == 0 and (pending == nil or #pending == 0)) then return end
  local message = '{"ttl_ms":' .. ARGV[f + 1] .. ',"finals":[' .. table.concat(entries, ',') .. ']'
  if pending ~= nil then message = message .. ',"pending":[' .. table.concat(pending, ',') .. ']' end
  redis.call('PUBLISH', ARGV[f], message .. '}')
end
local function final_entry(f, ticket, user, body, place)
  return '[' .. cjson.encode(ARGV[f + 2] .. ticket) .. ',' .. cjson.encode(user) .. ',' ..
    body .. (place or '') .. ']'
end
"""

# The line as a queue of the edge (shared/edge_finals.py): how many places have left its front,
# in KEYS[k] (`moved`), published as the queue `line:<product_id>` moves.
_MOVED = """
local function queue_place(k, product_id)
  return ',["line:' .. product_id .. '",' .. (redis.call('GET', KEYS[k]) or '0') .. ']'
end
local function publish_moved(k, f, product_id, n)
  local count = redis.call('INCRBY', KEYS[k], n)
  if ARGV[f] ~= '' then
    redis.call('PUBLISH', ARGV[f], '{"ttl_ms":0,"finals":[],"moved":[["line:' .. product_id ..
      '",' .. count .. ']]}')
  end
end
"""

# KEYS: waiting deciding tickets buyers keys done drainer moved
# ARGV: max_waiting keep_ms open_channel product_id lease_ms max_deciding finals_channel
# finals_ttl_ms tickets_path me, then per place: mode ticket user quantity key key_field
# fingerprint arrived_us request_id order_id. Modes: 'join' (a place in the line), 'go' (the
# caller holds a free reserve slot: the place is admitted at once, being decided under a lease,
# if nobody waits, no lease ran out, no other process drains the line and fewer than
# max_deciding places of the product are being decided, whichever replica decides them; else it
# joins; its order_id, if given, is noted as NOTE notes a drained place's), 'find' (only a place
# the buyer has).
# Per place: {'joined', ticket, position}, {'go', ticket}, {'same', ticket, record, position
# (0 unless waiting), 1 if it is being decided under a lease still running}, {'none'} (find: no
# place) or {'full'}. New places in line are published pending for the edge (edge_finals.py),
# each with its place in the line as the edge's queue.
JOIN = _COMMON + _FINALS + _MOVED + """
local now = now_ms()
local keep = tonumber(ARGV[2])
local lease = tonumber(ARGV[5])
local old = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now - keep, 'LIMIT', 0, 500)
for _, t in ipairs(old) do
  local rec = redis.call('HGET', KEYS[3], t)
  if rec then
    local km = cjson.decode(rec).km
    if km ~= '' and redis.call('HGET', KEYS[5], km) == t then redis.call('HDEL', KEYS[5], km) end
    redis.call('HDEL', KEYS[3], t)
  end
  redis.call('ZREM', KEYS[6], t)
end
local was_empty = redis.call('ZCARD', KEYS[1]) == 0 and redis.call('ZCARD', KEYS[2]) == 0
local joined = false
local out = {}
local pending = {}
-- Where new places stand as the edge's queue, read once: only CLAIM changes the count.
local place = nil
for i = 11, #ARGV, 10 do
  local mode, ticket, user, key_field = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 5]
  local existing = false
  if key_field ~= '' then existing = redis.call('HGET', KEYS[5], key_field) end
  if not existing then existing = redis.call('HGET', KEYS[4], user) end
  local record = existing and redis.call('HGET', KEYS[3], existing)
  if record then
    if key_field ~= '' then redis.call('HSET', KEYS[5], key_field, existing) end
    local rank = redis.call('ZRANK', KEYS[1], existing)
    local lease = redis.call('ZSCORE', KEYS[2], existing)
    out[#out + 1] = {'same', existing, record, rank and rank + 1 or 0,
      (lease and tonumber(lease) > now) and 1 or 0}
  elseif mode == 'find' then
    out[#out + 1] = {'none'}
  else
    local go = mode == 'go' and redis.call('ZCARD', KEYS[1]) == 0 and
      redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[6]) and
      #redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1) == 0 and
      drains_here_or_nowhere(7, ARGV[10])
    if not go and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
      out[#out + 1] = {'full'}
    else
      local state, position = 'waiting', 1
      if go then
        state = 'deciding'
        redis.call('ZADD', KEYS[2], now + lease, ticket)
      else
        redis.call('ZADD', KEYS[1], ARGV[i + 7], ticket)
        position = redis.call('ZRANK', KEYS[1], ticket) + 1
      end
      redis.call('HSET', KEYS[3], ticket, cjson.encode({u = user, q = ARGV[i + 3],
        k = ARGV[i + 4], f = ARGV[i + 6], a = ARGV[i + 7], p = tostring(position), s = state,
        n = go and '1' or '0', km = key_field, g = go and '1' or '0',
        r = ARGV[i + 8], j = tostring(now),
        o = (go and ARGV[i + 9] ~= '') and ARGV[i + 9] or nil}))
      redis.call('HSET', KEYS[4], user, ticket)
      if key_field ~= '' then redis.call('HSET', KEYS[5], key_field, ticket) end
      if go then
        out[#out + 1] = {'go', ticket}
      else
        out[#out + 1] = {'joined', ticket, position}
        joined = true
        place = place or queue_place(8, ARGV[4])
        pending[#pending + 1] = final_entry(7, ticket, user, '{"ticket":' ..
          cjson.encode(ticket) .. ',"product_id":' .. ARGV[4] .. ',"position":' ..
          position .. ',"state":"waiting"}', place)
      end
    end
  end
end
if joined and was_empty then redis.call('PUBLISH', ARGV[3], ARGV[4]) end
publish_finals(7, {}, pending)
renew(keep * 2, 6)
redis.call('PEXPIRE', KEYS[8], keep * 2)
return out
"""

# KEYS: waiting deciding tickets drainer moved; ARGV: how_many lease_ms keep_ms max_deciding
# answered me exclusive finals_channel product_id. Admits up to how_many places, and no more than
# leave max_deciding of the product being decided (across replicas), not counting the caller's
# `answered` places (decided, their answers waiting to be given in turn: drain.py): first those
# whose lease ran out (their replica died or stalled: decided again, safely, see line.py), then
# the earliest waiting. Nothing while another process holds the line; with exclusive '1' the
# caller takes the line (or keeps it) if it admits places or places wait, with '0' it lets go of
# the line if it held it. Places taken from the line's front are counted, and published for the
# edge (_MOVED). Returns {{ticket, record}..., waiting count, deciding count, 1 if another process
# drains}.
CLAIM = _COMMON + _MOVED + """
local now = now_ms()
local lease = tonumber(ARGV[2])
if not drains_here_or_nowhere(4, ARGV[6]) then
  renew(tonumber(ARGV[3]) * 2, 3)
  redis.call('PEXPIRE', KEYS[5], tonumber(ARGV[3]) * 2)
  return {{}, redis.call('ZCARD', KEYS[1]), redis.call('ZCARD', KEYS[2]), 1}
end
local live = redis.call('ZCOUNT', KEYS[2], '(' .. now, '+inf')
local left = math.min(tonumber(ARGV[1]), tonumber(ARGV[4]) + tonumber(ARGV[5]) - live)
local out = {}
local function admit(t)
  local rec = redis.call('HGET', KEYS[3], t)
  if not rec then
    redis.call('ZREM', KEYS[2], t)
    return
  end
  local r = cjson.decode(rec)
  r.s = 'deciding'
  r.n = tostring(tonumber(r.n) + 1)
  rec = cjson.encode(r)
  redis.call('HSET', KEYS[3], t, rec)
  redis.call('ZADD', KEYS[2], now + lease, t)
  out[#out + 1] = {t, rec}
  left = left - 1
end
if left > 0 then
  for _, t in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, left)) do
    admit(t)
  end
end
if left > 0 then
  local popped = redis.call('ZPOPMIN', KEYS[1], left)
  for i = 1, #popped, 2 do admit(popped[i]) end
  if #popped > 0 then publish_moved(5, 8, ARGV[9], #popped / 2) end
end
local waiting = redis.call('ZCARD', KEYS[1])
if ARGV[7] == '1' then
  if #out > 0 or waiting > 0 or redis.call('GET', KEYS[4]) == ARGV[6] then
    redis.call('SET', KEYS[4], ARGV[6], 'PX', lease)
  end
elseif redis.call('GET', KEYS[4]) == ARGV[6] then
  redis.call('DEL', KEYS[4])
end
renew(tonumber(ARGV[3]) * 2, 3)
redis.call('PEXPIRE', KEYS[5], tonumber(ARGV[3]) * 2)
return {out, waiting, redis.call('ZCARD', KEYS[2]), 0}
"""


# KEYS: deciding tickets buyers done; ARGV: channel keep_ms finals_channel finals_ttl_ms
# tickets_path, then per answer: ticket state body.
# Only a place being decided takes an answer: a second answer for it changes nothing.
FINISH = _COMMON + _FINALS + """
local now = now_ms()
local given = {}
local finals = {}
for i = 6, #ARGV, 3 do
  local t = ARGV[i]
  local rec = redis.call('HGET', KEYS[2], t)
  if rec then
    local r = cjson.decode(rec)
    if r.s == 'deciding' then
      r.s = ARGV[i + 1]
      r.b = ARGV[i + 2]
      redis.call('HSET', KEYS[2], t, cjson.encode(r))
      redis.call('ZREM', KEYS[1], t)
      if redis.call('HGET', KEYS[3], r.u) == t then redis.call('HDEL', KEYS[3], r.u) end
      redis.call('ZADD', KEYS[4], now, t)
      given[#given + 1] = t .. ' ' .. ARGV[i + 2]
      finals[#finals + 1] = final_entry(3, t, r.u, ARGV[i + 2])
    end
  end
end
if #given > 0 then redis.call('PUBLISH', ARGV[1], 'final\\n' .. table.concat(given, '\\n')) end
publish_finals(3, finals)
renew(tonumber(ARGV[2]) * 2)
return #given
"""

# KEYS: waiting deciding tickets; ARGV: keep_ms uncount, then tickets. A place being decided goes
# back to its place among the waiting (a decision that could not be made now: retried); with
# uncount '1' the admission is not counted among its attempts (it waited for something that
# ends by itself: its key held by a request still running or by one that died).
REQUEUE = _COMMON + """
for i = 3, #ARGV do
  local t = ARGV[i]
  local rec = redis.call('HGET', KEYS[3], t)
  if rec then
    local r = cjson.decode(rec)
    if r.s == 'deciding' then
      r.s = 'waiting'
      if ARGV[2] == '1' then r.n = tostring(math.max(tonumber(r.n) - 1, 0)) end
      redis.call('HSET', KEYS[3], t, cjson.encode(r))
      redis.call('ZREM', KEYS[2], t)
      redis.call('ZADD', KEYS[1], r.a, t)
    end
  end
end
renew(tonumber(ARGV[1]) * 2)
return 0
"""

# KEYS: tickets; ARGV: ticket replacing order_id. A decision that took a place over and found no
# hold to take under its noted id reserves afresh under a new one, noted in the old one's stead,
# if the place is still being decided under the old one (another decider that took it over
# since has noted its own): 1 if noted.
NOTE_AGAIN = """
local rec = redis.call('HGET', KEYS[1], ARGV[1])
if not rec then return 0 end
local r = cjson.decode(rec)
if r.s ~= 'deciding' or r.o ~= ARGV[2] then return 0 end
r.o = ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(r))
return 1
"""

# KEYS: tickets; ARGV: then per place: ticket order_id. Before a decision reserves, the order id
# it reserves under goes into the place's record (`o`), if the place is still being decided and
# has none: a replica that dies after the reserve leaves a hold under that id, and the place,
# decided again, takes that hold over instead of reserving another unit beside it.
NOTE = """
for i = 1, #ARGV, 2 do
  local rec = redis.call('HGET', KEYS[1], ARGV[i])
  if rec then
    local r = cjson.decode(rec)
    if r.s == 'deciding' and (r.o == nil or r.o == '') then
      r.o = ARGV[i + 1]
      redis.call('HSET', KEYS[1], ARGV[i], cjson.encode(r))
    end
  end
end
return 0
"""

# KEYS: waiting tickets buyers done; ARGV: channel keep_ms product_id problem_json
# finals_channel finals_ttl_ms tickets_path.
# The product sold out: every waiting place is refused with the problem, at once.
REFUSE_WAITING = _COMMON + _FINALS + """
local now = now_ms()
local lines = {}
local finals = {}
for _, t in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local rec = redis.call('HGET', KEYS[2], t)
  if rec then
    local r = cjson.decode(rec)
    r.s = 'refused'
    -- The problem names the request that took the place (null if its record kept none).
    local rid = (r.r and r.r ~= '') and r.r or ''
    r.b = '{"ticket":"' .. t .. '","product_id":' .. ARGV[3] .. ',"position":' .. r.p ..
      ',"state":"refused","problem":' .. ARGV[4] .. ',"request_id":' ..
      (rid ~= '' and cjson.encode(rid) or 'null') .. '}}'
    redis.call('HSET', KEYS[2], t, cjson.encode(r))
    if redis.call('HGET', KEYS[3], r.u) == t then redis.call('HDEL', KEYS[3], r.u) end
    redis.call('ZADD', KEYS[4], now, t)
    lines[#lines + 1] = t .. ' ' .. r.p .. ' ' .. rid
    finals[#finals + 1] = final_entry(5, t, r.u, r.b)
  end
end
redis.call('DEL', KEYS[1])
if #lines > 0 then
  redis.call('PUBLISH', ARGV[1], 'refusals ' .. ARGV[3] .. '\\n' .. ARGV[4] .. '}\\n' ..
    table.concat(lines, '\\n'))
end
publish_finals(5, finals)
renew(tonumber(ARGV[2]) * 2)
return #lines
"""

# KEYS: deciding drainer; ARGV: lease_ms me (or '': not the line), then tickets. Places this
# replica is still deciding: their lease runs again from now, and so does its hold on the line
# if it drains it (a replica that died renews nothing, and its places are admitted again a lease
# after its last renewal).
RENEW = _COMMON + """
local deadline = now_ms() + tonumber(ARGV[1])
local renewed = 0
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('PEXPIRE', KEYS[2], ARGV[1]) end
for i = 3, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', deadline, ARGV[i])
    renewed = renewed + 1
  end
end
return renewed
"""

# KEYS: waiting deciding tickets buyers keys; ARGV: keep_ms, then tickets. A place that went
# straight on and was answered with a 5xx is forgotten (its buyer starts afresh), unless it has
# its answer already (a replica that decided it again, its lease having run out).
DROP = _COMMON + """
for i = 2, #ARGV do
  local t = ARGV[i]
  local rec = redis.call('HGET', KEYS[3], t)
  if rec then
    local r = cjson.decode(rec)
    if r.s == 'deciding' or r.s == 'waiting' then
      redis.call('ZREM', KEYS[1], t)
      redis.call('ZREM', KEYS[2], t)
      redis.call('HDEL', KEYS[3], t)
      if redis.call('HGET', KEYS[4], r.u) == t then redis.call('HDEL', KEYS[4], r.u) end
      if r.km ~= '' and redis.call('HGET', KEYS[5], r.km) == t then
        redis.call('HDEL', KEYS[5], r.km)
      end
    end
  end
end
renew(tonumber(ARGV[1]) * 2)
return 0
"""

# KEYS: drainer; ARGV: me. The caller's drain stopped: another process may take the line.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: waiting tickets; ARGV: tickets. Per ticket: {record or '', position (0 unless waiting)}.
READ = """
local out = {}
for i = 1, #ARGV do
  local rec = redis.call('HGET', KEYS[2], ARGV[i])
  local rank = rec and redis.call('ZRANK', KEYS[1], ARGV[i])
  out[#out + 1] = {rec or '', rank and rank + 1 or 0}
end
return out
"""


@dataclass(frozen=True)
class LineKeys:
    waiting: str
    deciding: str
    tickets: str
    buyers: str
    keys: str
    done: str
    drainer: str
    moved: str

    @classmethod
    def of(cls, product_id: int) -> LineKeys:
        base = f"line:{{p:{product_id}}}:"
        return cls(*(base + name for name in ("waiting", "deciding", "tickets", "buyers", "keys",
                                              "done", "drainer", "moved")))


@dataclass(frozen=True)
class Record:
    """A place as the scripts keep it."""

    user_id: int
    quantity: int
    key: str  # the buyer's Idempotency-Key, or ""
    fingerprint: str
    arrived_us: int
    position: int
    state: str  # waiting | deciding | ordered | refused
    attempts: int
    body: str | None  # the final body (JSON), once answered
    straight: bool = False  # its request went straight on (JOIN's 'go')
    request_id: str | None = None  # of the POST that took the place
    # The order id a decision of it reserved under (NOTE; JOIN for a place that went straight
    # on), None before its first decision.
    order_id: int | None = None
    # Also kept, for reading a run's line afterwards, not read here: `j`, when the place was
    # taken (Redis's clock, ms); beside `a`, how long its request took from the gateway's stamp
    # to the line.

    @classmethod
    def parse(cls, raw: str) -> Record:
        data: dict[str, Any] = json.loads(raw)
        return cls(user_id=int(data["u"]), quantity=int(data["q"]), key=str(data["k"]),
                   fingerprint=str(data["f"]), arrived_us=int(data["a"]),
                   position=int(data["p"]), state=str(data["s"]), attempts=int(data["n"]),
                   body=data.get("b"), straight=data.get("g") == "1",
                   request_id=data.get("r") or None,
                   order_id=int(data["o"]) if data.get("o") else None)


@dataclass(frozen=True)
class NewPlace:
    mode: str  # join | go | find (see JOIN)
    ticket: str
    user_id: int
    quantity: int
    key: str
    key_field: str
    fingerprint: str
    arrived_us: int
    request_id: str = ""  # of the POST taking it: its answer's problem names it
    order_id: int | None = None  # mode go: the id its request reserves under, if admitted


@dataclass(frozen=True)
class Joined:
    """What JOIN answered for one place: `record` None when the place is new."""

    ticket: str | None  # None: the line is full (or, asked to find, no place)
    position: int
    record: Record | None = None
    go: bool = False  # admitted at once: the caller decides it with the slot it holds
    leased: bool = False  # the place it has is being decided under a lease still running


@dataclass(frozen=True)
class Claimed:
    ticket: str
    record: Record


class Claim(NamedTuple):
    """What CLAIM answered: the places admitted, how many then wait and are being decided, and
    whether another process drains the line (it admitted nothing)."""

    claimed: list[Claimed]
    waiting: int
    deciding: int
    elsewhere: bool


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class LineScripts:
    """The scripts, registered once per client (EVALSHA, loaded again if Redis forgot them)."""

    def __init__(self, redis: Redis | RedisCluster, *, keep_ms: int, lease_ms: int,
                 max_waiting: int, tickets_channel: str, open_channel: str,
                 max_deciding: int = 64, finals_channel: str = "",
                 finals_ttl_ms: int = 60_000) -> None:
        self.redis = redis
        self.max_deciding = max_deciding
        # Answers given are published for the gateway too ('' publishes none): edge finals.
        self.finals: list[str | int] = [finals_channel, finals_ttl_ms, TICKETS_PATH + "/"]
        self.keep_ms = keep_ms
        self.lease_ms = lease_ms
        self.max_waiting = max_waiting
        self.tickets_channel = tickets_channel
        self.open_channel = open_channel
        # This process, as the line's drainer (one LineScripts per process).
        self.me = os.urandom(8).hex()
        self._join = redis.register_script(JOIN)
        self._claim = redis.register_script(CLAIM)
        self._finish = redis.register_script(FINISH)
        self._requeue = redis.register_script(REQUEUE)
        self._note = redis.register_script(NOTE)
        self._note_again = redis.register_script(NOTE_AGAIN)
        self._drop = redis.register_script(DROP)
        self._renew = redis.register_script(RENEW)
        self._refuse_waiting = redis.register_script(REFUSE_WAITING)
        self._read = redis.register_script(READ)
        self._release = redis.register_script(RELEASE)

    async def join(self, product_id: int, places: Sequence[NewPlace]) -> list[Joined]:
        keys = LineKeys.of(product_id)
        args: list[str | int] = [self.max_waiting, self.keep_ms, self.open_channel, product_id,
                                 self.lease_ms, self.max_deciding, *self.finals, self.me]
        for place in places:
            args += [place.mode, place.ticket, place.user_id, place.quantity, place.key, place.key_field,
                     place.fingerprint, place.arrived_us, place.request_id,
                     "" if place.order_id is None else str(place.order_id)]
        reply = await self._join(
            keys=[keys.waiting, keys.deciding, keys.tickets, keys.buyers, keys.keys, keys.done,
                  keys.drainer, keys.moved],
            args=args)
        answers = []
        for part in reply:
            word = _text(part[0])
            if word in ("full", "none"):
                answers.append(Joined(None, 0))
            elif word == "go":
                answers.append(Joined(_text(part[1]), 1, go=True))
            elif word == "joined":
                answers.append(Joined(_text(part[1]), int(part[2])))
            else:
                answers.append(Joined(_text(part[1]), int(part[3]), Record.parse(_text(part[2])),
                                      leased=int(part[4]) == 1))
        return answers

    async def claim(self, product_id: int, how_many: int, *, answered: int = 0,
                    exclusive: bool = True) -> Claim:
        """Up to how_many places admitted (none while another process holds the line).
        `answered`: places of the caller's decided, their answers not yet given. `exclusive`:
        the caller takes the line, or keeps it (else lets it go)."""
        keys = LineKeys.of(product_id)
        claimed, waiting, deciding, elsewhere = await self._claim(
            keys=[keys.waiting, keys.deciding, keys.tickets, keys.drainer, keys.moved],
            args=[how_many, self.lease_ms, self.keep_ms, self.max_deciding, answered, self.me,
                  "1" if exclusive else "0", self.finals[0], product_id])
        return Claim([Claimed(_text(t), Record.parse(_text(r))) for t, r in claimed],
                     int(waiting), int(deciding), int(elsewhere) == 1)

    async def release(self, product_id: int) -> None:
        """This process drains the product's line no more (if it did): another may now."""
        await self._release(keys=[LineKeys.of(product_id).drainer], args=[self.me])

    async def finish(self, product_id: int, answers: Sequence[tuple[str, str, str]]) -> int:
        """(ticket, state, body) for places being decided; how many took their answer."""
        keys = LineKeys.of(product_id)
        args: list[str | int] = [self.tickets_channel, self.keep_ms, *self.finals]
        for answer in answers:
            args += answer
        return int(await self._finish(keys=[keys.deciding, keys.tickets, keys.buyers, keys.done],
                                      args=args))

    async def requeue(self, product_id: int, tickets: Sequence[str], *,
                      uncounted: bool = False) -> None:
        keys = LineKeys.of(product_id)
        await self._requeue(keys=[keys.waiting, keys.deciding, keys.tickets],
                            args=[self.keep_ms, "1" if uncounted else "0", *tickets])

    async def note(self, product_id: int, orders: Sequence[tuple[str, int]]) -> None:
        """Each place's order id, kept before its decision reserves (NOTE)."""
        if orders:
            await self._note(keys=[LineKeys.of(product_id).tickets],
                             args=[value for ticket, order_id in orders
                                   for value in (ticket, str(order_id))])

    async def note_again(self, product_id: int, ticket: str, *, replacing: int,
                         order_id: int) -> bool:
        """The place's order id, now `order_id` where it was `replacing` (NOTE_AGAIN)."""
        return bool(int(await self._note_again(keys=[LineKeys.of(product_id).tickets],
                                               args=[ticket, str(replacing), str(order_id)])))

    async def renew(self, product_id: int, tickets: Sequence[str], *, line: bool = True) -> int:
        """The leases of places this replica still decides, and (`line`) its hold on the line
        if it drains it, from now; how many places were renewed."""
        keys = LineKeys.of(product_id)
        return int(await self._renew(keys=[keys.deciding, keys.drainer],
                                     args=[self.lease_ms, self.me if line else "", *tickets]))

    async def drop(self, product_id: int, tickets: Sequence[str]) -> None:
        """Forgets places not yet answered (a straight-on request answered 5xx)."""
        keys = LineKeys.of(product_id)
        await self._drop(keys=[keys.waiting, keys.deciding, keys.tickets, keys.buyers, keys.keys],
                         args=[self.keep_ms, *tickets])

    async def refuse_waiting(self, product_id: int, problem: dict[str, Any]) -> int:
        """Every waiting place refused with `problem`, each naming the request that took it
        as its request_id."""
        keys = LineKeys.of(product_id)
        without_id = {name: value for name, value in problem.items() if name != "request_id"}
        # The script closes the object after the place's own request_id.
        opened = json.dumps(without_id, separators=(",", ":"))[:-1]
        return int(await self._refuse_waiting(
            keys=[keys.waiting, keys.tickets, keys.buyers, keys.done],
            args=[self.tickets_channel, self.keep_ms, product_id, opened, *self.finals]))

    async def read(self, product_id: int,
                   tickets: Sequence[str]) -> list[tuple[Record | None, int]]:
        keys = LineKeys.of(product_id)
        reply = await self._read(keys=[keys.waiting, keys.tickets], args=list(tickets))
        return [(Record.parse(_text(raw)) if _text(raw) else None, int(position))
                for raw, position in reply]

    async def mark_open(self, product_id: int) -> None:
        await self.redis.sadd(PRODUCTS_KEY, str(product_id))

    async def open_lines(self) -> list[int]:
        members = await self.redis.smembers(PRODUCTS_KEY)
        return [int(_text(m)) for m in members]

    async def forget_if_empty(self, product_id: int) -> None:
        """Drops the product from the sweep's set (a join after this adds it back)."""
        await self.redis.srem(PRODUCTS_KEY, str(product_id))
