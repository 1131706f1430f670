-- Free the lease KEYS[1] if token ARGV[1] holds it. Returns 1 if freed, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
