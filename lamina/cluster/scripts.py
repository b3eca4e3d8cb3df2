"""The counting rules of engine/concurrency.py as Redis scripts: each decision one atomic
script, so that every node's admissions together keep every limit.

The same rules, line for line, as `Counter` (the property-based tests in
tests/unit/test_concurrency.py run the same cases against both). Keys, per account and
region ("scope", in braces so that one scope's keys share a hash slot):

    lamina:{S}:account      limit floor burst window rate  (the limits)
                            rt pu ui inf                    (Σ reserved, Σ provisioned of
                                                             unreserved functions, unreserved
                                                             and all leases in flight)
                            mx mxu                          (the highest inf and ui since
                                                             the gauges' last sample)
                            t:<reason>                      (throttles)
    lamina:{S}:fn:<name>    r p pr od pb pi si             (reserved — absent: none —,
                                                             provisioned, ready, on-demand
                                                             and provisioned in flight,
                                                             provisioned and spillover
                                                             invocations) st su (scaling
                                                             bucket) qc qt qu (request bucket)
                                                             mx mxp (highest od+pb and pb
                                                             since the gauges' last sample)
    lamina:{S}:fns          the scope's function names
    lamina:{S}:node:<id>    "<name> <R|U|P>" → leases the node holds
    lamina:scopes           every scope
    lamina:nodes            node id → when its leases expire (ms, Redis time)
    lamina:node:<id>        what the node says of itself (name, address, environments)
    lamina:node:<id>:scopes the scopes it holds leases in
    lamina:meta             born (ms), grace_until (ms) after Redis lost its state
    lamina:gauges           the node that samples the cluster's gauges (a short lease)

Leases carry their node: a node that stops heartbeating has its leases taken back once
they expire, by the next heartbeat of any node or by the next admission that would
otherwise be refused.
"""

from __future__ import annotations

# Replies: the first element says what happened.
GRANTED, THROTTLED, NO_SCOPE, UNKNOWN_NODE, RECOVERING, REFUSED = 1, 2, 3, 4, 5, 6

PRELUDE = r"""
local function num(v, default) if v then return tonumber(v) end return default end
local function fmt(x) return string.format('%.17g', x) end
local function redis_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function reap(node)
  local scopes = redis.call('SMEMBERS', 'lamina:node:' .. node .. ':scopes')
  for _, scope in ipairs(scopes) do
    local nkey = 'lamina:{' .. scope .. '}:node:' .. node
    local akey = 'lamina:{' .. scope .. '}:account'
    local held = redis.call('HGETALL', nkey)
    for i = 1, #held, 2 do
      local name, pool = string.match(held[i], '^(.*) (%u)$')
      local n = tonumber(held[i + 1])
      if name and n > 0 then
        local fkey = 'lamina:{' .. scope .. '}:fn:' .. name
        redis.call('HINCRBY', akey, 'inf', -n)
        if pool == 'P' then
          redis.call('HINCRBY', fkey, 'pb', -n)
        else
          redis.call('HINCRBY', fkey, 'od', -n)
          if pool == 'U' then redis.call('HINCRBY', akey, 'ui', -n) end
        end
      end
    end
    redis.call('DEL', nkey)
  end
  redis.call('DEL', 'lamina:node:' .. node .. ':scopes', 'lamina:node:' .. node)
  redis.call('ZREM', 'lamina:nodes', node)
end
-- Release `n` of this node's leases of one function from `pool` (R|U|P); a lease taken
-- back already (its node was away past the expiry) is not released twice.
local function release(akey, fkey, nkey, name, pool, n)
  local field = name .. ' ' .. pool
  local held = tonumber(redis.call('HGET', nkey, field) or '0')
  if held < n then n = held end
  if n <= 0 then return 0 end
  if held == n then redis.call('HDEL', nkey, field) else redis.call('HINCRBY', nkey, field, -n) end
  redis.call('HINCRBY', akey, 'inf', -n)
  if pool == 'P' then
    redis.call('HINCRBY', fkey, 'pb', -n)
  else
    redis.call('HINCRBY', fkey, 'od', -n)
    if pool == 'U' then redis.call('HINCRBY', akey, 'ui', -n) end
  end
  return n
end
local function release_all(akey, fkey, nkey, name, codes)
  for i = 1, #codes do release(akey, fkey, nkey, name, string.sub(codes, i, i), 1) end
end
local function reap_expired(now_ms)
  local dead = redis.call('ZRANGEBYSCORE', 'lamina:nodes', '-inf', now_ms)
  for _, node in ipairs(dead) do reap(node) end
  return #dead
end
"""

