"""The Lua scripts that make a lease, a fill and an invalidation atomic on Redis."""

# KEYS[1] version key, KEYS[2] the entry's lease, KEYS[3] the entry. ARGV: token, lease ms,
# '1' to refresh, the server epoch and ':' (`epoch`). Run after a miss: returns {stamp, 1 if
# the lease is ours, the lease's token}, or {stamp, 2, payload} when the entry was filled since
# the miss was read (unless refreshing); the stamp is `{epoch}:{version}`. A lease is
# `{stamp}|{token}`; one taken under an older stamp is void (its fill would be stamped with
# it) and is replaced. A missing version starts from the server clock, so a lost version key
# never revives old entries.
LEASE = """
local version = redis.call('GET', KEYS[1])
if not version then
  local now = redis.call('TIME')
  version = now[1] .. string.format('%06d', now[2])
  redis.call('SET', KEYS[1], version)
end
version = ARGV[4] .. version
local stamp = version .. '|'
if ARGV[3] ~= '1' then
  local stored = redis.call('GET', KEYS[3])
  if stored and string.sub(stored, 1, #stamp) == stamp then
    return {version, 2, string.sub(stored, #stamp + 1)}
  end
end
local held = redis.call('GET', KEYS[2])
if held and string.sub(held, 1, #stamp) == stamp then
  return {version, 0, held}
end
local token = stamp .. ARGV[1]
redis.call('SET', KEYS[2], token, 'PX', ARGV[2])
return {version, 1, token}
"""

# KEYS[1] entry, KEYS[2] its lease. ARGV: token, stamped value, ttl ms ('' releases the lease only).
FILL = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
if ARGV[3] == '' then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""

# KEYS (of one namespace, so one slot): its version key if it is bumped, then entries and
# leases to delete. ARGV[1]: number of bumps (0 or 1).
INVALIDATE = """
local bumps = tonumber(ARGV[1])
for i = 1, bumps do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCR', KEYS[i])
  else
    local now = redis.call('TIME')
    redis.call('SET', KEYS[i], now[1] .. string.format('%06d', now[2]))
  end
end
for i = bumps + 1, #KEYS do
  redis.call('DEL', KEYS[i])
end
return 0
"""
