-- Remove every trace of one user from the state, and leave a tombstone.
-- KEYS[1..4] history, ratings, rating stamps, version   KEYS[5] popularity
-- KEYS[6..7] user vocab, reverse   KEYS[8] last seen   KEYS[9] forgotten users
-- KEYS[10] their expiry   KEYS[11] unserved batches (batch id -> users, one a line)
-- KEYS[12..] further per-user keys
-- (cache entries)
-- ARGV[1] user id   ARGV[2] now (epoch ms)   ARGV[3] '1' to leave a tombstone even if
-- nothing of the user is stored (their events were found in queued jobs)
-- The tombstone (keyed by the SHA-1 of the user id, not the id) records the time and the
-- history version: the apply script drops the user's events that happened before it, and
-- the cache script refuses lists computed from the old history, until it expires.
-- Returns 1 if the user existed, else 0.
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
if redis.call('ZREM', KEYS[8], ARGV[1]) > 0 then existed = 1 end
-- the user's line goes from every unserved batch (the hash holds batches in flight: few)
local unserved = redis.call('HGETALL', KEYS[11])
for f = 1, #unserved, 2 do
  local kept, found = {}, false
  for name in string.gmatch(unserved[f + 1], '[^\n]+') do
    if name == ARGV[1] then found = true else kept[#kept + 1] = name end
  end
  if found then
    existed = 1
    if #kept > 0 then
      redis.call('HSET', KEYS[11], unserved[f], table.concat(kept, '\n'))
    else
      redis.call('HDEL', KEYS[11], unserved[f])
    end
  end
end
local version = redis.call('GET', KEYS[4]) or '0'
for k = 1, #KEYS do
  if k <= 4 or k >= 12 then
    if redis.call('DEL', KEYS[k]) > 0 then existed = 1 end
  end
end
local digest = redis.sha1hex(ARGV[1])
local old = redis.call('HGET', KEYS[9], digest)
if old then
  -- forgotten before and not back since: keep the higher version
  local old_version = string.match(old, ' (%d+)$')
  if tonumber(old_version) > tonumber(version) then version = old_version end
end
if existed == 1 or ARGV[3] == '1' or old then
  redis.call('HSET', KEYS[9], digest, ARGV[2] .. ' ' .. version)
  redis.call('ZADD', KEYS[10], ARGV[2], digest)
end
return existed
