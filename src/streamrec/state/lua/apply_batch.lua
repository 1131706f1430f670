-- Apply one batch of validated events atomically together with its batch id.
--
-- KEYS[1] ledger (batch id -> epoch ms)  KEYS[2] stats  KEYS[3] popularity
-- KEYS[4] dead letters  KEYS[5] last seen (user -> epoch ms)
-- KEYS[6..8] user vocab, reverse, counter   KEYS[9..11] item vocab, reverse, counter
-- KEYS[12..] four keys per distinct user: history, ratings, rating stamps, version
-- ARGV: batch_id, now and ledger cutoff (epoch ms), dead-letter limit, n_users, n_dead,
--       the n_users user ids, their n_users newest event times in this batch (integer
--       epoch milliseconds, as strings),
--       the n_dead dead-letter JSON entries, then the events as one JSON array of
--       [user index (1-based), item, mode ('s' sum | 'r' rating), value (summed weight or
--       rating, as a string), stamp]. One JSON argument decoded by Redis's C decoder
--       instead of five arguments per event makes the round trip several times cheaper.
-- Numbers reach Redis commands as strings, and sorted-set scores as integers: a Lua float
-- argument, or a score with a fraction, costs Redis 6.2 about 15 µs to parse, several times
-- the command itself.
-- A rating's stamp (zero-padded time, then event id) is kept beside it and orders ratings,
-- so that the newest wins whatever the arrival order.
-- Returns {applied (0|1), n_events, n_dead, {{user, dense id, version, events, changes}...},
--          {{item, dense id}...}}
-- where a user's changes are the values the batch left in their hashes, flat:
-- item dense id, 's' (history) | 'r' (rating), new value as stored, ... in application
-- order, so that a worker holding the previous version can mirror the history exactly.
local call = redis.call
local batch_id = ARGV[1]
if call('ZSCORE', KEYS[1], batch_id) then
  call('HINCRBY', KEYS[2], 'batches_duplicate', 1)
  return {0, 0, 0, {}, {}}
end
call('ZADD', KEYS[1], ARGV[2], batch_id)
call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])

local n_users = tonumber(ARGV[5])
local n_dead = tonumber(ARGV[6])

local function dense_id(vocab, reverse, counter, ext)
  local id = call('HGET', vocab, ext)
  if id then return id, false end
  id = tostring(call('INCR', counter) - 1)
  call('HSET', vocab, ext, id)
  call('HSET', reverse, id, ext)
  return id, true
end

-- has_ratings[u]: nil until asked, then whether the user has any rating (one EXISTS per user
-- instead of one HEXISTS per first-time item: most users of a play stream never rate)
local user_ids, counts, has_ratings, changes = {}, {}, {}, {}
for u = 1, n_users do
  user_ids[u] = dense_id(KEYS[6], KEYS[7], KEYS[8], ARGV[6 + u])
  counts[u] = 0
  changes[u] = {}
end

local base = 6 + 2 * n_users
if n_dead > 0 then
  for d = 1, n_dead do call('LPUSH', KEYS[4], ARGV[base + d]) end
  call('LTRIM', KEYS[4], 0, tonumber(ARGV[4]) - 1)
  call('HINCRBY', KEYS[2], 'dead_letters', n_dead)
end
base = base + n_dead

local rows = cjson.decode(ARGV[base + 1])
local n_events = #rows
local new_items, item_ids = {}, {}
for e = 1, n_events do
  local row = rows[e]
  local u, item, mode, value, stamp = row[1], row[2], row[3], row[4], row[5]
  local history, ratings, stamps = KEYS[8 + u * 4], KEYS[9 + u * 4], KEYS[10 + u * 4]
  local item_id = item_ids[item]
  if not item_id then
    local created
    item_id, created = dense_id(KEYS[9], KEYS[10], KEYS[11], item)
    item_ids[item] = item_id
    if created then table.insert(new_items, {item, item_id}) end
  end
  local first = false
  local change = changes[u]
  if mode == 's' then
    local stored = value
    if call('HSETNX', history, item, value) == 1 then
      if has_ratings[u] == nil then has_ratings[u] = call('EXISTS', ratings) == 1 end
      first = not (has_ratings[u] and call('HEXISTS', ratings, item) == 1)
    else
      stored = call('HINCRBYFLOAT', history, item, value)
    end
    change[#change + 1] = item_id
    change[#change + 1] = 's'
    change[#change + 1] = stored
  else
    local old = call('HGET', stamps, item)
    has_ratings[u] = true
    if (not old) or stamp >= old then
      call('HSET', ratings, item, value)
      call('HSET', stamps, item, stamp)
      change[#change + 1] = item_id
      change[#change + 1] = 'r'
      change[#change + 1] = value
    end
    if not old then first = call('HEXISTS', history, item) == 0 end
  end
  if first then call('ZINCRBY', KEYS[3], '1', item) end
  counts[u] = counts[u] + 1
end

local users = {}
for u = 1, n_users do
  local version = call('INCRBY', KEYS[11 + u * 4], counts[u])
  call('ZADD', KEYS[5], 'GT', ARGV[6 + n_users + u], ARGV[6 + u])
  users[u] = {ARGV[6 + u], user_ids[u], version, counts[u], changes[u]}
end
call('HINCRBY', KEYS[2], 'events_applied', n_events)
call('HINCRBY', KEYS[2], 'batches_applied', 1)
return {1, n_events, n_dead, users, new_items}
