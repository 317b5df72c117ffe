-- Forget flow runs finished before a cutoff: the expiry of flow runs, which live as fields of
-- one hash (field TTLs need Redis 7.4). Scans one chunk of the board index from its oldest end.
-- Each run forgotten is a removal entry on the change stream, so a live board drops it too.
-- Also trims the finished sets to the last day (they count runs finished in 24 hours, expired
-- or not).
-- Its heartbeat and flag go with it (neither outlives its run).
-- KEYS: 1 the flow-run hash, 2 the board index (zset), 3 the change stream,
--       4 the in-flight index of flow runs, 5 the heartbeats hash, 6 the flags hash,
--       7.. the finished sets.
-- ARGV: 1 the cutoff (a version: microseconds), 2 offset, 3 count, 4 the stream's MAXLEN,
--       5 a day ago (a version).
for _, i in pairs(TERMINAL) do redis.call('ZREMRANGEBYSCORE', KEYS[7 + i], '-inf', '(' .. ARGV[5]) end
-- Returns {removed, kept}: runs still in flight past the cutoff are kept (the caller moves its
-- offset past them).
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'LIMIT', ARGV[2], ARGV[3])
local removed, kept = 0, 0
for _, id in ipairs(ids) do
  local raw = redis.call('HGET', KEYS[1], id)
  if raw and not TERMINAL[cmsgpack.unpack(raw)[F.state_type]] then
    kept = kept + 1
  else
    redis.call('HDEL', KEYS[1], id)
    redis.call('ZREM', KEYS[2], id)
    redis.call('ZREM', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
    redis.call('HDEL', KEYS[6], id)
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'kind', 'flow', 'id', id, 'record', '')
    removed = removed + 1
  end
end
return {removed, kept}
