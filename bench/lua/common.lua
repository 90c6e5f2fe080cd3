-- Shared helpers for the wrk scripts in this directory (loaded with require "common").
--
-- What it provides:
--   * a base64 encoder (etcd's JSON gateway wants base64 keys and values);
--   * random_value(n): n random characters from the base64 alphabet (JSON-safe, and
--     different for every key so storage-level compression cannot shrink them), cut from a
--     48 KiB pool of random characters drawn once per thread, each value at another place;
--     random_value_b64(n): the base64 of one;
--   * status accounting: response() counts every answer that is not a 200 (and, for
--     reads, every 200 whose body lacks the expected field: a "miss"), and done()
--     prints one machine-readable BENCHRESULT line that bench/single_node.sh parses.
--
-- wrk runs one Lua state per thread plus a main one; counters live in each thread's
-- globals and done() (main state) sums them through thread:get().

local M = {}

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

function M.b64(s)
  local out, n = {}, #s
  for i = 1, n, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local c1 = math.floor(v / 262144) % 64
    local c2 = math.floor(v / 4096) % 64
    local c3 = math.floor(v / 64) % 64
    local c4 = v % 64
    out[#out + 1] = B64:sub(c1 + 1, c1 + 1) .. B64:sub(c2 + 1, c2 + 1)
      .. (b and B64:sub(c3 + 1, c3 + 1) or "=")
      .. (c and B64:sub(c4 + 1, c4 + 1) or "=")
  end
  return table.concat(out)
end

-- Random values are cut from one pool of random characters per thread, built at the first
-- call (after init has seeded the generator): drawing every character anew cost each
-- thread about a third of a second of init for 10,000 keys of 1 KiB (and base64-encoding
-- each etcd value 1.4 s). wrk runs each thread's init in its main thread before starting
-- that thread, and starts its clock once all are started, so the first thread's requests
-- during the others' init were counted without their time.
local POOL_BYTES = 3 * 16384
-- The longest piece taken from one place in the pool: a multiple of 3, so the base64 of a
-- value is its pieces' base64 put together.
local PIECE = 4095
local pool, pool_b64

local function ensure_pool()
  if pool then return end
  local t = {}
  for i = 1, POOL_BYTES do
    local r = math.random(1, 64)
    t[i] = B64:sub(r, r)
  end
  pool = table.concat(t)
  pool_b64 = M.b64(pool)
end

-- Successive pieces start STEP places (of 3 characters) apart, from a random first place: a
-- prime above the pool's POOL_BYTES / 3 places, so it shares no factor with their number and
-- no place is taken twice before every one has been (10,000 values of 1 KiB take 10,000 of
-- the 16,043 places a 1 KiB piece can start at, so each key gets a value of its own).
local STEP = 16411
local next_place

-- The pieces of a random value of n characters: {offset, length} pairs, each starting at an
-- offset of the pool that is a multiple of 3.
local function pieces(n)
  ensure_pool()
  local out, left = {}, n
  while left > 0 do
    local len = math.min(left, PIECE)
    local places = math.floor((POOL_BYTES - len) / 3) + 1
    next_place = next_place or math.random(0, places - 1)
    out[#out + 1] = { 3 * (next_place % places), len }
    next_place = next_place + STEP
    left = left - len
  end
  return out
end

function M.random_value(n)
  local t = {}
  for i, p in ipairs(pieces(n)) do
    t[i] = pool:sub(p[1] + 1, p[1] + p[2])
  end
  return table.concat(t)
end

-- The base64 of a random value of n characters (etcd's JSON gateway wants base64), taken
-- from the pool's own base64 where the piece covers whole groups of 3.
function M.random_value_b64(n)
  local t = {}
  for i, p in ipairs(pieces(n)) do
    local start, len = p[1], p[2]
    local whole = len - len % 3
    local at = start / 3 * 4
    t[i] = pool_b64:sub(at + 1, at + whole / 3 * 4)
      .. (whole < len and M.b64(pool:sub(start + whole + 1, start + len)) or "")
  end
  return table.concat(t)
end

-- Environment knobs (set by single_node.sh): number of keys and value size.
M.keys = tonumber(os.getenv("BENCH_KEYS") or "10000")
M.value_size = tonumber(os.getenv("BENCH_VALUE_SIZE") or "1024")

-- Installs setup/init/request/response/done as globals.
--   build(i) -> the full HTTP request string for key number i (called at init time for
--               every key, so request() is only a table lookup)
--   expect   -> a plain substring every good 200 body must contain (nil: any 200 is good)
function M.install(build, expect)
  local threads = {}

  setup = function(thread)
    thread:set("id", #threads + 1)
    table.insert(threads, thread)
  end

  local reqs = {}
  init = function(args)
    math.randomseed(os.time() * 1000 + (id or 0) * 7919)
    for i = 0, M.keys - 1 do
      reqs[i] = build(i)
    end
    bad, miss, sample = 0, 0, ""
  end

  request = function()
    return reqs[math.random(0, M.keys - 1)]
  end

  response = function(status, headers, body)
    if status ~= 200 then
      bad = bad + 1
      if sample == "" then sample = status .. " " .. (body or ""):sub(1, 200) end
    elseif expect and not (body and body:find(expect, 1, true)) then
      miss = miss + 1
      if sample == "" then sample = "200 without " .. expect .. ": " .. (body or ""):sub(1, 200) end
    end
  end

  done = function(summary, latency, requests)
    local nbad, nmiss, samples = 0, 0, {}
    for _, t in ipairs(threads) do
      nbad = nbad + (t:get("bad") or 0)
      nmiss = nmiss + (t:get("miss") or 0)
      local s = t:get("sample")
      if s and s ~= "" then samples[#samples + 1] = s end
    end
    local e = summary.errors
    local secs = summary.duration / 1e6
    io.write(string.format(
      "BENCHRESULT requests=%d seconds=%.2f rps=%.1f p50_ms=%.3f p99_ms=%.3f non200=%d miss=%d "
        .. "connect_err=%d read_err=%d write_err=%d timeout=%d\n",
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      nbad, nmiss, e.connect, e.read, e.write, e.timeout))
    for _, s in ipairs(samples) do
      io.write("BENCHSAMPLE " .. s:gsub("\n", " ") .. "\n")
    end
  end
end

return M
