-- Write cache entries, each only if it is not older than the entry already there.
-- KEYS: one cache key per entry.  ARGV: one JSON entry per key.
-- An entry replaces the stored one when its history_version is higher, or equal with a
-- model version at least as high: a slow worker holding an older history never
-- overwrites a fresher list, and a new model version replaces lists of the same history.
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

local written = 0
for i = 1, #KEYS do
  local new_history, new_model = versions(ARGV[i])
  local old_raw = redis.call('GET', KEYS[i])
  local write = true
  if old_raw then
    local old_history, old_model = versions(old_raw)
    if old_history > new_history then
      write = false
    elseif old_history == new_history and old_model > new_model then
      write = false
    end
  end
  if write then
    redis.call('SET', KEYS[i], ARGV[i])
    written = written + 1
  end
end
return written
