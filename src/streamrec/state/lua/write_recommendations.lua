-- Write cache entries, each only if it is not older than the entry already there.
-- KEYS: one cache key per entry.  ARGV: one JSON entry per key.
-- An entry replaces the stored one when its history_version is higher, or equal with a
-- model version at least as high: a slow worker holding an older history never
-- overwrites a fresher list, and a new model version replaces lists of the same history.
-- Returns the number of entries written.
local written = 0
for i = 1, #KEYS do
  local new = cjson.decode(ARGV[i])
  local old_raw = redis.call('GET', KEYS[i])
  local write = true
  if old_raw then
    local old = cjson.decode(old_raw)
    if old.history_version > new.history_version then
      write = false
    elseif old.history_version == new.history_version and old.version > new.version then
      write = false
    end
  end
  if write then
    redis.call('SET', KEYS[i], ARGV[i])
    written = written + 1
  end
end
return written
