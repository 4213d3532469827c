//! The Lua scripts: appending (store, trim and announce in one step, with the idempotency and
//! daily-quota checks), reading after a cursor, and acquiring a connection permit; and for Redis
//! Cluster, where one script may only touch one slot, the append split in steps (see
//! `README.md`): reserve on the tenant's slot, append on each channel's, then commit, or fence
//! and refund.

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
/// is missing (never written, expired, or lost with Redis's data). `publish` is `PUBLISH` on one
/// Redis and `SPUBLISH` (to the channel's shard) on Redis Cluster. `trace` is the publish's W3C
/// `traceparent`, or '' when it was not sampled: it rides on the announcement's type line, after
/// a space (which no event type contains), so that an untraced announcement is byte for byte
/// what it always was.
pub(super) const LUA_APPEND_ONE: &str = r#"
local function append_one(publish, stream, meta, announce, max_len, ttl_ms, fresh_epoch, etype, data, stream_exp, meta_exp, trace)
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
  local head = etype
  if trace ~= '' then head = etype .. ' ' .. trace end
  redis.call(publish, announce, epoch .. '\n' .. id .. '\n' .. head .. '\n' .. data)
  return {epoch, id}
end
"#;

/// KEYS: idempotency key, daily message counter, then stream and meta of each event. ARGV:
/// fingerprint ('' for none), idempotency TTL (s), event count, daily limit ('' for none), then
/// per event: announce channel, max_len, ttl_ms, fresh epoch, type, data, stream expiry (s),
/// meta expiry (s), traceparent ('' for none).
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
  local a = 4 + i * 9
  local r = append_one('PUBLISH', KEYS[3 + i * 2], KEYS[4 + i * 2], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
    ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], ARGV[a + 9])
  out[#out + 1] = r[1] .. ':' .. r[2]
end
local joined = table.concat(out, ',')
if fp ~= '' then redis.call('SET', idem, fp .. '\n' .. joined, 'EX', ARGV[2]) end
return {'fresh', joined}
"#;

/// KEYS: stream, meta. ARGV: after id ('' for the start), the cursor's epoch, limit, and the most
/// bytes of field values a page carries (its first entry always comes).
/// Returns {epoch or '', gap ('' | 'truncated' | 'invalid'), entries, 1 when the page stopped at
/// a limit else 0}.
pub(super) const LUA_READ: &str = r#"
local stream, meta = KEYS[1], KEYS[2]
local m = redis.call('HMGET', meta, 'epoch', 'last', 'trimmed', 'ttl')
local epoch, last, trimmed, ttl = m[1], m[2], m[3], m[4]
local from, gap = ARGV[1], ''
if not epoch then
  if from ~= '' then gap = 'invalid' end
  return {'', gap, {}, 0}
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
local budget, bytes, full = tonumber(ARGV[4]), 0, 0
if #entries >= tonumber(ARGV[3]) then full = 1 end
for i, entry in ipairs(entries) do
  local fields = entry[2]
  for j = 2, #fields, 2 do bytes = bytes + #fields[j] end
  if i > 1 and bytes > budget then
    for k = #entries, i, -1 do entries[k] = nil end
    full = 1
    break
  end
end
return {epoch, gap, entries, full}
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

/// Redis Cluster, on the tenant's slot. KEYS: idempotency key, daily message counter. ARGV:
/// fingerprint ('' for none), event count, daily limit ('' for none), this append's token, the
/// idempotency TTL (s). A first attempt charges the quota and records `pend\nfp\ntoken`; a
/// repeat of a pending attempt resumes it with its token, charging nothing.
/// Returns {'reserved' | 'resume', token} or {'repeat', cursors} or {'conflict' | 'quota', ''}.
pub(super) const LUA_RESERVE: &str = r#"
local fp = ARGV[1]
if fp ~= '' then
  local prev = redis.call('GET', KEYS[1])
  if prev then
    local kind, pfp, rest = string.match(prev, '^(%a+)\n([^\n]*)\n(.*)$')
    if pfp ~= fp then return {'conflict', ''} end
    if kind == 'done' then return {'repeat', rest} end
    return {'resume', rest}
  end
end
if ARGV[3] ~= '' then
  local used = tonumber(redis.call('GET', KEYS[2]) or '0')
  if used + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return {'quota', ''} end
  redis.call('INCRBY', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[2], 172800)
end
if fp ~= '' then redis.call('SET', KEYS[1], 'pend\n' .. fp .. '\n' .. ARGV[4], 'EX', ARGV[5]) end
return {'reserved', ARGV[4]}
"#;

/// Redis Cluster, on one channel's slot: the events of one append for this channel, once per
/// token. KEYS: stream, meta, the token's key. ARGV: token TTL (s), event count, then per event
/// the nine arguments of `append_one`. A token seen before answers what it did then (or that
/// it was fenced) and appends nothing.
/// Returns {'fresh' | 'applied', 'epoch:id,...'} or {'fenced', ''}.
pub(super) const LUA_APPEND_CHANNEL: &str = r#"
local seen = redis.call('GET', KEYS[3])
if seen == 'fenced' then return {'fenced', ''} end
if seen then return {'applied', seen} end
local out = {}
for i = 0, tonumber(ARGV[2]) - 1 do
  local a = 2 + i * 9
  local r = append_one('SPUBLISH', KEYS[1], KEYS[2], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
    ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7], ARGV[a + 8], ARGV[a + 9])
  out[#out + 1] = r[1] .. ':' .. r[2]
end
local joined = table.concat(out, ',')
redis.call('SET', KEYS[3], joined, 'EX', ARGV[1])
return {'fresh', joined}
"#;

/// Redis Cluster, on one channel's slot: makes sure a token's append never happens from now on,
/// unless it already has. KEYS: the token's key. ARGV: its TTL (s).
/// Returns 'fenced', or the cursors the append stored.
pub(super) const LUA_FENCE: &str = r#"
redis.call('SET', KEYS[1], 'fenced', 'NX', 'EX', ARGV[1])
return redis.call('GET', KEYS[1])
"#;

/// Redis Cluster, on the tenant's slot: gives back the charge of an append that stored nothing.
/// KEYS: idempotency key, daily message counter. ARGV: fingerprint ('' for none), token, event
/// count, whether a quota was charged ('1' or ''). With a key, only the call that removes the
/// pending record refunds, so racing attempts of one append refund once.
pub(super) const LUA_REFUND: &str = r#"
if ARGV[1] ~= '' then
  if redis.call('GET', KEYS[1]) ~= 'pend\n' .. ARGV[1] .. '\n' .. ARGV[2] then return 0 end
  redis.call('DEL', KEYS[1])
end
if ARGV[4] ~= '' then redis.call('DECRBY', KEYS[2], ARGV[3]) end
return 1
"#;

/// Redis Cluster, on the tenant's slot: an append is complete; repeats answer its cursors.
/// KEYS: idempotency key. ARGV: fingerprint, token, cursors, TTL (s).
pub(super) const LUA_COMMIT: &str = r#"
local prev = redis.call('GET', KEYS[1])
if prev == 'pend\n' .. ARGV[1] .. '\n' .. ARGV[2] then
  redis.call('SET', KEYS[1], 'done\n' .. ARGV[1] .. '\n' .. ARGV[3], 'EX', ARGV[4])
end
return 1
"#;

/// Redis Cluster, on the tenant's slot: `LUA_ACQUIRE` where liveness cannot be read from other
/// slots. The tenant's hash holds, next to each process's count, `@<process>`: until when (ms,
/// Redis time) that process counts as alive; it is renewed by every acquire and report
/// (`LUA_REPORT_CONNECTIONS`). KEYS: the hash. ARGV: process id, limit, alive TTL (s).
pub(super) const LUA_ACQUIRE_TAGGED: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], '@' .. ARGV[1], now + tonumber(ARGV[3]) * 1000)
local h = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #h, 2 do
  local p = h[i]
  if string.sub(p, 1, 1) ~= '@' then
    local until_ms = tonumber(redis.call('HGET', KEYS[1], '@' .. p) or '0')
    if p == ARGV[1] or until_ms > now then
      total = total + tonumber(h[i + 1])
    else
      redis.call('HDEL', KEYS[1], p, '@' .. p)
    end
  end
