-- Apply one flow-run or task-run state change to an environment's keys, atomically.
-- (F, the record's field positions, TERMINAL, BASELINED, FAILING and the baseline constants
-- come from the prelude: state/scripts.py.)
--
-- Flow runs live as fields of one hash (KEYS[1] for a flow run) and are dropped by
-- prune.lua once finished longer than the TTL; task runs are keys of their own with a TTL.
-- KEYS: 1 flow run: the flow-run hash;       task run: the task run's key,
--       2 the change stream,
--       3 flow run: the board index (zset);  task run: its flow run's task set,
--       4 flow run: its task set;            task run: the flow-run hash,
--       5 the in-flight index of its kind (zset: run id -> version), which the in-flight
--         check and the detectors read instead of decoding every record,
--       flow run only: 6 the in-flight counts hash, 7 the heartbeats hash, 8 the flags hash,
--       9 the newly failed set, 10.. the finished sets (see `counted`).
-- ARGV: 1 kind ("flow" or "task"), 2 the run id, 3 the change (records.py layout, msgpack),
--       4 seconds finished runs are kept, 5 the stream's MAXLEN, 6 task run: its flow run id,
--       7 a day ago (a version): runs that finished before it stay out of the finished sets
--         and out of the newly failed set,
--       8 the key prefix of the baselines' durations (followed by "flow:<name>" or
--         "deployment:<id>", as state/keyspace.py names them), 9 seconds they are kept after
--         the last completed run.
--
-- The merge makes the result independent of arrival order and duplication: the newest state
-- wins (by version, ties broken by the state itself, its end and its expected start), start is
-- the earliest seen, the run count the highest, names are fixed once known. Returns 1 when the
-- record changed, else 0.
--
-- A flow run's flag (set by the detectors through flags.lua) judged the state it was set in:
-- it is dropped when the state type changes. Its heartbeat is dropped when it finishes. A flow
-- run completed with a known start and end has its duration in its flow's and deployment's
-- baselines (see `baselined`).
local IDENTITY = {F.name, F.flow, F.deployment, F.flow_run_id}

local kind, run_id, ttl, maxlen = ARGV[1], ARGV[2], tonumber(ARGV[4]), ARGV[5]
local incoming = cmsgpack.unpack(ARGV[3])

-- Records written before expected_start existed have one value less.
local function expected(r) return r[F.expected_start] or 0 end

local function newer(a, b)
  if a[F.version] ~= b[F.version] then return a[F.version] > b[F.version] end
  if a[F.state_type] ~= b[F.state_type] then return a[F.state_type] > b[F.state_type] end
  if a[F.state_name] ~= b[F.state_name] then return a[F.state_name] > b[F.state_name] end
  if a[F['end']] ~= b[F['end']] then return a[F['end']] > b[F['end']] end
  return expected(a) > expected(b)
end

local function earliest(a, b)
  if a == 0 or (b ~= 0 and b < a) then return b end
  return a
end

local function merge(stored, new)
  local winner = newer(new, stored) and new or stored
  local merged = {}
  for _, i in ipairs({F.state_type, F.version, F.state_name, F['end']}) do merged[i] = winner[i] end
  merged[F.expected_start] = expected(winner)
  for _, i in ipairs(IDENTITY) do
    local a, b = stored[i], new[i]
    merged[i] = (a == '' or (b ~= '' and b > a)) and b or a
  end
  merged[F.start] = earliest(stored[F.start], new[F.start])
  merged[F.run_count] = math.max(stored[F.run_count], new[F.run_count])
  return merged
end

-- A completed run's duration, or nil.
local function duration_of(r)
  if r[F.state_type] == BASELINED and r[F.start] ~= 0 and r[F['end']] >= r[F.start] then
    return r[F['end']] - r[F.start]
  end
end

