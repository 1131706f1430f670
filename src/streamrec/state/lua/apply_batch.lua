-- Apply one batch of validated events atomically together with its batch id.
--
-- KEYS[1] ledger (batch id -> epoch ms)  KEYS[2] stats  KEYS[3] popularity
-- KEYS[4] dead letters  KEYS[5] last seen (user -> epoch ms)
-- KEYS[6..8] user vocab, reverse, counter   KEYS[9..11] item vocab, reverse, counter
-- KEYS[12] forgotten users (sha1 of user id -> "<forget time ms> <history version>")
-- KEYS[13] their expiry (sha1 -> forget time ms)   KEYS[14] unserved batches (batch id -> users)
-- KEYS[15..] four keys per distinct user: history, ratings, rating stamps, version
-- ARGV: batch_id, now and retention cutoff (epoch ms), dead-letter limit, n_users, n_dead,
--       serving (0|1), the most a history value may hold (a number as a string), when
--       the batch was sent (epoch ms), the n_users user ids, their n_users newest event times in this batch (integer
--       epoch milliseconds, as strings),
--       the n_dead dead-letter JSON entries, then the events as one JSON array of
--       [user index (1-based), item, mode ('s' sum | 'r' rating), value (summed weight or
--       rating, as a string), stamp (a rating's zero-padded time in seconds, a space and
--       its event id; empty for a sum)]. One JSON
--       argument decoded by Redis's C decoder instead of five arguments per event makes the
--       round trip several times cheaper.
-- Numbers reach Redis commands as strings, and sorted-set scores as integers: a Lua float
-- argument, or a score with a fraction, costs Redis 6.2 far more to parse than
-- the command itself.
-- A rating's stamp orders ratings, so that the newest wins whatever the arrival order.
-- Sums saturate at the cap (Redis adds in long double, past the float64 range otherwise).
-- A forgotten user's events are dropped when their batch was sent before the forget
-- (counted in stats as dropped_forgotten); an event sent later starts the user anew, its
-- history version continuing after the version the user had when forgotten.
-- When serving (the caller serves models), the batch's users are recorded under its id in
-- the unserved-batches hash (one line each) until a worker has served them (a dead
-- worker's deferred refreshes are not lost), and the reply details each user; otherwise
-- (nobody serves: an import, a worker without a model) it only counts them, which spares
-- building, sending and parsing a reply as large as the batch.
-- Returns {applied (0|1), n_events, n_dead, {{user, dense id, version, events, changes}...}
--          or the number of users changed, {{item, dense id}...}}
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
local serving = ARGV[7] == '1'
local cap_text = ARGV[8]
local cap = tonumber(cap_text)
local sent = tonumber(ARGV[9])
local U = 9  -- ARGV[U + u] is user u, ARGV[U + n_users + u] their newest event time
local K = 11  -- KEYS[K + 4u .. K + 4u + 3] are user u's keys

-- Commands taking many arguments are sent in chunks: unpack() is bounded by Lua's C stack.
local CHUNK = 1000
local function chunked(command, key, args, step)
  local out = {}
  for first = 1, #args, CHUNK * step do
    local last = math.min(#args, first + CHUNK * step - 1)
    local reply = call(command, key, unpack(args, first, last))
    if type(reply) == 'table' then
      for _, value in ipairs(reply) do out[#out + 1] = value end
    end
  end
  return out
end

-- Dense ids are looked up with one HMGET per vocabulary (a call from Lua costs several
-- times a simple command); ids are handed out only to the ones missing.
local function lookup(vocab, names)
  local found = chunked('HMGET', vocab, names, 1)
  local ids = {}
  for n, name in ipairs(names) do
    if found[n] then ids[name] = found[n] end
  end
  return ids
end

local function create(vocab, reverse, counter, ext)
  local id = tostring(call('INCR', counter) - 1)
  call('HSET', vocab, ext, id)
  call('HSET', reverse, id, ext)
  return id
end

-- Tombstones of forgotten users: expired ones go, then the batch's users are looked up
-- (one HMGET, and only while some tombstone exists).
local tombs = {}
local expired = call('ZRANGEBYSCORE', KEYS[13], '-inf', '(' .. ARGV[3], 'LIMIT', 0, 100)
for _, digest in ipairs(expired) do
  call('HDEL', KEYS[12], digest)
  call('ZREM', KEYS[13], digest)
end
if call('HLEN', KEYS[12]) > 0 then
  local digests = {}
  for u = 1, n_users do digests[u] = redis.sha1hex(ARGV[U + u]) end
  local found = call('HMGET', KEYS[12], unpack(digests))
  for u = 1, n_users do
    if found[u] then
      local at, version = string.match(found[u], '^(%d+) (%d+)$')
      tombs[u] = {sent < tonumber(at), version}
    end
  end
end

local base = U + 2 * n_users
if n_dead > 0 then
  for d = 1, n_dead do call('LPUSH', KEYS[4], ARGV[base + d]) end
  call('LTRIM', KEYS[4], 0, tonumber(ARGV[4]) - 1)
  call('HINCRBY', KEYS[2], 'dead_letters', n_dead)
end
base = base + n_dead

local rows = cjson.decode(ARGV[base + 1])
local n_rows = #rows
local user_names, item_names, listed = {}, {}, {}
for u = 1, n_users do user_names[u] = ARGV[U + u] end
for e = 1, n_rows do
  local item = rows[e][2]
  if not listed[item] then
    listed[item] = true
    item_names[#item_names + 1] = item
  end
end
local known_users = lookup(KEYS[6], user_names)
local item_ids = lookup(KEYS[9], item_names)
-- has_ratings[u]: nil until asked, then whether the user has any rating (one EXISTS per user
-- instead of one HEXISTS per first-time item: most users of a play stream never rate)
local user_ids, counts, has_ratings, changes = {}, {}, {}, {}
local new_items, first_users = {}, {}
local n_events, dropped = 0, 0
for e = 1, n_rows do
  local row = rows[e]
  local u, item, mode, value, stamp = row[1], row[2], row[3], row[4], row[5]
  local tomb = tombs[u]
  if tomb and tomb[1] then
    dropped = dropped + 1
  else
    local history, ratings, stamps = KEYS[K + u * 4], KEYS[K + 1 + u * 4], KEYS[K + 2 + u * 4]
    if not user_ids[u] then
      user_ids[u] = known_users[ARGV[U + u]] or create(KEYS[6], KEYS[7], KEYS[8], ARGV[U + u])
      counts[u] = 0
      changes[u] = {}
    end
    local item_id = item_ids[item]
    if not item_id then
      item_id = create(KEYS[9], KEYS[10], KEYS[11], item)
      item_ids[item] = item_id
      new_items[#new_items + 1] = {item, item_id}
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
        if tonumber(stored) > cap then
          call('HSET', history, item, cap_text)
          stored = cap_text
        end
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
    if first then first_users[item] = (first_users[item] or 0) + 1 end
    counts[u] = counts[u] + 1
    n_events = n_events + 1
  end
end
for _, item in ipairs(item_names) do
  local gained = first_users[item]
  if gained then call('ZINCRBY', KEYS[3], tostring(gained), item) end
end

local users, seen, names, n_touched = {}, {}, {}, 0
for u = 1, n_users do
  if user_ids[u] then
    local version_key = KEYS[K + 3 + u * 4]
    local tomb = tombs[u]
    if tomb and call('EXISTS', version_key) == 0 then call('SET', version_key, tomb[2]) end
    local version = call('INCRBY', version_key, counts[u])
    seen[#seen + 1] = ARGV[U + n_users + u]
    seen[#seen + 1] = ARGV[U + u]
    names[#names + 1] = ARGV[U + u]
    if serving then
      users[#users + 1] = {ARGV[U + u], user_ids[u], version, counts[u], changes[u]}
    end
    n_touched = n_touched + 1
  end
end
if #seen > 0 then
  -- one ZADD per chunk of users: ZADD key GT score member score member ...
  for first = 1, #seen, 2 * CHUNK do
    call('ZADD', KEYS[5], 'GT', unpack(seen, first, math.min(#seen, first + 2 * CHUNK - 1)))
  end
  if serving then call('HSET', KEYS[14], batch_id, table.concat(names, '\n')) end
end
call('HINCRBY', KEYS[2], 'events_applied', n_events)
call('HINCRBY', KEYS[2], 'batches_applied', 1)
if dropped > 0 then call('HINCRBY', KEYS[2], 'dropped_forgotten', dropped) end
if not serving then users = n_touched end
return {1, n_events, n_dead, users, new_items}
