-- Apply one flow-run or task-run state change to an environment's keys, atomically.
--
-- KEYS: 1 the run's record, 2 the change stream,
--       3 for a flow run: the board index (zset); for a task run: its flow run's task set,
--       4 for a flow run: its task set;           for a task run: its flow run's record.
-- ARGV: 1 kind ("flow" or "task"), 2 the run id, 3 the change as a JSON array of strings
--       (layout in records.py), 4 seconds finished runs are kept, 5 the stream's MAXLEN.
--
-- Records are JSON arrays of strings: cjson would round microsecond timestamps written as
-- numbers. The merge makes the result independent of arrival order and duplication: the newest
-- state wins (by version, ties broken by the state itself), start is the earliest seen, the run
-- count the highest, names are fixed once known. Returns 1 when the record changed, else 0.
local ST, V, SN, START, END, RUN_COUNT = 1, 2, 3, 8, 9, 10
local IDENTITY = {4, 5, 6, 7}  -- name, flow, deployment, flow run id
local TERMINAL = {COMPLETED = true, FAILED = true, CANCELLED = true, CRASHED = true}

local kind, run_id, ttl, maxlen = ARGV[1], ARGV[2], tonumber(ARGV[4]), ARGV[5]
local incoming = cjson.decode(ARGV[3])
local stored_raw = redis.call('GET', KEYS[1])

local function state_key(r)
  return r[ST] .. '|' .. r[SN] .. '|' .. r[END]
end

local function newer(a, b)
  local va, vb = tonumber(a[V]), tonumber(b[V])
  if va ~= vb then return va > vb end
  return state_key(a) > state_key(b)
end

local function earliest(a, b)
  if a == '' then return b end
  if b == '' or tonumber(a) <= tonumber(b) then return a end
  return b
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
  merged[RUN_COUNT] = tostring(math.max(tonumber(stored[RUN_COUNT]) or 0, tonumber(new[RUN_COUNT]) or 0))
  return merged
end

local record = incoming
if stored_raw then record = merge(cjson.decode(stored_raw), incoming) end
local encoded = cjson.encode(record)
if encoded == stored_raw then return 0 end

redis.call('SET', KEYS[1], encoded)
local terminal = TERMINAL[record[ST]]
if terminal then redis.call('EXPIRE', KEYS[1], ttl) end

if kind == 'flow' then
  redis.call('ZADD', KEYS[3], tonumber(record[V]), run_id)
  if terminal then redis.call('EXPIRE', KEYS[4], ttl) else redis.call('PERSIST', KEYS[4]) end
else
  redis.call('SADD', KEYS[3], run_id)
  local parent_ttl = redis.call('PTTL', KEYS[4])
  if parent_ttl == -1 then
    redis.call('PERSIST', KEYS[3])
  elseif parent_ttl > 0 then
    redis.call('PEXPIRE', KEYS[3], parent_ttl)
  else
    redis.call('EXPIRE', KEYS[3], ttl)  -- flow run not known yet: it persists the set on arrival
  end
end

redis.call('XADD', KEYS[2], 'MAXLEN', '~', maxlen, '*', 'kind', kind, 'id', run_id, 'record', encoded)
return 1
