-- Take the event jobs queued behind a running job, after finishing the ones it applied
-- (one round trip instead of three: a worker that follows a stream runs this per round).
--
-- KEYS[1] the queue's list, KEYS[2] its intermediate list (where a worker keeps the jobs
-- it holds).
-- ARGV[1] the most jobs to take, ARGV[2] RQ's job key prefix, ARGV[3..] the ids of
-- finished jobs (applied and served): taken off the intermediate list and their hashes
-- deleted, as RQ deletes a finished job whose result is not kept.
-- Returns {id, hash, id, hash, ...}: each job moved from the head of the queue to the tail
-- of the intermediate list, in order, with its hash as HGETALL gives it (empty when the
-- key is missing or not a hash: the caller puts such a job back for RQ to sort out).
-- The job keys are named by ids found at run time, as RQ's own commands do: RQ does not
-- run on a Redis Cluster.
local prefix = ARGV[2]
for i = 3, #ARGV do
  redis.call('LREM', KEYS[2], 1, ARGV[i])
  redis.call('DEL', prefix .. ARGV[i], prefix .. ARGV[i] .. ':dependents')
end
local out = {}
for _ = 1, tonumber(ARGV[1]) do
  local id = redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')
  if not id then break end
  local found = redis.pcall('HGETALL', prefix .. id)
  if type(found) ~= 'table' or found.err then found = {} end
  out[#out + 1] = id
  out[#out + 1] = found
end
return out