end
if total >= tonumber(ARGV[2]) then return -1 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('EXPIRE', KEYS[1], 86400)
return total + 1
"#;

/// Redis Cluster: a process's connection count for one tenant and its liveness in that tenant's
/// hash (see `LUA_ACQUIRE_TAGGED`); a count of 0 removes both. KEYS: the hash. ARGV: process
/// id, count, alive TTL (s).
pub(super) const LUA_REPORT_CONNECTIONS: &str = r#"
if ARGV[2] == '0' then
  redis.call('HDEL', KEYS[1], ARGV[1], '@' .. ARGV[1])
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], '@' .. ARGV[1], now + tonumber(ARGV[3]) * 1000)
redis.call('EXPIRE', KEYS[1], 86400)
return 1
"#;

pub(super) static RESERVE: LazyLock<Script> = LazyLock::new(|| Script::new(LUA_RESERVE));
pub(super) static APPEND_CHANNEL: LazyLock<Script> = LazyLock::new(|| script(LUA_APPEND_CHANNEL));
pub(super) static FENCE: LazyLock<Script> = LazyLock::new(|| Script::new(LUA_FENCE));
pub(super) static REFUND: LazyLock<Script> = LazyLock::new(|| Script::new(LUA_REFUND));
pub(super) static COMMIT: LazyLock<Script> = LazyLock::new(|| Script::new(LUA_COMMIT));
pub(super) static ACQUIRE_TAGGED: LazyLock<Script> =
    LazyLock::new(|| Script::new(LUA_ACQUIRE_TAGGED));
pub(super) static REPORT_CONNECTIONS: LazyLock<Script> =
    LazyLock::new(|| Script::new(LUA_REPORT_CONNECTIONS));
pub(super) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| Script::new(LUA_ACQUIRE));
pub(super) static APPEND: LazyLock<Script> = LazyLock::new(|| script(LUA_APPEND));
pub(super) static READ: LazyLock<Script> = LazyLock::new(|| script(LUA_READ));
