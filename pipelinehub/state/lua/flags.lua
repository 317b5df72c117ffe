-- Make an environment's detector flags the given set, atomically: flags not in it are
-- cleared, new or changed ones set, and each of these is an entry on the change stream (the
-- run's record with its flag, or without one when cleared), so that a live board shows flags
-- as it shows states. A flag is set only while its run is still in the state the detector
-- judged: a run that moved on since (apply dropped its flag) is left for the next pass.
-- KEYS: 1 the flow-run hash, 2 the flags hash, 3 the change stream.
-- ARGV: 1 the stream's MAXLEN, then triples of (flow run id, the state type judged, the flag
--       as JSON).
-- Returns how many flags were set or cleared.
local maxlen = ARGV[1]
local wanted = {}
for i = 2, #ARGV, 3 do wanted[ARGV[i]] = {state = ARGV[i + 1], flag = ARGV[i + 2]} end

local function announce(run_id, raw, flag)
  if flag then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'kind', 'flow', 'id', run_id, 'record', raw, 'flag', flag)
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'kind', 'flow', 'id', run_id, 'record', raw)
  end
end

local changed = 0
local stored = redis.call('HGETALL', KEYS[2])
local current = {}
for i = 1, #stored, 2 do
  local run_id = stored[i]
  current[run_id] = stored[i + 1]
  if not wanted[run_id] then
    redis.call('HDEL', KEYS[2], run_id)
    local raw = redis.call('HGET', KEYS[1], run_id)
    if raw then announce(run_id, raw, nil) end
    changed = changed + 1
  end
end
for run_id, want in pairs(wanted) do
  local raw = redis.call('HGET', KEYS[1], run_id)
  if raw and cmsgpack.unpack(raw)[F.state_type] == want.state
      and current[run_id] ~= want.flag then
    redis.call('HSET', KEYS[2], run_id, want.flag)
    announce(run_id, raw, want.flag)
    changed = changed + 1
  end
end
return changed
