#!/usr/bin/env bash
# Single-node benchmark: statemanager vs etcd 3.4 vs Redis 7 (AOF, fsync always), side by side.
#
#   DURATION=15 bench/single_node.sh
#
# Steps:
#   1. Start every system at once in its own temp dir: statemanager, the HTTP ceiling
#      (crates/server/examples/http_ceiling.rs: a server that does no work, the most this
#      machine's HTTP stack does), the durable ceiling (crates/server/examples/durable_ceiling.rs:
#      the same stack with group commit and `fdatasync` and nothing else, stores only), etcd (its
#      JSON gateway) and Redis (AOF, appendfsync always); preload KEYS keys into each but the two
#      ceilings (which store nothing they read back).
#   2. WARMUP seconds of stores on each system (Redis: WARMUP x 20,000 SETs; not counted), then ROUNDS rounds: in each,
#      stores on every system one after the other, then fetches (wrk POST /store_data and
#      /fetch_data with random keys, etcd's /v3/kv/put and /v3/kv/range, redis-benchmark SET
#      and GET); the systems' order turns by one each round. The systems
#      are measured close together because this machine's speed drifts within the hour.
#   3. statemanager's Cache Manager API (set_data, get_data, waiters' wake-up).
#   4. A table (stdout + bench/results/single_node-<date>.md; every tool's raw output in
#      bench/results/single_node-<date>-raw.txt): medians over the rounds, and each ratio
#      taken within a round, then its median over the rounds.
#   5a. Memory: RSS growth per item after storing MEM_ITEMS distinct 1 KiB items.
#   5b. Restart: store RESTART_ITEMS distinct items (RSS growth per item again, at that count),
#       SIGTERM, restart, time until /ready is 200 and the first and last keys can be fetched, the server's
#       user and system CPU until then; data dir size; and how long a new process takes to write
#       as much fresh memory (the machine's share of a restart: see docs/benchmarks.md).
#
# Everything listens on 127.0.0.1 only. Every process started here is stopped by PID on exit;
# temp dirs are removed. Every wait is bounded.
#
# Knobs (environment):
#   DURATION=15         seconds per wrk run
#   ROUNDS=3            rounds of the interleaved runs (the ratios are their medians)
#   WARMUP=5            seconds of stores on each system before the rounds, not counted
#   THREADS=2 CONNS=64  wrk threads / connections (redis-benchmark uses CONNS clients)
#   KEYS=10000          key space for the timed runs
#   VALUE_SIZE=1024     value size, bytes
#   REDIS_REQUESTS=200000  redis-benchmark -n (per test)
#   MEM_ITEMS=100000    items for the memory step
#   RESTART_ITEMS=1000000 RESTART_VALUE_SIZE=1024  items and value size for the restart step
#   SKIP_CEILING=1 SKIP_DURABLE=1 SKIP_ETCD=1 SKIP_REDIS=1 SKIP_MEMORY=1 SKIP_RESTART=1  skip a step
#   CEILING_BIN=target/release/examples/http_ceiling   the HTTP ceiling server
#                                        (cargo build --release --example http_ceiling)
#   DURABLE_BIN=target/release/examples/durable_ceiling  the durable ceiling (stores only)
#   DURABLE_GATHER=     its gather, in requests (unset: its callers' groups take turns, its
#                       fastest form here; 64: one block per cycle, as our writer gathers)
#   SM_BIN=target/release/statemanager   binary to test (copied first, so a rebuild mid-run
#                                        does not change what is measured)
#   BENCH_TMP=/tmp      where temp data dirs go (same disk as the results, on purpose)

set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")

DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-5}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-1024}
REDIS_REQUESTS=${REDIS_REQUESTS:-200000}
MEM_ITEMS=${MEM_ITEMS:-100000}
RESTART_ITEMS=${RESTART_ITEMS:-1000000}
RESTART_VALUE_SIZE=${RESTART_VALUE_SIZE:-1024}
SKIP_ETCD=${SKIP_ETCD:-0}
SKIP_REDIS=${SKIP_REDIS:-0}
SKIP_MEMORY=${SKIP_MEMORY:-0}
SKIP_RESTART=${SKIP_RESTART:-0}
SM_BIN=${SM_BIN:-$ROOT/target/release/statemanager}
CEILING_BIN=${CEILING_BIN:-$ROOT/target/release/examples/http_ceiling}
SKIP_CEILING=${SKIP_CEILING:-0}
DURABLE_BIN=${DURABLE_BIN:-$ROOT/target/release/examples/durable_ceiling}
SKIP_DURABLE=${SKIP_DURABLE:-0}
DURABLE_GATHER=${DURABLE_GATHER:-}
BENCH_TMP=${BENCH_TMP:-/tmp}

