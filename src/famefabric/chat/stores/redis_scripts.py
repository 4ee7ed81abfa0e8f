"""The Lua scripts of the Redis store, and how a message is written in its list.

Redis runs each script atomically; see :mod:`famefabric.chat.stores.redis`
for the keys and the theory of operation. A message is the compact JSON of
:meth:`~famefabric.chat.conversation.ChatMessage.to_record`, so a reply
carries its turn's token usage; messages written before usage was stored
simply have none.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from famefabric.chat.conversation import ChatMessage, ConversationState
from famefabric.chat.metadata import decode_metadata

# Scripts share one calling convention. KEYS: conversation, messages, turns,
# turn order, activity. ARGV[1] is the conversation id, ARGV[2] the cutoff: a
# conversation last active before it counts as gone ('' when there is no
# idle_ttl). Every script that writes takes the clock's time and the TTL in
# milliseconds (0: none) next.
IS_LIVE = """
local function is_live(updated_at)
    return updated_at and (ARGV[2] == '' or tonumber(updated_at) >= tonumber(ARGV[2]))
end
local function refresh_ttl(ttl)
    if tonumber(ttl) > 0 then
        for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
    end
end
"""

# ARGV[3] now, ARGV[4] ttl, ARGV[5] system prompt, ARGV[6] max_history_length,
# ARGV[7] version, ARGV[8] metadata JSON ('' for none), ARGV[9..] messages.
CREATE = (
    IS_LIVE
    + """
if is_live(redis.call('HGET', KEYS[1], 'updated_at')) then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[1], 'system_prompt', ARGV[5], 'max_history_length', ARGV[6],
    'version', ARGV[7], 'updated_at', ARGV[3], 'metadata', ARGV[8])
if #ARGV > 8 then redis.call('RPUSH', KEYS[2], unpack(ARGV, 9)) end
if ARGV[2] ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[2]) end
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
refresh_ttl(ARGV[4])
return 1
"""
)

LOAD = (
    IS_LIVE
    + """
local fields = redis.call('HMGET', KEYS[1], 'updated_at', 'system_prompt',
    'max_history_length', 'version', 'metadata')
if not is_live(fields[1]) then return false end
local result = {fields[1], fields[2], fields[3], fields[4], fields[5] or ''}
for _, message in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    table.insert(result, message)
end
return result
"""
)

# ARGV[3] now, ARGV[4] ttl, ARGV[5] expected version, ARGV[6] turn id ('' for
# none), ARGV[7] reply, ARGV[8] turn ids kept, ARGV[9..] messages.
# Returns {'missing'}, {'conflict', version} or {'ok', version, system prompt,
# max_history_length, metadata, messages...}.
COMMIT = (
    IS_LIVE
    + """
local fields = redis.call('HMGET', KEYS[1], 'updated_at', 'system_prompt',
    'max_history_length', 'version', 'metadata')
if not is_live(fields[1]) then return {'missing'} end
local version = tonumber(fields[4])
if version ~= tonumber(ARGV[5]) then return {'conflict', version} end
version = version + 1
redis.call('RPUSH', KEYS[2], unpack(ARGV, 9))
redis.call('LTRIM', KEYS[2], -2 * tonumber(fields[3]), -1)
redis.call('HSET', KEYS[1], 'version', version, 'updated_at', ARGV[3])
if ARGV[6] ~= '' then
    redis.call('HSET', KEYS[3], ARGV[6], ARGV[7])
    redis.call('LREM', KEYS[4], 0, ARGV[6])
    redis.call('RPUSH', KEYS[4], ARGV[6])
    while redis.call('LLEN', KEYS[4]) > tonumber(ARGV[8]) do
        redis.call('HDEL', KEYS[3], redis.call('LPOP', KEYS[4]))
    end
end
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
refresh_ttl(ARGV[4])
local result = {'ok', version, fields[2], fields[3], fields[5] or ''}
for _, message in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do
    table.insert(result, message)
end
return result
"""
)

# ARGV[3] turn id.
FIND_TURN = (
    IS_LIVE
    + """
if not is_live(redis.call('HGET', KEYS[1], 'updated_at')) then return false end
return redis.call('HGET', KEYS[3], ARGV[3])
"""
)

DELETE = (
    IS_LIVE
    + """
local live = is_live(redis.call('HGET', KEYS[1], 'updated_at'))
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
if live then return 1 end
return 0
"""
)

# ARGV[3] now, ARGV[4] ttl.
TOUCH = (
    IS_LIVE
    + """
if not is_live(redis.call('HGET', KEYS[1], 'updated_at')) then return 0 end
redis.call('HSET', KEYS[1], 'updated_at', ARGV[3])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
refresh_ttl(ARGV[4])
return 1
"""
)

# Here ARGV[2] is the idle cutoff given to expire_idle, never ''.
EXPIRE = """
local updated_at = redis.call('HGET', KEYS[1], 'updated_at')
if updated_at and tonumber(updated_at) >= tonumber(ARGV[2]) then
    -- Active again: make sure its score says so, so that the sweep moves on.
    redis.call('ZADD', KEYS[5], updated_at, ARGV[1])
    return 0
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[5], ARGV[1])
if updated_at then return 1 end
return 0
"""

# KEYS[1] the lease, ARGV[1] the owner, ARGV[2] the TTL in milliseconds.
ACQUIRE = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
"""


def encode(message: ChatMessage) -> str:
    """Return the message as stored in the ``messages:<id>`` list."""
    return json.dumps(message.to_record(), ensure_ascii=False, separators=(",", ":"))


def decode_state(
    conversation_id: str,
    system_prompt: str,
    max_history_length: str | int,
    version: str | int,
    messages: Sequence[str],
    updated_at: str | float | None = None,
    metadata: str | None = None,
) -> ConversationState:
    """Build the state a script returned: its fields and the encoded messages."""
    return ConversationState(
        conversation_id,
        system_prompt,
        int(max_history_length),
        tuple(ChatMessage.from_record(json.loads(message)) for message in messages),
        int(version),
        None if updated_at is None else float(updated_at),
        decode_metadata(metadata),
    )
