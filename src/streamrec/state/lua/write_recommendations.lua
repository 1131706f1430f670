-- Write cache entries, each only if it is not older than the entry already there, and
-- mark batches as served.
-- KEYS: one cache key per entry, then the forgotten-users hash and the unserved-batches
-- hash.
-- ARGV: n, the n JSON entries, the n users they belong to, then the ids of the batches
-- whose users were all served (taken off the unserved-batches hash).
-- An entry replaces the stored one when its history_version is higher, or equal with a
-- model version at least as high: a slow worker holding an older history never
-- overwrites a fresher list, and a new model version replaces lists of the same history.
-- An entry of a forgotten user computed from a history version up to the one they had
-- when forgotten is refused: no worker writes a forgotten user back.
-- Returns the number of entries written.
--
-- The two numbers are found with a pattern instead of decoding the whole entry: in JSON
-- a quote inside a string is escaped, so ',"version":' can only be the top-level key
-- (the items come after it; "history_version" appears nowhere else).
local function versions(raw)
  local model = string.match(raw, ',"version":(%d+)')
  local history = string.match(raw, ',"history_version":(%d+)')
  if model and history then return tonumber(history), tonumber(model) end
  local entry = cjson.decode(raw)
  return entry.history_version, entry.version
end

local n = tonumber(ARGV[1])
local forgotten, unserved = KEYS[n + 1], KEYS[n + 2]
local limits = {}
if n > 0 and redis.call('HLEN', forgotten) > 0 then
  for i = 1, n do
    local tomb = redis.call('HGET', forgotten, redis.sha1hex(ARGV[1 + n + i]))
    if tomb then limits[i] = tonumber(string.match(tomb, ' (%d+)$')) end
  end
end

local written = 0
for i = 1, n do
  local raw = ARGV[1 + i]
  local new_history, new_model = versions(raw)
  local write = not (limits[i] and new_history <= limits[i])
  local old_raw = write and redis.call('GET', KEYS[i])
  if old_raw then
    local old_history, old_model = versions(old_raw)
    if old_history > new_history then
      write = false
    elseif old_history == new_history and old_model > new_model then
      write = false
    end
  end
  if write then
    redis.call('SET', KEYS[i], raw)
    written = written + 1
  end
end

if #ARGV > 1 + 2 * n then redis.call('HDEL', unserved, unpack(ARGV, 2 + 2 * n)) end
return written
