-- wrk: POST /fetch_data to statemanager, a random existing key among k0..k(BENCH_KEYS-1).
-- Counts non-200 answers, and 200s without a "data" field as misses.
package.path = (os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/?.lua;" .. package.path
local c = require "common"

local headers = { ["Content-Type"] = "application/json" }
c.install(function(i)
  return wrk.format("POST", "/fetch_data", headers, '{"namespace":"bench","key":"k' .. i .. '"}')
end, '"data"')