# KEYS: account, fn, node-in-scope, node scopes, fns
# ARGV: node, name, now, provisioned (0/1), new environment (0/1), spillover (0/1), scope,
# then the pools of this node's leases of the function to release first (R|U|P each): a
# release rides on the next admission rather than costing a round trip of its own.
ACQUIRE = (
    PRELUDE
    + r"""
local akey, fkey, nkey = KEYS[1], KEYS[2], KEYS[3]
local node, name, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local provisioned, new_env, spillover = ARGV[4] == '1', ARGV[5] == '1', ARGV[6] == '1'
if ARGV[8] and ARGV[8] ~= '' then release_all(akey, fkey, nkey, name, ARGV[8]) end
local grace = redis.call('HGET', 'lamina:meta', 'grace_until')
if grace and redis_ms() < tonumber(grace) then return {5} end
if not redis.call('ZSCORE', 'lamina:nodes', node) then return {4} end
-- `a`, `f`: the account's and the function's fields as decide() read them; `busy`: the
-- function's executions (od + pb) with this one. New peaks are kept for the gauges.
local function grant(pool, a, f, busy)
  if redis.call('HINCRBY', nkey, name .. ' ' .. pool, 1) == 1 then
    redis.call('SADD', KEYS[4], ARGV[7])
    redis.call('SADD', KEYS[5], name)
  end
  local inf
  if pool == 'U' then
    local ui = num(a[8], 0) + 1
    inf = num(a[9], 0) + 1
    redis.call('HSET', akey, 'inf', inf, 'ui', ui)
    if ui > num(a[11], 0) then redis.call('HSET', akey, 'mxu', ui) end
  else
    inf = redis.call('HINCRBY', akey, 'inf', 1)
  end
  if inf > num(a[10], 0) then redis.call('HSET', akey, 'mx', inf) end
  if busy > num(f[11], 0) then redis.call('HSET', fkey, 'mx', busy) end
  return {1, pool}
end
local function throttle(reason, retry)
  redis.call('HINCRBY', fkey, 't:' .. reason, 1)
  redis.call('HINCRBY', akey, 't:' .. reason, 1)
  return {2, reason, fmt(retry)}
end
local function decide()
  local a = redis.call('HMGET', akey, 'limit', 'floor', 'burst', 'window', 'rate', 'rt', 'pu',
    'ui', 'inf', 'mx', 'mxu')
  if not a[1] then return {3} end
  local f = redis.call('HMGET', fkey, 'r', 'p', 'pr', 'od', 'pb', 'st', 'su', 'qc', 'qt', 'qu',
    'mx', 'mxp')
  local reserved, prov, ready = num(f[1], nil), num(f[2], 0), num(f[3], 0)
  local od, pb = num(f[4], 0), num(f[5], 0)
  local spill = spillover
  if provisioned then
    if pb < ready then
      redis.call('HINCRBY', fkey, 'pb', 1)
      redis.call('HINCRBY', fkey, 'pi', 1)
      if pb + 1 > num(f[12], 0) then redis.call('HSET', fkey, 'mxp', pb + 1) end
      return grant('P', a, f, od + pb + 1)
    end
    spill = true
  end
  local limit, rate_per_unit = tonumber(a[1]), tonumber(a[5])
  local pool
  if reserved then
    if od >= reserved - prov then return {0, 'R', 1.0} end
    pool = 'R'
  else
    if num(a[8], 0) >= limit - num(a[6], 0) - num(a[7], 0) then return {0, 'A', 1.0} end
    pool = 'U'
  end
  if rate_per_unit > 0 then
    local cap, tokens, updated = num(f[8], nil), nil, nil
    if not cap then
      local units = reserved or limit
      if units < 1 then units = 1 end
      cap = units * rate_per_unit
      tokens, updated = cap, now
      redis.call('HSET', fkey, 'qc', fmt(cap))
    else
      tokens, updated = tonumber(f[9]), tonumber(f[10])
    end
    if now > updated then
      tokens = math.min(cap, tokens + (now - updated) * cap)
      updated = now
    end
    if tokens >= 1.0 then
      tokens = tokens - 1.0
      redis.call('HSET', fkey, 'qt', fmt(tokens), 'qu', fmt(updated))
    else
      redis.call('HSET', fkey, 'qt', fmt(tokens), 'qu', fmt(updated))
      return throttle(reserved and 'RR' or 'FR', (cap > 0) and (1.0 - tokens) / cap or 0.0)
    end
  end
  if new_env then
    local burst, window = tonumber(a[3]), tonumber(a[4])
    local rate = burst / window
    local tokens, updated = num(f[6], nil), num(f[7], nil)
    if not tokens then tokens, updated = burst, now end
    if now > updated then
      tokens = math.min(burst, tokens + (now - updated) * rate)
      updated = now
    end
    if tokens >= 1.0 then
      redis.call('HSET', fkey, 'st', fmt(tokens - 1.0), 'su', fmt(updated))
    else
      redis.call('HSET', fkey, 'st', fmt(tokens), 'su', fmt(updated))
      local wait = 0.0
      if rate > 0 then wait = (1.0 - tokens) / rate end
      return throttle(reserved and 'R' or 'A', wait)
    end
  end
  redis.call('HINCRBY', fkey, 'od', 1)
  if spill then redis.call('HINCRBY', fkey, 'si', 1) end
  return grant(pool, a, f, od + pb + 1)
end
local answer = decide()
if answer[1] == 0 then
  -- A concurrency refusal: first take back the leases of nodes that stopped heartbeating.
  if reap_expired(redis_ms()) > 0 then answer = decide() end
  if answer[1] == 0 then return throttle(answer[2], answer[3]) end
end
return answer
"""
)

