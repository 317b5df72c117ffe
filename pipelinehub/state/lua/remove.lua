-- Forget one run that Prefect no longer has (reconcile's orphans), atomically, with a removal
-- entry on the change stream so that a live board drops it too.
-- A flow run's heartbeat and flag go with it.
-- KEYS: flow run: 1 the flow-run hash, 2 the change stream, 3 the board index, 4 its task set,
--                 5 the in-flight index of flow runs, 6 the in-flight counts, 7 the heartbeats
--                 hash, 8 the flags hash, 9.. the finished sets;
--       task run: 1 its key, 2 the change stream, 3 its flow run's task set,
--                 4 unused, 5 the in-flight index of task runs.
-- ARGV: 1 kind ("flow" or "task"), 2 the run id, 3 the stream's MAXLEN.
-- Returns 1 when the run was there, else 0.
local kind, run_id = ARGV[1], ARGV[2]
local raw
if kind == 'flow' then
  raw = redis.call('HGET', KEYS[1], run_id)
  if not raw then return 0 end
  counted(KEYS[6], 9, run_id, cmsgpack.unpack(raw)[F.state_type], nil, 0, 0)
  redis.call('HDEL', KEYS[1], run_id)
  redis.call('HDEL', KEYS[7], run_id)
  redis.call('HDEL', KEYS[8], run_id)
  redis.call('ZREM', KEYS[3], run_id)
  redis.call('DEL', KEYS[4])
else
  raw = redis.call('GET', KEYS[1])
  if not raw then return 0 end
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[3], run_id)
end
redis.call('ZREM', KEYS[5], run_id)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'kind', kind, 'id', run_id, 'record', '')
return 1
