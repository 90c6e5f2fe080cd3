-- wrk: POST /v3/kv/put to etcd's JSON gateway, a random key among k0..k(BENCH_KEYS-1) and a
-- random BENCH_VALUE_SIZE-byte value per key, cut from common.lua's pool (both base64-encoded
-- on the wire, as the gateway requires; etcd stores the decoded bytes). Counts non-200
-- answers.
package.path = (os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/?.lua;" .. package.path
local c = require "common"

local headers = { ["Content-Type"] = "application/json" }
c.install(function(i)
  local body = '{"key":"' .. c.b64("k" .. i) .. '","value":"' .. c.random_value_b64(c.value_size) .. '"}'
  return wrk.format("POST", "/v3/kv/put", headers, body)
end, '"header"')