# KEYS: account, fn, node-in-scope.  ARGV: name, pools of the leases released (R|U|P each)
RELEASE = (
    PRELUDE
    + r"""
release_all(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
return 1
"""
)

# Settings.  KEYS: account, fn, fns.  ARGV: name, value ('' = none), force (1: no checks;
# what the store already holds, put back after Redis lost it).
SET_RESERVED = r"""
local akey, fkey = KEYS[1], KEYS[2]
local a = redis.call('HMGET', akey, 'limit', 'floor', 'rt', 'pu')
if not a[1] then return {3} end
redis.call('SADD', KEYS[3], ARGV[1])
local f = redis.call('HMGET', fkey, 'r', 'p')
local old, prov = tonumber(f[1]), tonumber(f[2] or '0')
local new = tonumber(ARGV[2])
local limit, floor = tonumber(a[1]), tonumber(a[2])
local rt, pu = tonumber(a[3] or '0'), tonumber(a[4] or '0')
if new and ARGV[3] ~= '1' then
  if new < prov then
    return {6, ' ReservedConcurrentExecutions  ' .. new .. ' should not be lower than ' ..
      "function's total provisioned concurrency [" .. prov .. '].', 0}
  end
  local others = rt - (old or 0)
  local prov_unreserved = pu
  if not old then prov_unreserved = pu - prov end
  if limit - others - prov_unreserved - new < floor then
    return {6, "Specified ReservedConcurrentExecutions for function decreases account's " ..
      'UnreservedConcurrentExecution below its minimum value of [' .. floor .. '].', 0}
  end
end
if not old and new then
  redis.call('HINCRBY', akey, 'pu', 0 - prov)
elseif old and not new then
  redis.call('HINCRBY', akey, 'pu', prov)
end
redis.call('HINCRBY', akey, 'rt', (new or 0) - (old or 0))
if new then redis.call('HSET', fkey, 'r', new) else redis.call('HDEL', fkey, 'r') end
redis.call('HDEL', fkey, 'qc', 'qt', 'qu')  -- its request rate follows its concurrency
return {1}
"""

