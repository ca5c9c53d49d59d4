-- GCRA with a calendar quota, in one atomic step.
-- KEYS[1]: the rate state (the theoretical arrival time, in microseconds).
-- KEYS[2]: the quota counter's prefix; the period id is appended.
-- ARGV: now_us (-1: the server's TIME), interval_us, burst, want, min,
--       max_wait_us, quota_limit, quota_period (0 none, 1 day, 2 month),
--       peek (1: read only).
-- Returns {granted, wait_us, remaining, quota_used, quota_limit,
--          quota_reset_s, full_in_us, now_us}.
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local min = tonumber(ARGV[5])
local max_wait = tonumber(ARGV[6])
local qlimit = tonumber(ARGV[7])
local qperiod = tonumber(ARGV[8])
local peek = tonumber(ARGV[9])
local tau = interval * burst

-- A stored number, or nil for a missing key, another type, or garbage.
local function num(key)
  local v = redis.pcall('GET', key)
  if type(v) ~= 'string' then return nil end
  local n = tonumber(v)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then return nil end
  return n
end

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = math.floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local qkey, used, reset = nil, 0, 0
if qperiod > 0 then
  local day = math.floor(now / 86400000000)
  local id
  if qperiod == 1 then
    id = day
    reset = (day + 1) * 86400
  else
    local z = day + 719468
    local era = math.floor(z / 146097)
    local doe = z - era * 146097
    local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
    local y = yoe + era * 400
    local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
    local mp = math.floor((5 * doy + 2) / 153)
    local m = mp < 10 and mp + 3 or mp - 9
    if m <= 2 then y = y + 1 end
    id = y * 100 + m
    local ny, nm = y, m + 1
    if nm > 12 then nm = 1; ny = ny + 1 end
    reset = days_from_civil(ny, nm, 1) * 86400
  end
  qkey = KEYS[2] .. ':' .. string.format('%d', id)
  used = num(qkey) or 0
  if used < 0 then used = 0 end
end

local tat = num(KEYS[1])
if tat == nil or tat < now or tat > now + tau + max_wait + interval then tat = now end

local avail = math.floor((now + tau - tat) / interval)
if avail < 0 then avail = 0 end
local qleft = -1
if qperiod > 0 then
  qleft = qlimit - used
  if qleft < 0 then qleft = 0 end
end
if peek == 1 then
  return {0, 0, avail, used, qlimit, reset, tat - now, now}
end

local k = want
if qleft >= 0 and want > min then
  -- Leases shrink as the quota nears its end.
  local share = math.floor(qleft / 16)
  if share < min then share = min end
  if share < k then k = share end
end
if avail < k then k = avail end
if qleft >= 0 and qleft < k then k = qleft end

local wait = 0
if k < min then
  if qleft >= 0 and qleft < min then
    return {0, reset * 1000000 - now, avail, used, qlimit, reset, tat - now, now}
  end
  wait = tat + interval * min - tau - now
  if wait > max_wait or min > burst then
    return {0, wait, avail, used, qlimit, reset, tat - now, now}
  end
  k = min
end

local new_tat = tat + interval * k
-- Expires once the allowance is full again, with a second's margin for
-- a caller's clock that runs apart from the server's.
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
if qkey then
  used = used + k
  redis.call('SET', qkey, string.format('%.0f', used), 'PX', math.ceil((reset * 1000000 - now) / 1000) + 3600000)
end
local remaining = math.floor((now + tau - new_tat) / interval)
if remaining < 0 then remaining = 0 end
return {k, wait, remaining, used, qlimit, reset, new_tat - now, now}
