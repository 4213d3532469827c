//! The Lua scripts: appending (store, trim and announce in one step, with the idempotency and
//! daily-quota checks), reading after a cursor, and acquiring a connection permit.

use super::*;

/// Lua helpers shared by both scripts. Stream ids are compared numerically; milliseconds fit a
/// Lua number (a double) exactly.
pub(super) const LUA_COMMON: &str = r#"
local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function id_lt(a, b)
  local am, as = id_parts(a)
  local bm, bs = id_parts(b)
  return am < bm or (am == bm and as < bs)
end
-- Drops entries older than ttl_ms before now_ms; returns the newest dropped id, or nil.
local function trim_age(stream, ttl_ms, now_ms)
  local minid = string.format('%.0f', now_ms - ttl_ms) .. '-0'
  local old = redis.call('XREVRANGE', stream, '(' .. minid, '-', 'COUNT', 1)
  if #old == 0 then return nil end
  redis.call('XTRIM', stream, 'MINID', minid)
  return old[1][1]
end
"#;

/// Appends one event; returns {epoch, id}. `fresh_epoch` starts a new life when the meta hash
/// is missing (never written, expired, or lost with Redis's data).
pub(super) const LUA_APPEND_ONE: &str = r#"
local function append_one(stream, meta, announce, max_len, ttl_ms, fresh_epoch, etype, data, stream_exp, meta_exp)
  local epoch = redis.call('HGET', meta, 'epoch')
  if not epoch then
    -- A stream without its meta belongs to no known life: start the new life empty.
    epoch = fresh_epoch
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'epoch', epoch)
  end
  local id = redis.call('XADD', stream, '*', 'e', etype, 'd', data)
  local trimmed = nil
  max_len = tonumber(max_len)
  local len = redis.call('XLEN', stream)
  if len > max_len then
    local dropped = redis.call('XRANGE', stream, '-', '+', 'COUNT', len - max_len)
    trimmed = dropped[#dropped][1]
    redis.call('XTRIM', stream, 'MAXLEN', max_len)
  end
  local ms = id_parts(id)
  trimmed = trim_age(stream, tonumber(ttl_ms), ms) or trimmed
  if trimmed then redis.call('HSET', meta, 'trimmed', trimmed) end
  redis.call('HSET', meta, 'last', id, 'ttl', ttl_ms)
  redis.call('EXPIRE', stream, stream_exp)
  redis.call('EXPIRE', meta, meta_exp)
  redis.call('PUBLISH', announce, epoch .. '\n' .. id .. '\n' .. etype .. '\n' .. data)
  return {epoch, id}
end
"#;

/// KEYS: idempotency key, daily message counter, then stream and meta of each event. ARGV:
/// fingerprint ('' for none), idempotency TTL (s), event count, daily limit ('' for none), then
/// per event: announce channel, max_len, ttl_ms, fresh epoch, type, data, stream expiry (s),
/// meta expiry (s).
/// Returns {'fresh' | 'repeat' | 'conflict' | 'quota', 'epoch:id,epoch:id,...'}.
pub(super) const LUA_APPEND: &str = r#"
local idem, fp = KEYS[1], ARGV[1]
if fp ~= '' then
  local prev = redis.call('GET', idem)
  if prev then
    local nl = string.find(prev, '\n', 1, true)
    if nl and string.sub(prev, 1, nl - 1) == fp then
      return {'repeat', string.sub(prev, nl + 1)}
    end
    return {'conflict', ''}
  end
end
local n = tonumber(ARGV[3])
if ARGV[4] ~= '' then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used + n > tonumber(ARGV[4]) then return {'quota', ''} end
  redis.call('INCRBY', KEYS[2], n)
  redis.call('EXPIRE', KEYS[2], 172800)
end
local out = {}
for i = 0, n - 1 do
  local a = 4 + i * 8
  local r = append_one(KEYS[3 + i * 2], KEYS[4 + i * 2], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
    ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8])
  out[#out + 1] = r[1] .. ':' .. r[2]
end
local joined = table.concat(out, ',')
if fp ~= '' then redis.call('SET', idem, fp .. '\n' .. joined, 'EX', ARGV[2]) end
return {'fresh', joined}
"#;

/// KEYS: stream, meta. ARGV: after id ('' for the start), the cursor's epoch, limit.
/// Returns {epoch or '', gap ('' | 'truncated' | 'invalid'), entries}.
pub(super) const LUA_READ: &str = r#"
local stream, meta = KEYS[1], KEYS[2]
local m = redis.call('HMGET', meta, 'epoch', 'last', 'trimmed', 'ttl')
local epoch, last, trimmed, ttl = m[1], m[2], m[3], m[4]
local from, gap = ARGV[1], ''
if not epoch then
  if from ~= '' then gap = 'invalid' end
  return {'', gap, {}}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local aged = trim_age(stream, tonumber(ttl), now)
if aged then
  trimmed = aged
  redis.call('HSET', meta, 'trimmed', aged)
end
if redis.call('EXISTS', stream) == 0 then trimmed = last end
if from ~= '' then
  if ARGV[2] ~= epoch or id_lt(last, from) then
    gap, from = 'invalid', ''
  elseif trimmed and id_lt(from, trimmed) then
    gap, from = 'truncated', ''
  end
end
local entries
if from == '' then
  entries = redis.call('XRANGE', stream, '-', '+', 'COUNT', ARGV[3])
else
  entries = redis.call('XRANGE', stream, '(' .. from, '+', 'COUNT', ARGV[3])
end
return {epoch, gap, entries}
"#;

pub(super) fn script(body: &str) -> Script {
    Script::new(&format!("{LUA_COMMON}{LUA_APPEND_ONE}{body}"))
}

/// KEYS: the tenant's connection hash (process id → count). ARGV: this process's id, the limit,
/// the alive-key prefix, the alive TTL (s). Counts of processes that stopped proving they are
/// alive are dropped; the acquiring process proves itself alive here too, so its first counts
/// never wait for its first report. Returns the new total, or -1 when the limit is reached.
pub(super) const LUA_ACQUIRE: &str = r#"
redis.call('SET', ARGV[3] .. ARGV[1], 1, 'EX', ARGV[4])
local h = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #h, 2 do
  if h[i] == ARGV[1] or redis.call('EXISTS', ARGV[3] .. h[i]) == 1 then
    total = total + tonumber(h[i + 1])
  else
    redis.call('HDEL', KEYS[1], h[i])
  end
end
if total >= tonumber(ARGV[2]) then return -1 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], 86400)
return total + 1
"#;

pub(super) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(LUA_ACQUIRE));
pub(super) static APPEND: LazyLock<Script> = LazyLock::new(|| script(LUA_APPEND));
pub(super) static READ: LazyLock<Script> = LazyLock::new(|| script(LUA_READ));
