"""The Lua scripts of the API's side of the queue: enqueue, and the replicated hold."""

from app.tasks.quotas import TAKE_SLOT

# Unless TASK_MAX_BACKLOG tasks wait already (then nil), TAKE_SLOT: the `queued` status and the
# client's slot, or -1 (`FULL`) when the client is at its bound. KEYS: status, stream,
# delayed, the client's in-flight set. ARGV: status, ttl, backlog bound, in-flight bound
# (0: no client), task id, then what each script adds.
_ADMITTED = f"""
if redis.call('XLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then
  return false
end
local status_key, slots_key = KEYS[1], KEYS[4]
local status, ttl, bound, task_id = ARGV[1], ARGV[2], tonumber(ARGV[4]), ARGV[5]
{TAKE_SLOT}
"""
# Then add the entry, in the same atomic command: a client never sees an entry without its
# status, or a status whose entry was never added. ARGV after the first five: the entry's
# field/value pairs (`entry_fields`). Returns the entry id.
ENQUEUE = _ADMITTED + "return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 6))\n"
# With REDIS_REPLICA_ACKS >= 1 a task is held, invisible to workers, until replicas confirm
# it: HOLD parks it in the delayed set instead, due in `queue.HOLD_SECONDS` (so that a failover
# that loses RELEASE delays the task, never loses it). ARGV after the first five: the delayed
# member and its due time.
HOLD = _ADMITTED + "return redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])\n"
# Confirmed: move the held task onto the stream (unless housekeeping already did). KEYS:
# delayed, stream. ARGV: the member, then the entry's field/value pairs.
RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
end
return false
"""
# Not confirmed: take the held task back, delete its status and free its slot, so that nothing
# of it is left. KEYS: delayed, status, in-flight set. ARGV: the member, the task id. Returns 0
# when it was released already.
REFUSE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[3], ARGV[2])
  return 1
end
return 0
"""