STAMP=$(date -u +%Y-%m-%dT%H%M%SZ)
RESULTS_DIR=$HERE/results
mkdir -p "$RESULTS_DIR"
RESULTS_MD=$RESULTS_DIR/single_node-$STAMP.md
RAW_LOG=$RESULTS_DIR/single_node-$STAMP-raw.txt

WORK=$(mktemp -d "$BENCH_TMP/sm-bench.XXXXXX")
ROWS=$WORK/rows.tsv       # system, operation, round, rps, p50_ms, p99_ms, non200, miss, other errors
IDLE_ROWS=$WORK/idle.tsv  # system, operation, round, % of the machine's CPU idle during the run
EXTRA=$WORK/extra.txt     # memory / restart findings, one "- ..." markdown line each
PROBLEMS=$WORK/problems.txt
: >"$ROWS"; : >"$IDLE_ROWS"; : >"$EXTRA"; : >"$PROBLEMS"

export BENCH_LUA_DIR=$HERE/lua BENCH_KEYS=$KEYS BENCH_VALUE_SIZE=$VALUE_SIZE

# ---------------------------------------------------------------------------------------------
# Shared helpers (process bookkeeping, bounded waits, wrk runs, preloads): bench/lib.sh.

# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
bench_traps

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# ---------------------------------------------------------------------------------------------
# statemanager

[[ -x $SM_BIN ]] || { echo "no statemanager binary at $SM_BIN (cargo build --release)" >&2; exit 1; }
cp "$SM_BIN" "$WORK/statemanager"
SM=$WORK/statemanager

# start_sm NAME MAX_ITEMS [PORT]: fresh (or existing) data dir $WORK/NAME; sets SM_PID, SM_URL.
start_sm() {
    local name=$1 max_items=$2 port=${3:-0} dir=$WORK/$1
    mkdir -p "$dir"
    printf 'max_persistent_data_items: %s\nlog_level: warning\n' "$max_items" >"$dir/config.yaml"
    rm -f "$dir/addr.json"
    "$SM" serve --config "$dir/config.yaml" --port "$port" --data-dir "$dir/data" \
        --addr-file "$dir/addr.json" --log-stderr >>"$dir/server.log" 2>&1 &
    SM_PID=$!
    track "$SM_PID"
    wait_for 60 "statemanager $name address file" test -s "$dir/addr.json"
    SM_URL=http://$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$dir/addr.json")
    wait_for 60 "statemanager $name /ready" http_200 "$SM_URL/ready"
}

sm_items() { curl -s --max-time 5 "$SM_URL/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"])'; }

log "# single_node.sh $STAMP"
log "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, kernel $(uname -r)"
log "statemanager: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (+ uncommitted changes)'), binary $SM_BIN"
log "etcd: $(etcd --version 2>/dev/null | head -n1)"
log "redis: $(redis-server --version)"
log "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine makes every number noisier)"
log "wrk: -t$THREADS -c$CONNS -d${DURATION}s; keys $KEYS; value $VALUE_SIZE bytes; $ROUNDS rounds after a ${WARMUP} s warm-up"
[[ $SKIP_DURABLE == 1 ]] || log "durable ceiling: $DURABLE_BIN, gather ${DURABLE_GATHER:-none (its groups take turns)}"

# ---- 1. start every system ------------------------------------------------------------------
# All five run at once, idle while another is measured, so that the rounds below can
# interleave them: this machine's speed drifts by half within an hour, and a ratio is only
# fair between runs made close together.
log ""
log "## start and preload"
start_sm timed 200000
preload statemanager statemanager "$SM_URL" "$KEYS" "$VALUE_SIZE"

