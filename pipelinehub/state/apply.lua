-- Apply one flow-run or task-run state change to an environment's keys, atomically.
--
-- Flow runs live as fields of one hash (KEYS[1] for a flow run) and are dropped by
-- prune.lua once finished longer than the TTL; task runs are keys of their own with a TTL.
-- KEYS: 1 flow run: the flow-run hash;       task run: the task run's key,
--       2 the change stream,
--       3 flow run: the board index (zset);  task run: its flow run's task set,
--       4 flow run: its task set;            task run: the flow-run hash.
-- ARGV: 1 kind ("flow" or "task"), 2 the run id, 3 the change (records.py layout, msgpack),
--       4 seconds finished runs are kept, 5 the stream's MAXLEN, 6 task run: its flow run id.
--
-- The merge makes the result independent of arrival order and duplication: the newest state
-- wins (by version, ties broken by the state itself), start is the earliest seen, the run count
-- the highest, names are fixed once known. Returns 1 when the record changed, else 0.
local ST, V, SN, START, END, RUN_COUNT = 1, 2, 3, 8, 9, 10
local IDENTITY = {4, 5, 6, 7}  -- name, flow, deployment, flow run id
local TERMINAL = {COMPLETED = true, FAILED = true, CANCELLED = true, CRASHED = true}

local kind, run_id, ttl, maxlen = ARGV[1], ARGV[2], tonumber(ARGV[4]), ARGV[5]
local incoming = cmsgpack.unpack(ARGV[3])

local function newer(a, b)
  if a[V] ~= b[V] then return a[V] > b[V] end
  if a[ST] ~= b[ST] then return a[ST] > b[ST] end
  if a[SN] ~= b[SN] then return a[SN] > b[SN] end
  return a[END] > b[END]
end

local function earliest(a, b)
  if a == 0 or (b ~= 0 and b < a) then return b end
  return a
end

local function merge(stored, new)
  local winner = newer(new, stored) and new or stored
  local merged = {}
  merged[ST], merged[V], merged[SN], merged[END] = winner[ST], winner[V], winner[SN], winner[END]
  for _, i in ipairs(IDENTITY) do
    local a, b = stored[i], new[i]
    merged[i] = (a == '' or (b ~= '' and b > a)) and b or a
  end
  merged[START] = earliest(stored[START], new[START])
  merged[RUN_COUNT] = math.max(stored[RUN_COUNT], new[RUN_COUNT])
  return merged
end

local stored_raw
if kind == 'flow' then
  stored_raw = redis.call('HGET', KEYS[1], run_id)
else
  stored_raw = redis.call('GET', KEYS[1])
end
local record = incoming
if stored_raw then record = merge(cmsgpack.unpack(stored_raw), incoming) end
local encoded = cmsgpack.pack(record)
if encoded == stored_raw then return 0 end

local terminal = TERMINAL[record[ST]]
if kind == 'flow' then
  redis.call('HSET', KEYS[1], run_id, encoded)
  redis.call('ZADD', KEYS[3], record[V], run_id)
  if terminal then redis.call('EXPIRE', KEYS[4], ttl) else redis.call('PERSIST', KEYS[4]) end
else
  redis.call('SET', KEYS[1], encoded)
  if terminal then redis.call('EXPIRE', KEYS[1], ttl) end
  redis.call('SADD', KEYS[3], run_id)
  -- The task set lives as long as its flow run: kept while it runs, a TTL once finished or
  -- while the flow run is not known yet (its arrival persists the set).
  local parent = redis.call('HGET', KEYS[4], ARGV[6])
  if parent and not TERMINAL[cmsgpack.unpack(parent)[ST]] then
    redis.call('PERSIST', KEYS[3])
  else
    redis.call('EXPIRE', KEYS[3], ttl)
  end
end

redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'kind', kind, 'id', run_id, 'record', encoded)
return 1
