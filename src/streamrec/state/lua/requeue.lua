-- Put a job a dead worker took back at the front of its queue, once.
-- KEYS[1] the queue's intermediate list   KEYS[2] the queue   ARGV[1] job id
-- Two workers recovering at once cannot both push it: only the one whose LREM removed the
-- entry does. Returns 1 if requeued, else 0.
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 1 then
  redis.call('LPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