SET_PROVISIONED = r"""
local akey, fkey = KEYS[1], KEYS[2]
local a = redis.call('HMGET', akey, 'limit', 'floor', 'rt', 'pu')
if not a[1] then return {3} end
redis.call('SADD', KEYS[3], ARGV[1])
local f = redis.call('HMGET', fkey, 'r', 'p', 'pr')
local reserved, prov, ready = tonumber(f[1]), tonumber(f[2] or '0'), tonumber(f[3] or '0')
local total = tonumber(ARGV[2])
local force = ARGV[3] == '1'
if reserved then
  if total > reserved and not force then
    return {6, 'Requested Provisioned Concurrency should not be greater than the ' ..
      'reservedConcurrentExecution for function', 1}
  end
else
  local limit, floor = tonumber(a[1]), tonumber(a[2])
  local pool_without = limit - tonumber(a[3] or '0') - tonumber(a[4] or '0') + prov
  if not force then
    if total > pool_without then
      return {6, 'Specified ConcurrentExecutions for function is greater than account' ..
        "'s unreserved concurrency [" .. pool_without .. '].', 0}
    end
    if pool_without - total < floor then
      return {6, "Specified ConcurrentExecutions for function decreases account's " ..
        'UnreservedConcurrentExecution below its minimum value of [' .. floor .. '].', 0}
    end
  end
  redis.call('HINCRBY', akey, 'pu', total - prov)
end
redis.call('HSET', fkey, 'p', total, 'pr', math.min(ready, total))
return {1}
"""

# KEYS: fn.  ARGV: ready, node. Each node's ready environments are a field of their own
# (pr:<node>); 'pr' is their sum over live nodes (those of dead nodes are dropped).
SET_READY = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], 'pr:' .. ARGV[2], ARGV[1])
local fields = redis.call('HGETALL', KEYS[1])
local sum, p = 0, 0
for i = 1, #fields, 2 do
  local node = string.match(fields[i], '^pr:(.*)$')
  if node then
    local alive = redis.call('ZSCORE', 'lamina:nodes', node)
    if alive and tonumber(alive) > now then
      sum = sum + tonumber(fields[i + 1])
    else
      redis.call('HDEL', KEYS[1], fields[i])
    end
  elseif fields[i] == 'p' then
    p = tonumber(fields[i + 1])
  end
end
local ready = math.max(0, math.min(sum, p))
redis.call('HSET', KEYS[1], 'pr', ready)
return ready
"""

# KEYS: account, scopes, fns.  ARGV: scope, limit, floor, burst, window, rate, then
# name, reserved ('' = none), provisioned triples. A scope Redis does not know yet (or no
# longer: it lost its state) gets its limits and every function's settings in one step.
INIT_SCOPE = r"""
if redis.call('HEXISTS', KEYS[1], 'limit') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'limit', ARGV[2], 'floor', ARGV[3], 'burst', ARGV[4],
  'window', ARGV[5], 'rate', ARGV[6])
redis.call('SADD', KEYS[2], ARGV[1])
local rt, pu = 0, 0
for i = 7, #ARGV, 3 do
  local name, reserved, prov = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local fkey = 'lamina:{' .. ARGV[1] .. '}:fn:' .. name
  redis.call('SADD', KEYS[3], name)
  redis.call('HSET', fkey, 'p', prov)
  if reserved then
    redis.call('HSET', fkey, 'r', reserved)
    rt = rt + reserved
  else
    redis.call('HDEL', fkey, 'r')
    pu = pu + prov
  end
end
redis.call('HINCRBY', KEYS[1], 'rt', rt)
redis.call('HINCRBY', KEYS[1], 'pu', pu)
return 1
"""

# KEYS: account.  ARGV: limit, floor, burst, window, rate (an account's limits changed).
SET_LIMITS = r"""
if redis.call('HEXISTS', KEYS[1], 'limit') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'limit', ARGV[1], 'floor', ARGV[2], 'burst', ARGV[3],
  'window', ARGV[4], 'rate', ARGV[5])
return 1
"""

# KEYS: nodes, node info, meta.  ARGV: node, expiry ms, grace ms, re-registering (0/1),
# then field, value pairs describing the node.
HEARTBEAT = (
    PRELUDE
    + r"""
