"""Lua for the timelines (feed/timelines.py), registered once per Redis client.

A timeline is a sorted set whose scores are all 0, so it orders by member, bytewise: a post is
"<created_at µs, 16 digits>:<id, 16 digits>", which sorts exactly as (created_at, id). Two marker
members sort outside every post: READY ("~", above all) says the set was built from MySQL and is
complete from its lowest post up; WHOLE ("0", below all) says nothing older exists. Trimming to
the cap removes from the bottom, so it drops WHOLE first: exactly when the claim stops holding.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

READY = "~"
WHOLE = "0"

# Shared by the scripts below: add members (in slices: Lua's unpack has a stack limit), trim
# the bottom beyond `cap` posts, and keep the set alive for `ttl` seconds.
_HELPERS = """
local function add(key, members, first)
  for i = first, #members, 500 do
    local args = {}
    for j = i, math.min(i + 499, #members) do
      args[#args + 1] = 0
      args[#args + 1] = members[j]
    end
    redis.call('ZADD', key, unpack(args))
  end
end
local function trim(key, cap, ttl)
  -- cap posts plus READY; WHOLE counts as a post, so it goes first.
  local excess = redis.call('ZCARD', key) - (cap + 1)
  if excess > 0 then redis.call('ZREMRANGEBYRANK', key, 0, excess - 1) end
  redis.call('EXPIRE', key, ttl)
end
"""

# KEYS: the followers' timelines. ARGV: member, cap, ttl. A timeline not built yet gets the
# post too: a build running now may have read MySQL before the post committed.
PUSH = _HELPERS + """
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, 0, ARGV[1])
  trim(key, tonumber(ARGV[2]), tonumber(ARGV[3]))
end
return #KEYS
"""

# KEYS: timeline, its generation. ARGV: the generation read before MySQL was, cap, ttl,
# "1" if MySQL returned everything (fewer than cap), then the posts, newest first.
# A generation that moved means a follow changed what the build should have read: give up.
FINISH_BUILD = _HELPERS + """
if (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then return 0 end
add(KEYS[1], ARGV, 5)
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[1], 0, '""" + WHOLE + """')
elseif #ARGV >= 5 then
  -- Below the oldest post read nothing is known, pushed posts included.
  redis.call('ZREMRANGEBYLEX', KEYS[1], '-', '(' .. ARGV[#ARGV])
end
redis.call('ZADD', KEYS[1], 0, '""" + READY + """')
trim(KEYS[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return 1
"""

# KEYS: timeline, its generation. ARGV: cap, ttl, "1" if the posts are all the author's, then
# the posts, newest first. What a new follow adds: the author's posts from the timeline's
# lowest post up. A timeline not built yet is dropped and any build in flight voided instead.
MERGE_AUTHOR = _HELPERS + """
if not redis.call('ZSCORE', KEYS[1], '""" + READY + """') then
  redis.call('INCR', KEYS[2])
  redis.call('DEL', KEYS[1])
  return 0
end
local whole = redis.call('ZSCORE', KEYS[1], '""" + WHOLE + """')
local lowest = redis.call('ZRANGE', KEYS[1], '(""" + WHOLE + """', '+', 'BYLEX', 'LIMIT', 0, 1)[1]
local members = {}
for i = 4, #ARGV do
  if whole or ARGV[i] >= lowest then members[#members + 1] = ARGV[i] end
end
add(KEYS[1], members, 1)
if whole and ARGV[3] ~= '1' and #ARGV >= 4 then
  -- The author has older posts than these: the timeline is whole no more below them.
  redis.call('ZREMRANGEBYLEX', KEYS[1], '-', '(' .. ARGV[#ARGV])
end
trim(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return #members
"""


class TimelineScripts:
    """The scripts, registered once (redis-py then calls EVALSHA, loading them if missing)."""

    def __init__(self, redis: Redis) -> None:
        self.push: AsyncScript = redis.register_script(PUSH)
        self.finish_build: AsyncScript = redis.register_script(FINISH_BUILD)
        self.merge_author: AsyncScript = redis.register_script(MERGE_AUTHOR)

