-- wrk: POST /get_data (cache hits: run after sm_set_data.lua filled every key) with
-- max_wait_time 30, as plugnpy sends it. A 200 whose data is null counts as a miss.
package.path = (os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/?.lua;" .. package.path
local c = require "common"

local headers = { ["Content-Type"] = "application/json" }
c.install(function(i)
  return wrk.format("POST", "/get_data", headers,
    '{"namespace":"bench","key":"k' .. i .. '","max_wait_time":30}')
end, '"data":"')
