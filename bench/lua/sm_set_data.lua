-- wrk: POST /set_data (the ephemeral cache) to statemanager, a random key among
-- k0..k(BENCH_KEYS-1), a BENCH_VALUE_SIZE-character value, ttl 3600. Counts non-200 answers.
package.path = (os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/?.lua;" .. package.path
local c = require "common"

local headers = { ["Content-Type"] = "application/json" }
c.install(function(i)
  local body = '{"namespace":"bench","key":"k' .. i .. '","data":"'
    .. c.random_value(c.value_size) .. '","ttl":3600}'
  return wrk.format("POST", "/set_data", headers, body)
end, '"ok"')
