-- Remove every trace of one user from the state.
-- KEYS[1..3] history, ratings, version   KEYS[4] popularity   KEYS[5..6] user vocab, reverse
-- KEYS[7] last seen   KEYS[8..] further per-user keys (cache entries, vectors)
-- ARGV[1] user id.  Returns 1 if the user existed, else 0.
local items = redis.call('HKEYS', KEYS[1])
for _, item in ipairs(redis.call('HKEYS', KEYS[2])) do
  if redis.call('HEXISTS', KEYS[1], item) == 0 then table.insert(items, item) end
end
for _, item in ipairs(items) do
  if tonumber(redis.call('ZINCRBY', KEYS[4], -1, item)) <= 0 then
    redis.call('ZREM', KEYS[4], item)
  end
end
local existed = 0
local id = redis.call('HGET', KEYS[5], ARGV[1])
if id then
  redis.call('HDEL', KEYS[5], ARGV[1])
  redis.call('HDEL', KEYS[6], id)
  existed = 1
end
redis.call('ZREM', KEYS[7], ARGV[1])
for k = 1, #KEYS do
  if k <= 3 or k >= 8 then
    if redis.call('DEL', KEYS[k]) > 0 then existed = 1 end
  end
end
return existed
