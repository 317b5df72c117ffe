-- Record flow runs' heartbeats: each run's newest sign of life, not a state change and not on
-- the change stream. Only runs held unfinished get one, so a heartbeat that arrives after its
-- run finished (or of a run this environment does not hold) leaves nothing behind; an older
-- heartbeat than the one stored changes nothing.
-- KEYS: 1 the flow-run hash, 2 the heartbeats hash.
-- ARGV: pairs of (flow run id, the heartbeat's time in microseconds).
-- Returns how many heartbeats were recorded.
local recorded = 0
for i = 1, #ARGV, 2 do
  local run_id, beat = ARGV[i], tonumber(ARGV[i + 1])
  local raw = redis.call('HGET', KEYS[1], run_id)
  if raw and not TERMINAL[cmsgpack.unpack(raw)[F.state_type]] then
    local last = tonumber(redis.call('HGET', KEYS[2], run_id) or 0)
    if beat > last then
      redis.call('HSET', KEYS[2], run_id, ARGV[i + 1])
      recorded = recorded + 1
    end
  end
end
return recorded