local now = redis_ms()
local reaped = reap_expired(now)
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
local grace = 0
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('HSET', KEYS[3], 'born', now)
  if ARGV[4] == '1' then
    -- Redis lost its state while nodes held leases: admit nothing until every live node
    -- has heartbeated (and so put its leases back).
    redis.call('HSET', KEYS[3], 'grace_until', now + tonumber(ARGV[3]))
    grace = 1
  end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('DEL', KEYS[2])
if #ARGV > 4 then redis.call('HSET', KEYS[2], unpack(ARGV, 5)) end
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
if known then known = 1 else known = 0 end
return {known, reaped, grace}
"""
)

# Put a node's leases back (after Redis lost them, or took them back while the node could
# not heartbeat). KEYS: node scopes.  ARGV: node, then scope, name, pool, count quadruples.
RESTORE = r"""
local node = ARGV[1]
for i = 2, #ARGV, 4 do
  local scope, name, pool, n = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local nkey = 'lamina:{' .. scope .. '}:node:' .. node
  local akey = 'lamina:{' .. scope .. '}:account'
  local fkey = 'lamina:{' .. scope .. '}:fn:' .. name
  local had = tonumber(redis.call('HGET', nkey, name .. ' ' .. pool) or '0')
  local add = n - had
  if add > 0 then
    redis.call('HINCRBY', nkey, name .. ' ' .. pool, add)
    redis.call('SADD', KEYS[1], scope)
    redis.call('HINCRBY', akey, 'inf', add)
    if pool == 'P' then
      redis.call('HINCRBY', fkey, 'pb', add)
    else
      redis.call('HINCRBY', fkey, 'od', add)
      if pool == 'U' then redis.call('HINCRBY', akey, 'ui', add) end
    end
  end
end
return 1
"""

# A node leaving cleanly: its leases go at once. ARGV: node
LEAVE = (
    PRELUDE
    + r"""
reap(ARGV[1])
return 1
"""
)

# The cluster's concurrency gauges, sampled by one node at a time: the holder of a short
# lease, taken when free and renewed by each sample. Every scope's figures and the peaks
# since the previous sample, which start anew from what is in flight now.
# KEYS: the gauges' lease, scopes.  ARGV: node, lease ms.
# Reply: {0} (another node samples) or {1, scope entries...}; an entry: scope, limit, rt,
# pu, ui, inf, peak inf, peak ui, {{name, od+pb, its peak, p, pb, its peak}, ...}.
SAMPLE = (
    PRELUDE
    + r"""
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return {0} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
local found = {1}
for _, scope in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local akey = 'lamina:{' .. scope .. '}:account'
  local a = redis.call('HMGET', akey, 'limit', 'rt', 'pu', 'ui', 'inf', 'mx', 'mxu')
  if a[1] then
    local ui, inf = num(a[4], 0), num(a[5], 0)
    redis.call('HSET', akey, 'mx', inf, 'mxu', ui)
    local fns = {}
    for _, name in ipairs(redis.call('SMEMBERS', 'lamina:{' .. scope .. '}:fns')) do
      local fkey = 'lamina:{' .. scope .. '}:fn:' .. name
      local f = redis.call('HMGET', fkey, 'od', 'pb', 'p', 'mx', 'mxp')
      local pb = num(f[2], 0)
      local busy = num(f[1], 0) + pb
      local peak, ppeak = math.max(busy, num(f[4], 0)), math.max(pb, num(f[5], 0))
      if peak > 0 or num(f[3], 0) > 0 then
        fns[#fns + 1] = {name, busy, peak, num(f[3], 0), pb, ppeak}
      end
      -- The next peaks start from what is in flight now (absent fields count as 0).
      if num(f[4], 0) ~= busy or num(f[5], 0) ~= pb then
        redis.call('HSET', fkey, 'mx', busy, 'mxp', pb)
      end
    end
    found[#found + 1] = {scope, num(a[1], 0), num(a[2], 0), num(a[3], 0), ui, inf,
      math.max(inf, num(a[6], 0)), math.max(ui, num(a[7], 0)), fns}
  end
end
return found
"""
)
