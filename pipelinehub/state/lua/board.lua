-- The newest flow runs of an environment, their flags and the change-stream id they are
-- consistent with, read in one atomic step: every change after that id is on the stream, every
-- change up to it is in the rows. A live board sends the rows, then the stream from that id.
-- KEYS: 1 the board index (zset), 2 the flow-run hash, 3 the change stream, 4 the flags hash.
-- ARGV: 1 how many runs at most.
-- Returns {cursor, ids, records, flags}; cursor "0-0" when the stream is empty.
local CHUNK = 1000  -- unpack() has a limit on the number of values
local ids = redis.call('ZREVRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
local records, flags = {}, {}
local any_flag = redis.call('HLEN', KEYS[4]) > 0
for first = 1, #ids, CHUNK do
  local last = math.min(first + CHUNK - 1, #ids)
  local chunk = redis.call('HMGET', KEYS[2], unpack(ids, first, last))
  local flagged = any_flag and redis.call('HMGET', KEYS[4], unpack(ids, first, last)) or {}
  for i = 1, #chunk do
    records[first + i - 1] = chunk[i]
    flags[first + i - 1] = flagged[i] or false
  end
end
local newest = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local cursor = newest[1] and newest[1][1] or '0-0'
return {cursor, ids, records, flags}
