-- wrk: POST /store_data to statemanager, a random key among k0..k(BENCH_KEYS-1), a random
-- BENCH_VALUE_SIZE-character value per key (cut from common.lua's pool), no timestamp (the
-- server clock stamps it, so every overwrite is accepted). Counts non-200 answers.
package.path = (os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/?.lua;" .. package.path
local c = require "common"

local headers = { ["Content-Type"] = "application/json" }
c.install(function(i)
  local body = '{"namespace":"bench","key":"k' .. i .. '","data":"'
    .. c.random_value(c.value_size) .. '","ttl":3600}'
  return wrk.format("POST", "/store_data", headers, body)
end, nil)
