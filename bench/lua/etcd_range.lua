-- wrk: POST /v3/kv/range to etcd's JSON gateway (a linearizable read, etcd's default), a
-- random existing key among k0..k(BENCH_KEYS-1). Counts non-200 answers, and 200s without
-- "kvs" (key not found) as misses.
package.path = (os.getenv("BENCH_LUA_DIR") or "bench/lua") .. "/?.lua;" .. package.path
local c = require "common"

local headers = { ["Content-Type"] = "application/json" }
c.install(function(i)
  return wrk.format("POST", "/v3/kv/range", headers, '{"key":"' .. c.b64("k" .. i) .. '"}')
end, '"kvs"')
