-- Forget flow runs finished before a cutoff: the expiry of flow runs, which live as fields of
-- one hash (field TTLs need Redis 7.4). Scans one chunk of the board index from its oldest end.
-- KEYS: 1 the flow-run hash, 2 the board index (zset).
-- ARGV: 1 the cutoff (a version: microseconds), 2 offset, 3 count.
-- Returns {removed, kept}: runs still in flight past the cutoff are kept (the caller moves its
-- offset past them).
local TERMINAL = {COMPLETED = true, FAILED = true, CANCELLED = true, CRASHED = true}
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', ARGV[2], ARGV[3])
local removed, kept = 0, 0
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[1], id)
  if raw and not TERMINAL[cmsgpack.unpack(raw)[1]] then
    kept = kept + 1
  else
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    removed = removed + 1
  end
end
return {removed, kept}