# start_reference NAME BINARY EXAMPLE [ARG ...]: starts one of the reference servers
# (crates/server/examples/EXAMPLE.rs) as `BINARY 127.0.0.1:0 $WORK/NAME.addr ARG ...`; sets
# REF_PID and REF_URL (REF_URL empty when the binary is missing or did not come up: a problem).
start_reference() {
    local name=$1 bin=$2 example=$3 addr=$WORK/$1.addr
    shift 3
    REF_PID= REF_URL=
    if [[ ! -x $bin ]]; then
        problem "no $name server at $bin (cargo build --release --example $example)"
        return 0
    fi
    "$bin" 127.0.0.1:0 "$addr" "$@" >/dev/null 2>&1 &
    REF_PID=$!
    track "$REF_PID"
    if wait_for 30 "the $name server's address file" test -s "$addr"; then
        REF_URL=http://$(addr_of "$addr")
    fi
}

# A minimal axum server that reads the same bodies and answers the same sizes with no work
# (crates/server/examples/http_ceiling.rs): what this machine's HTTP stack does at most.
CEILING_URL=
if [[ $SKIP_CEILING != 1 ]]; then
    start_reference ceiling "$CEILING_BIN" http_ceiling
    CEILING_PID=$REF_PID CEILING_URL=$REF_URL
fi

# The same stack with group commit and fdatasync and nothing else
# (crates/server/examples/durable_ceiling.rs): the most a server that makes every store
# durable before answering does here. It answers stores only.
DURABLE_URL=
if [[ $SKIP_DURABLE != 1 ]]; then
    mkdir -p "$WORK/durable"
    # An empty DURABLE_GATHER passes no argument (the groups take turns).
    # shellcheck disable=SC2086
    start_reference durable "$DURABLE_BIN" durable_ceiling "$WORK/durable" $DURABLE_GATHER
    DURABLE_PID=$REF_PID DURABLE_URL=$REF_URL
fi

ETCD_URL=
if [[ $SKIP_ETCD != 1 ]]; then
    ETCD_DIR=$WORK/etcd
    mkdir -p "$ETCD_DIR"
    CPORT=$(free_ports 1)
    PPORT=$(free_ports 1)
    # Default fsync behaviour (etcd always fsyncs its WAL on commit); loopback only.
    etcd --name bench --data-dir "$ETCD_DIR/data" \
        --listen-client-urls "http://127.0.0.1:$CPORT" --advertise-client-urls "http://127.0.0.1:$CPORT" \
        --listen-peer-urls "http://127.0.0.1:$PPORT" --initial-advertise-peer-urls "http://127.0.0.1:$PPORT" \
        --initial-cluster "bench=http://127.0.0.1:$PPORT" --initial-cluster-state new \
        --logger zap --log-level warn >"$ETCD_DIR/etcd.log" 2>&1 &
    ETCD_PID=$!
    track "$ETCD_PID"
    ETCD_URL=http://127.0.0.1:$CPORT
    wait_for 60 "etcd /health" http_200 "$ETCD_URL/health"
    preload etcd etcd "$ETCD_URL" "$KEYS" "$VALUE_SIZE"
fi

RPORT=
if [[ $SKIP_REDIS != 1 ]]; then
    REDIS_DIR=$WORK/redis
    mkdir -p "$REDIS_DIR"
    RPORT=$(free_ports 1)
    # AOF with fsync before every reply (Redis batches the fsync per event-loop turn, which is
    # its group commit); no RDB snapshots.
    redis-server --bind 127.0.0.1 --port "$RPORT" --dir "$REDIS_DIR" --appendonly yes \
        --appendfsync always --save '' --daemonize no >"$REDIS_DIR/redis.log" 2>&1 &
    REDIS_PID=$!
    track "$REDIS_PID"
    wait_for 60 "redis PING" redis-cli -p "$RPORT" ping
    # Preload the keys redis-benchmark -r uses (key:000000000000 ..), 1 KiB random values.
    log "preload redis: $KEYS keys x $VALUE_SIZE bytes"
    python3 - "$KEYS" "$VALUE_SIZE" <<'EOF' | timeout 300 redis-cli -p "$RPORT" --pipe 2>&1 | tee -a "$RAW_LOG" | tail -n1
import base64, os, sys
count, size = int(sys.argv[1]), int(sys.argv[2])
out = sys.stdout.buffer
for i in range(count):
    key = b"key:%012d" % i
    val = base64.b64encode(os.urandom(size))[:size]
    out.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(val), val))
EOF
    log "redis keys after preload: $(redis-cli -p "$RPORT" dbsize)"
fi

