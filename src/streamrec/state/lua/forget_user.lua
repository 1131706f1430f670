-- Remove every trace of one user from the state.
-- KEYS[1..4] history, ratings, rating stamps, version   KEYS[5] popularity
-- KEYS[6..7] user vocab, reverse   KEYS[8] last seen   KEYS[9..] further per-user keys
-- (cache entries)
-- ARGV[1] user id.  Returns 1 if the user existed, else 0.
local items = redis.call('HKEYS', KEYS[1])
for _, item in ipairs(redis.call('HKEYS', KEYS[2])) do
  if redis.call('HEXISTS', KEYS[1], item) == 0 then table.insert(items, item) end
end
for _, item in ipairs(items) do
  if tonumber(redis.call('ZINCRBY', KEYS[5], -1, item)) <= 0 then
    redis.call('ZREM', KEYS[5], item)
  end
end
local existed = 0
local id = redis.call('HGET', KEYS[6], ARGV[1])
if id then
  redis.call('HDEL', KEYS[6], ARGV[1])
  redis.call('HDEL', KEYS[7], id)
  existed = 1
end
redis.call('ZREM', KEYS[8], ARGV[1])
for k = 1, #KEYS do
  if k <= 4 or k >= 9 then
    if redis.call('DEL', KEYS[k]) > 0 then existed = 1 end
  end
end
return existed