-- A flow run's duration in its flow's and deployment's baselines follows its record: there
-- while it is completed with a known start and end, once, with the duration it has now, among
-- the BASELINE_RUNS that ended last. So a replay adds nothing, a Running state that arrives
-- after the Completed one moves it, and a retried run leaves until it completes again: any
-- arrival order converges. A scope's durations are a sorted set by end whose members are
-- "<duration> <run id>": a run's member is known from its record, and trimming to the newest
-- is one call. The percentile is taken where it is read (state/inflight.py), so that a
-- completion costs apply three calls per scope.
local SCOPES = {['flow:'] = F.flow, ['deployment:'] = F.deployment}
local function member_of(took) return string.format('%d', took) .. ' ' .. run_id end

local function baselined(stored, record)
  local before, after = stored and duration_of(stored), duration_of(record)
  if before == nil and after == nil then return end
  for scope, field in pairs(SCOPES) do
    local old_name, new_name = stored and stored[field] or '', record[field]
    if before ~= after or old_name ~= new_name then
      if before and old_name ~= '' then
        redis.call('ZREM', ARGV[8] .. scope .. old_name, member_of(before))
      end
      if after and new_name ~= '' then
        local durations = ARGV[8] .. scope .. new_name
        redis.call('ZADD', durations, record[F['end']], member_of(after))
        redis.call('ZREMRANGEBYRANK', durations, 0, -BASELINE_RUNS - 1)
        redis.call('EXPIRE', durations, ARGV[9])
      end
    end
  end
end

local stored_raw
if kind == 'flow' then
  stored_raw = redis.call('HGET', KEYS[1], run_id)
else
  stored_raw = redis.call('GET', KEYS[1])
end
local stored = stored_raw and cmsgpack.unpack(stored_raw)
local record = incoming
if stored then record = merge(stored, incoming) end
local encoded = cmsgpack.pack(record)
if encoded == stored_raw then return 0 end

local terminal = TERMINAL[record[F.state_type]]
if terminal then
  redis.call('ZREM', KEYS[5], run_id)
else
  redis.call('ZADD', KEYS[5], record[F.version], run_id)
end
local flag
if kind == 'flow' then
  local old_state, new_state = stored and stored[F.state_type], record[F.state_type]
  local day_ago = tonumber(ARGV[7])
  counted(KEYS[6], 10, run_id, old_state, new_state, record[F.version], day_ago)
  redis.call('HSET', KEYS[1], run_id, encoded)
  redis.call('ZADD', KEYS[3], record[F.version], run_id)
  if terminal then redis.call('EXPIRE', KEYS[4], ttl) else redis.call('PERSIST', KEYS[4]) end
  -- Heartbeats and flags are only ever kept for runs already held.
  if stored then
    if terminal then redis.call('HDEL', KEYS[7], run_id) end
    if old_state ~= new_state then
      redis.call('HDEL', KEYS[8], run_id)
    else
      flag = redis.call('HGET', KEYS[8], run_id)
    end
  end
  if FAILING[new_state] and not FAILING[old_state] and record[F.version] >= day_ago then
    redis.call('ZADD', KEYS[9], record[F.version], run_id)
    redis.call('ZREMRANGEBYRANK', KEYS[9], 0, -FAILURES_KEPT - 1)
  end
  baselined(stored, record)
else
  redis.call('SET', KEYS[1], encoded)
  if terminal then redis.call('EXPIRE', KEYS[1], ttl) end
  redis.call('SADD', KEYS[3], run_id)
  -- The task set lives as long as its flow run: kept while it runs, a TTL once finished or
  -- while the flow run is not known yet (its arrival persists the set).
  local parent = redis.call('HGET', KEYS[4], ARGV[6])
  if parent and not TERMINAL[cmsgpack.unpack(parent)[F.state_type]] then
    redis.call('PERSIST', KEYS[3])
  else
    redis.call('EXPIRE', KEYS[3], ttl)
  end
end

if flag then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'kind', kind, 'id', run_id, 'record', encoded, 'flag', flag)
else
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'kind', kind, 'id', run_id, 'record', encoded)
end
return 1