# run_redis OP ROUND: one redis-benchmark run of SET (store) or GET (fetch) -> a row.
run_redis() {
    local op=$1 round=$2 test out errors before
    test=$([[ $op == store ]] && echo set || echo get)
    log ""
    log "### redis $op $round: redis-benchmark -c $CONNS -n $REDIS_REQUESTS -d $VALUE_SIZE -r $KEYS -t $test --csv"
    before=$(cpu_ticks)
    out=$(timeout 600 redis-benchmark -h 127.0.0.1 -p "$RPORT" -c "$CONNS" -n "$REDIS_REQUESTS" \
        -d "$VALUE_SIZE" -r "$KEYS" -t "$test" --csv 2>&1) || problem "redis-benchmark exited with status $?"
    record_idle "$before" redis "$op" "$round"
    log "$out"
    errors=$(redis-cli -p "$RPORT" info stats | tr -d '\r' | awk -F: '/^total_error_replies:/ {print $2}')
    [[ ${errors:-0} == 0 ]] || problem "redis answered $errors errors"
    # "test","rps","avg","min","p50","p95","p99","max" -> a row (no per-request status check in
    # redis-benchmark; the server's error counter covers it; the preload makes every key exist).
    python3 - "$out" "${errors:-0}" "$round" >>"$ROWS" <<'EOF'
import csv, io, sys
names = {"SET": "store", "GET": "fetch"}
for row in csv.reader(io.StringIO(sys.argv[1])):
    if row and row[0] in names:
        print("\t".join(["redis", names[row[0]], sys.argv[3], row[1], row[4], row[6], sys.argv[2], "0", "0"]))
EOF
}

# warm_up SYSTEM: WARMUP seconds of stores before the rounds, not counted: what a long-running
# server is like (statemanager's first log segments are new files that grow, later ones are
# recycled; etcd's WAL files are preallocated; the caches are warm).
warm_up() {
    ((WARMUP > 0)) || return 0
    case $1 in
        statemanager) warm_wrk "$WARMUP" sm_store.lua "$SM_URL" ;;
        ceiling) warm_wrk "$WARMUP" sm_store.lua "$CEILING_URL" ;;
        durable) warm_wrk "$WARMUP" sm_store.lua "$DURABLE_URL" ;;
        etcd) warm_wrk "$WARMUP" etcd_put.lua "$ETCD_URL" ;;
        redis)
            log "warm-up: $WARMUP s of redis-benchmark SET"
            timeout $((WARMUP + 60)) redis-benchmark -h 127.0.0.1 -p "$RPORT" -c "$CONNS" \
                -n $((WARMUP * 20000)) -d "$VALUE_SIZE" -r "$KEYS" -t set -q >/dev/null 2>&1 \
                || problem "the warm-up of redis failed"
            ;;
    esac
}

