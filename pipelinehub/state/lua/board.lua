-- The newest flow runs of an environment and the change-stream id they are consistent with,
-- read in one atomic step: every change after that id is on the stream, every change up to it
-- is in the rows. A live board sends the rows, then the stream from that id.
-- KEYS: 1 the board index (zset), 2 the flow-run hash, 3 the change stream.
-- ARGV: 1 how many runs at most.
-- Returns {cursor, ids, records}; cursor "0-0" when the stream is empty.
local CHUNK = 1000  -- unpack() has a limit on the number of values
local ids = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local records = {}
for first = 1, #ids, CHUNK do
  local last = math.min(first + CHUNK - 1, #ids)
  local chunk = redis.call('HMGET', KEYS[2], unpack(ids, first, last))
  for i = 1, #chunk do records[first + i - 1] = chunk[i] end
end
local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local cursor = newest[1] and newest[1][1] or '0-0'
return {cursor, ids, records}
