-- Apply one flow-run or task-run state change to an environment's keys, atomically.
-- (F, the record's field positions, and TERMINAL come from the prelude: state/scripts.py.)
--
-- Flow runs live as fields of one hash (KEYS[1] for a flow run) and are dropped by
-- prune.lua once finished longer than the TTL; task runs are keys of their own with a TTL.
-- KEYS: 1 flow run: the flow-run hash;       task run: the task run's key,
--       2 the change stream,
--       3 flow run: the board index (zset);  task run: its flow run's task set,
--       4 flow run: its task set;            task run: the flow-run hash,
--       5 the in-flight index of its kind (zset: run id -> version), which the in-flight
--         check and the detectors read instead of decoding every record,
--       flow run only: 6 the in-flight counts hash, 7.. the finished sets (see `counted`).
-- ARGV: 1 kind ("flow" or "task"), 2 the run id, 3 the change (records.py layout, msgpack),
--       4 seconds finished runs are kept, 5 the stream's MAXLEN, 6 task run: its flow run id,
--       7 a day ago (a version): runs that finished before it stay out of the finished sets.
--
-- The merge makes the result independent of arrival order and duplication: the newest state
-- wins (by version, ties broken by the state itself), start is the earliest seen, the run count
-- the highest, names are fixed once known. Returns 1 when the record changed, else 0.
local IDENTITY = {F.name, F.flow, F.deployment, F.flow_run_id}

local kind, run_id, ttl, maxlen = ARGV[1], ARGV[2], tonumber(ARGV[4]), ARGV[5]
local incoming = cmsgpack.unpack(ARGV[3])

local function newer(a, b)
  if a[F.version] ~= b[F.version] then return a[F.version] > b[F.version] end
  if a[F.state_type] ~= b[F.state_type] then return a[F.state_type] > b[F.state_type] end
  if a[F.state_name] ~= b[F.state_name] then return a[F.state_name] > b[F.state_name] end
  return a[F['end']] > b[F['end']]
end

local function earliest(a, b)
  if a == 0 or (b ~= 0 and b < a) then return b end
  return a
end

local function merge(stored, new)
  local winner = newer(new, stored) and new or stored
  local merged = {}
  for _, i in ipairs({F.state_type, F.version, F.state_name, F['end']}) do merged[i] = winner[i] end
  for _, i in ipairs(IDENTITY) do
    local a, b = stored[i], new[i]
    merged[i] = (a == '' or (b ~= '' and b > a)) and b or a
  end
  merged[F.start] = earliest(stored[F.start], new[F.start])
  merged[F.run_count] = math.max(stored[F.run_count], new[F.run_count])
  return merged
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
if kind == 'flow' then
  local old_state = stored and stored[F.state_type]
  counted(KEYS[6], 7, run_id, old_state, record[F.state_type], record[F.version], tonumber(ARGV[7]))
  redis.call('HSET', KEYS[1], run_id, encoded)
  redis.call('ZADD', KEYS[3], record[F.version], run_id)
  if terminal then redis.call('EXPIRE', KEYS[4], ttl) else redis.call('PERSIST', KEYS[4]) end
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

redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'kind', kind, 'id', run_id, 'record', encoded)
return 1