# ---- 2. rounds --------------------------------------------------------------------------------
# Each round measures stores, then fetches, on every system one right after the other; the
# order of the systems turns by one each round, so no system always runs first.
SYSTEMS=(statemanager)
[[ -n $CEILING_URL ]] && SYSTEMS+=(ceiling)
[[ -n $DURABLE_URL ]] && SYSTEMS+=(durable)
[[ -n $ETCD_URL ]] && SYSTEMS+=(etcd)
[[ -n $RPORT ]] && SYSTEMS+=(redis)
for system in "${SYSTEMS[@]}"; do warm_up "$system"; done
for ((round = 1; round <= ROUNDS; round++)); do
    log ""
    log "## round $round of $ROUNDS"
    for op in store fetch; do
        for ((i = 0; i < ${#SYSTEMS[@]}; i++)); do
            system=${SYSTEMS[(i + round - 1) % ${#SYSTEMS[@]}]}
            case $system in
                statemanager) run_wrk statemanager "$op" "$round" "sm_$op.lua" "$SM_URL" ;;
                ceiling) run_wrk ceiling "$op" "$round" "sm_$op.lua" "$CEILING_URL" ;;
                durable)
                    if [[ $op == store ]]; then
                        run_wrk durable store "$round" sm_store.lua "$DURABLE_URL"
                    fi
                    ;;
                etcd) run_wrk etcd "$op" "$round" "$([[ $op == store ]] && echo etcd_put.lua || echo etcd_range.lua)" "$ETCD_URL" ;;
                redis) run_redis "$op" "$round" ;;
            esac
        done
    done
done
log "items after the runs: $(sm_items)"
[[ -n $CEILING_URL ]] && stop_pid "$CEILING_PID" 10
[[ -n $DURABLE_URL ]] && stop_pid "$DURABLE_PID" 10
[[ -n $ETCD_URL ]] && stop_pid "$ETCD_PID" 60 >/dev/null
[[ -n $RPORT ]] && stop_pid "$REDIS_PID" 60 >/dev/null

# ---- 3. the Cache Manager API beside it: set_data fills every key, then get_data hits ---------
log ""
log "## statemanager: the cache"
run_wrk statemanager set_data 1 sm_set_data.lua "$SM_URL"
run_wrk statemanager get_data 1 sm_get_data.lua "$SM_URL"
log "### wake-up latency of get_data waiters after set_data (bench/wakeup.py)"
WAKEUP=$(timeout 300 python3 "$HERE/wakeup.py" --url "$SM_URL" --trials "${WAKE_TRIALS:-100}" --waiters 8) \
    || problem "wakeup.py failed: $WAKEUP"
log "  $WAKEUP"
python3 - "$WAKEUP" >>"$EXTRA" <<'EOF2' || true
import json, sys
w = json.loads(sys.argv[1])
print(f"- Cache wake-up: {w['woken']} waiters ({w['trials']} trials x {w['waiters']}) answered "
      f"**{w['median_ms']} ms** after set_data was sent (median; p99 {w['p99_ms']} ms, max {w['max_ms']} ms); "
      f"{w['failures']} without the value.")
EOF2
stop_pid "$SM_PID" 60 >/dev/null

# ---- 4. table ---------------------------------------------------------------------------------
# render_table: the markdown table (medians over the rounds) and the ratios from $ROWS. A ratio
# is taken within each round (both runs made minutes apart at most), and its median reported.
render_table() {
    python3 - "$ROWS" "$IDLE_ROWS" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
idle = {}
for line in open(sys.argv[2]):
    system, op, _round, share = line.rstrip("\n").split("\t")
    idle.setdefault((system, op), []).append(float(share))
runs = {}
for system, op, rnd, r, p50, p99, bad, miss, other in rows:
    runs.setdefault((system, op), []).append(
        dict(round=rnd, rps=float(r), p50=float(p50), p99=float(p99),
             bad=int(bad), miss=int(miss), other=int(other)))
print("| system | operation | requests/s (median) | each round | p50 ms | p99 ms | non-200 | misses | socket errors |")
print("|---|---|---:|---|---:|---:|---:|---:|---:|")
for (system, op), mine in runs.items():
    if op not in ("store", "fetch"):
        continue
    med = lambda k: statistics.median(m[k] for m in mine)
    each = ", ".join(f"{m['rps']:,.0f}" for m in mine)
    print(f"| {system} | {op} | {med('rps'):,.0f} | {each} | {med('p50'):.2f} | {med('p99'):.2f} | "
          f"{sum(m['bad'] for m in mine)} | {sum(m['miss'] for m in mine)} | {sum(m['other'] for m in mine)} |")
for (system, op), mine in runs.items():
    if op not in ("store", "fetch"):
        print(f"\n- {system} {op}: {mine[0]['rps']:,.0f} requests/s, p99 {mine[0]['p99']:.2f} ms")
print()
# How much of the machine (all cores, client included) was left idle: a server that keeps
# the cores busy is CPU-bound; one that leaves them idle waits on something (for our stores:
# the batch's fsync cycle; see docs/design.md).
for op in ("store", "fetch"):
    shares = [f"{system} {statistics.median(v):.0f} %" for (system, o), v in idle.items() if o == op]
    if shares:
        print(f"- machine idle during the {op} runs (median of rounds): {', '.join(shares)}")
print()
def ratios(op, other, mine="statemanager"):
    ours = {m["round"]: m["rps"] for m in runs.get((mine, op), [])}
    theirs = {m["round"]: m["rps"] for m in runs.get((other, op), [])}
    return [ours[r] / theirs[r] for r in ours if r in theirs and theirs[r]]
for other in ("ceiling", "durable", "etcd", "redis"):
    for op in ("store", "fetch"):
        each = ratios(op, other)
        if each:
            print(f"- statemanager/{other} {op}: **{statistics.median(each):.2f}×** median of "
                  f"{len(each)} rounds ({', '.join(f'{x:.2f}' for x in each)})")
# The durable ceiling against Redis: what the store target against Redis asks of a server that
# makes every store durable before answering, on this machine's HTTP stack (docs/benchmarks.md).
for other in ("ceiling", "redis"):
    each = ratios("store", other, mine="durable")
    if each:
        print(f"- durable ceiling/{other} store: **{statistics.median(each):.2f}×** median of "
              f"{len(each)} rounds ({', '.join(f'{x:.2f}' for x in each)})")
print()
# The targets of issue 17, on the medians of the per-round ratios.
def target(text, each, goal):
    if each:
        value = statistics.median(each)
        print(f"- target {text}: {value:.2f}× ({'met' if value >= goal else 'not met'})")
target("stores ≥ 0.5× the ceiling", ratios("store", "ceiling"), 0.5)
target("stores ≥ 1.0× Redis SET (appendfsync always)", ratios("store", "redis"), 1.0)
target("fetches ≥ 0.8× the ceiling", ratios("fetch", "ceiling"), 0.8)
for op in ("store", "fetch"):
    mine = runs.get(("statemanager", op))
    if mine:
        v = statistics.median(m["p99"] for m in mine)
        print(f"- target {op} p99 ≤ 5 ms: {v:.2f} ms median ({'met' if v <= 5 else 'not met'})")
EOF
}

log ""
log "## results"
TABLE=$(render_table)
log "$TABLE"

# ---- 5a. memory per item ---------------------------------------------------------------------
if [[ $SKIP_MEMORY != 1 ]]; then
    log ""
    log "## memory: RSS growth for $MEM_ITEMS distinct items x $VALUE_SIZE bytes"
    start_sm memory 200000
    sleep 1
    before=$(rss_kib "$SM_PID")
    preload statemanager-memory statemanager "$SM_URL" "$MEM_ITEMS" "$VALUE_SIZE"
    items=$(sm_items)
    after=$(rss_kib "$SM_PID")
    sleep 5
    settled=$(rss_kib "$SM_PID")
    per_item=$(( (settled - before) * 1024 / MEM_ITEMS ))
    per_item_now=$(( (after - before) * 1024 / MEM_ITEMS ))
    log "items stored: $items; VmRSS before: $before KiB, right after: $after KiB, 5 s later: $settled KiB"
    log "RSS per item: $per_item bytes (5 s after the load; $per_item_now bytes right after)"
    echo "- Memory: VmRSS $before KiB after start, $settled KiB with $items items of $VALUE_SIZE bytes (5 s after loading; $after KiB right after): **$per_item bytes per item** ($per_item_now right after), i.e. about $((per_item - VALUE_SIZE)) bytes of overhead per item beyond the value." >>"$EXTRA"
    [[ $items == "$MEM_ITEMS" ]] || problem "memory step: $items items stored, expected $MEM_ITEMS"
    stop_pid "$SM_PID" 60 >/dev/null
    rm -rf "$WORK/memory"
fi

# ---- 5b. restart time -------------------------------------------------------------------------
if [[ $SKIP_RESTART != 1 ]]; then
    log ""
    log "## restart: $RESTART_ITEMS distinct items x $RESTART_VALUE_SIZE bytes"
    PORT=$(free_ports 1)   # fixed, so the restarted server can be polled from its first moment
    start_sm restart $((RESTART_ITEMS * 2)) "$PORT"
    sleep 1
    rss_empty=$(rss_kib "$SM_PID")
    preload statemanager-restart statemanager "$SM_URL" "$RESTART_ITEMS" "$RESTART_VALUE_SIZE"
    load_summary=$LAST_LOAD
    items=$(sm_items)
    [[ $items == "$RESTART_ITEMS" ]] || problem "restart step: $items items stored, expected $RESTART_ITEMS"
    rss_full=$(rss_kib "$SM_PID")
    # RSS grows in 2 MiB pages and the server's fixed allocations vary by a few MiB: at
    # RESTART_ITEMS items that is a few bytes per item, against tens at MEM_ITEMS.
    per_item_full=$(( (rss_full - rss_empty) * 1024 / RESTART_ITEMS ))
    size_before=$(du -sh "$WORK/restart/data" | cut -f1)
    log "items: $items; VmRSS $rss_empty KiB empty, $rss_full KiB loaded ($per_item_full bytes per item); data dir $size_before"
    stop_pid "$SM_PID" 300
    stop_secs=$STOP_SECS
    size=$(du -sh "$WORK/restart/data" | cut -f1)
    log "stopped (SIGTERM) in ${stop_secs}s; data dir after stop: $size"

    # Restart and time: process start -> /ready 200 and fetch of a known key (first and last).
    last=$((RESTART_ITEMS - 1))
    fetch_ok() {
        curl -s --max-time 2 -X POST "$SM_URL/fetch_data" \
            -d "{\"namespace\":\"bench\",\"key\":\"k$1\"}" | grep -q '"data"'
    }
    t0=$(date +%s%N)
    "$SM" serve --config "$WORK/restart/config.yaml" --port "$PORT" --data-dir "$WORK/restart/data" \
        --log-stderr >>"$WORK/restart/server.log" 2>&1 &
    SM_PID=$!
    track "$SM_PID"
    ready=0
    end=$((SECONDS + 600))
    for ((i = 0; i < 600 * 100 && SECONDS <= end; i++)); do   # at most 10 minutes, 10 ms apart
        if http_200 "$SM_URL/ready" && fetch_ok 0 && fetch_ok "$last"; then ready=1; break; fi
        alive "$SM_PID" || break
        sleep 0.01
    done
    t1=$(date +%s%N)
    restart_secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
    if ((ready)); then
        read -r restart_user restart_sys <<<"$(cpu_of "$SM_PID")"
        log "restart: ready and k0, k$last fetchable ${restart_secs}s after process start (server CPU: user ${restart_user}s, system ${restart_sys}s)"
        items_after=$(sm_items)
        rss_restart=$(rss_kib "$SM_PID")
        log "items after restart: $items_after; VmRSS $rss_restart KiB"
        [[ $items_after == "$RESTART_ITEMS" ]] || problem "after restart: $items_after items, expected $RESTART_ITEMS"
        fresh_secs=$(fresh_touch_secs "$rss_restart")
        log "a new process wrote $rss_restart KiB of fresh memory in ${fresh_secs}s"
        echo "- Restart with $RESTART_ITEMS items of $RESTART_VALUE_SIZE bytes (loaded at $(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["rate"])' "$load_summary") items/s by bench/load.py): **${restart_secs} s** from process start until /ready is 200 and k0 and k$last can be fetched; the server's CPU meanwhile: user ${restart_user} s, system ${restart_sys} s. A new process writing as much fresh memory (the restart's VmRSS) took ${fresh_secs} s right after: system time this machine spends on memory it touches first (see benchmarks.md, \"Restart and the machine's fresh memory\"). Data dir: $size_before before the stop, $size after. SIGTERM to exit: ${stop_secs} s. VmRSS: $rss_full KiB before the stop, $rss_restart KiB after the restart; $items_after items after the restart." >>"$EXTRA"
        echo "- Memory with $RESTART_ITEMS items: VmRSS $rss_empty KiB after start, $rss_full KiB loaded: **$per_item_full bytes per item**; after the restart the whole process holds $(( rss_restart * 1024 / RESTART_ITEMS )) bytes per item." >>"$EXTRA"
    else
        problem "restart: not ready after ${restart_secs}s (alive: $(alive "$SM_PID" && echo yes || echo no)); log tail: $(tail -n5 "$WORK/restart/server.log" | tr '\n' ' ')"
    fi
    stop_pid "$SM_PID" 300 >/dev/null
fi

# ---- report ------------------------------------------------------------------------------------
{
    echo "# Single-node benchmark, $STAMP"
    echo
    echo "Command: \`DURATION=$DURATION ROUNDS=$ROUNDS WARMUP=$WARMUP bench/single_node.sh\`"
    echo
    grep -E '^(machine|statemanager|etcd|redis|wrk|durable ceiling|load average at start):' "$RAW_LOG" | sed 's/^/- /' | head -n7
    echo
    echo "$TABLE"
    echo
    cat "$EXTRA"
    if [[ -s $PROBLEMS ]]; then
        echo
        echo "## Problems"
        echo
        sed 's/^/- /' "$PROBLEMS"
    fi
} >"$RESULTS_MD"

log ""
[[ -s $EXTRA ]] && log "$(cat "$EXTRA")"
if [[ -s $PROBLEMS ]]; then
    log ""
    log "PROBLEMS:"
    log "$(sed 's/^/  /' "$PROBLEMS")"
fi
log ""
log "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
log "results: $RESULTS_MD"
log "raw output: $RAW_LOG"
