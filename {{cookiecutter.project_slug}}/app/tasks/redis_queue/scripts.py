"""The Lua scripts of the API's side of the queue: enqueue, and the replicated hold."""

# Unless TASK_MAX_BACKLOG tasks wait already, or the client has its bound of tasks in flight,
# write the `queued` status, take the client's slot and add the entry, in one atomic command:
# a client never sees an entry without its status, or a status whose entry was never added.
# KEYS: status, stream, delayed, the client's in-flight set. ARGV: status, ttl, backlog bound,
# in-flight bound (0: no client), task id, then the entry's field/value pairs
# (`entry_fields`). Returns the entry id, nil when the backlog is full, -1 (`FULL`) when the
# client is at its bound.
ENQUEUE = """
if redis.call('XLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then
  return false
end
local bound = tonumber(ARGV[4])
if bound > 0 and redis.call('SCARD', KEYS[4]) >= bound then
  return -1
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if bound > 0 then
  redis.call('SADD', KEYS[4], ARGV[5])
  redis.call('EXPIRE', KEYS[4], ARGV[2])
end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 6))
"""
# With REDIS_REPLICA_ACKS >= 1 a task is held, invisible to workers, until replicas confirm
# it: HOLD writes the `queued` status and parks the task in the delayed set, due in
# `queue.HOLD_SECONDS` (so that a failover that loses RELEASE delays the task, never loses
# it). Same KEYS as ENQUEUE; ARGV: its first five, then the delayed member and its due time.
HOLD = """
if redis.call('XLEN', KEYS[2]) + redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[3]) then
  return false
end
local bound = tonumber(ARGV[4])
if bound > 0 and redis.call('SCARD', KEYS[4]) >= bound then
  return -1
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if bound > 0 then
  redis.call('SADD', KEYS[4], ARGV[5])
  redis.call('EXPIRE', KEYS[4], ARGV[2])
end
return redis.call('ZADD', KEYS[3], ARGV[7], ARGV[6])
"""
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
