#!/usr/bin/env bash
# CPU cost of a store (or a fetch, OP=fetch) in a 3-node statemanager cluster, for A/B
# comparisons of builds.
#
#   bench/cluster_cpu.sh BINARY [BINARY ...]
#
# For each round (ROUNDS, default 3) and each binary in turn (so that the machine's drift hits
# every binary alike): start a fresh 3-node cluster on free 127.0.0.1 ports, preload KEYS keys,
# run `wrk -t2 -c64` stores (or fetches) for DURATION s against TARGET (leader or follower), and read the
# CPU ticks (/proc/PID/stat utime+stime) of the three nodes and of wrk over the run. Prints one
# line per run and, at the end, the median per binary of: requests/s, p99, and CPU µs per request
# (all three nodes together, and wrk). No etcd, no failover: use cluster.sh for the report.
#
# Knobs: ROUNDS=3 DURATION=10 TARGET=follower (or leader) OP=store (or fetch) KEYS=10000 VALUE_SIZE=1024
#        CONNS=64 THREADS=2 BENCH_TMP=/tmp PERF=1 (perf record $PERF_ARGS, default -g, of the nodes:
#        perf-<binary index>-<round>.data in the current directory) or PERF=stat (context switches
#        and system calls of each node per request), METRICS=1 (print the nodes' /metrics lines
#        matching METRICS_GREP after each run), EXTRA_CONFIG='key: value\nkey2: value' (added to
#        every node's configuration; a binary may also be a wrapper script that sets variables),
#        KEEP_LOGS=DIR (copy each node's log there, DIR made if missing), KEEP_WRK=DIR (copy wrk's
#        output there, likewise),
#        FORM=grown (node 1 starts alone and nodes 2 and 3 with `join: true` are added to it by
#        `statemanager cluster add`, as an operator grows a cluster; default FORM=peers: all
#        three start from their `peers` lists)
# Every process started here is stopped by PID, but perf (PERF=1 or stat), which ends with its
# own `sleep DURATION` and is waited for; every wait is bounded.

set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
TARGET=${TARGET:-follower}
OP=${OP:-store}
FORM=${FORM:-peers}
[[ $FORM == peers || $FORM == grown ]] || { echo "FORM must be peers or grown" >&2; exit 2; }
[[ $OP == store || $OP == fetch ]] || { echo "OP must be store or fetch" >&2; exit 2; }
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-1024}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
BENCH_TMP=${BENCH_TMP:-/tmp}
for keep in "${KEEP_LOGS:-}" "${KEEP_WRK:-}"; do
    [[ -z $keep ]] || mkdir -p "$keep"
done
(($# >= 1)) || { echo "usage: $0 BINARY [BINARY ...]" >&2; exit 2; }
export BENCH_LUA_DIR=$HERE/lua BENCH_KEYS=$KEYS BENCH_VALUE_SIZE=$VALUE_SIZE
TICK=$(getconf CLK_TCK)
WORK=$(mktemp -d "$BENCH_TMP/sm-cpu.XXXXXX")
# Read by lib.sh.
# shellcheck disable=SC2034
PROBLEMS=$WORK/problems.txt RAW_LOG=/dev/null
# Shared helpers (process bookkeeping: every process started here is stopped by PID on exit).
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
bench_traps

ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

RESULTS=$WORK/results.tsv
: >"$RESULTS"
for ((round = 1; round <= ROUNDS; round++)); do
    for ((b = 1; b <= $#; b++)); do
        bin=${!b}
        read -r -a P <<<"$(python3 "$HERE/cluster.py" free-ports 6)"
        nodes=()
        for n in 0 1 2; do
            dir=$WORK/r$round-b$b-n$n
            mkdir -p "$dir"
            {
                echo "node_id: $((n + 1))"
                echo "peer_listen: 127.0.0.1:${P[3 + n]}"
                if [[ $FORM == peers ]]; then
                    echo "peers:"
                    for m in 0 1 2; do echo "  $((m + 1)): 127.0.0.1:${P[3 + m]}"; done
                elif ((n > 0)); then
                    echo "join: true"
                fi
                echo "max_persistent_data_items: 500000"
                echo "log_level: warning"
                if [[ -n ${EXTRA_CONFIG:-} ]]; then printf '%b\n' "$EXTRA_CONFIG"; fi
            } >"$dir/node.yaml"
            "$bin" serve --config "$dir/node.yaml" --port "${P[n]}" --data-dir "$dir/data" \
                --log-stderr >"$dir/server.log" 2>&1 &
            nodes+=("$!")
            track "$!"
        done
        urls="http://127.0.0.1:${P[0]},http://127.0.0.1:${P[1]},http://127.0.0.1:${P[2]}"
        if [[ $FORM == grown ]]; then
            python3 "$HERE/cluster.py" sm-leader --urls "http://127.0.0.1:${P[0]}" --timeout 60 >/dev/null
            for n in 1 2; do
                timeout 60 "$bin" cluster --peer "127.0.0.1:${P[3]}" add "$((n + 1))" \
                    "127.0.0.1:${P[3 + n]}" >/dev/null || { echo "cluster add $((n + 1)) failed" >&2; exit 1; }
            done
        fi
        leader=$(python3 "$HERE/cluster.py" sm-leader --urls "$urls" --timeout 60)
        l=$((leader - 1))
        if [[ $TARGET == leader ]]; then t=$l; else t=$(((l + 1) % 3)); fi
        url=http://127.0.0.1:${P[t]}
        python3 "$HERE/load.py" --kind statemanager --url "http://127.0.0.1:${P[l]}" --count "$KEYS" \
            --value-size "$VALUE_SIZE" --concurrency "$CONNS" --timeout 300 >/dev/null
        before=()
        for pid in "${nodes[@]}"; do before+=("$(ticks "$pid")"); done
        perf_pid=
        if [[ ${PERF:-0} == stat ]]; then
            for i in 0 1 2; do
                perf stat -e context-switches,raw_syscalls:sys_enter -p "${nodes[i]}" \
                    -o "$WORK/perf-stat.$i.txt" -- sleep "$DURATION" >/dev/null 2>&1 &
                perf_pid+=" $!"
            done
        elif [[ ${PERF:-0} == 1 ]]; then
            perf record ${PERF_ARGS:--g} -o "perf-$b-$round.data" -p "$(IFS=,; echo "${nodes[*]}")" \
                -- sleep "$DURATION" >/dev/null 2>&1 &
            perf_pid=$!
        fi
        wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s --latency \
            -s "$HERE/lua/sm_$OP.lua" "$url" >"$WORK/wrk.out" 2>&1 &
        wpid=$!
        track "$wpid"
        wticks=0
        while kill -0 "$wpid" 2>/dev/null; do
            w=$(ticks "$wpid")
            ((w > wticks)) && wticks=$w
            sleep 0.2
        done
        reap "$wpid"
        for p in $perf_pid; do wait "$p" || true; done
        node_ticks=0
        roles=""
        for i in 0 1 2; do
            d=$(($(ticks "${nodes[i]}") - before[i]))
            node_ticks=$((node_ticks + d))
            if ((i == l)); then r=leader; elif ((i == t)); then r=target; else r=follower; fi
            roles+=" $r $d"
        done
        line=$(grep '^BENCHRESULT' "$WORK/wrk.out" || echo "BENCHRESULT requests=0 rps=0 p99_ms=0")
        python3 - "$b" "$round" "$line" "$node_ticks" "$wticks" "$TICK" >>"$RESULTS" <<'EOF'
import sys
b, rnd, line, nt, wt, tick = sys.argv[1:7]
kv = dict(f.split("=", 1) for f in line.split()[1:])
req = int(kv["requests"]) or 1
us = lambda t: int(t) * 1e6 / int(tick) / req
print(f"{b}\t{rnd}\t{kv['rps']}\t{kv['p99_ms']}\t{us(nt):.1f}\t{us(wt):.1f}\t{kv.get('non200', '?')}")
EOF
        [[ -n ${KEEP_WRK:-} ]] && cp "$WORK/wrk.out" "$KEEP_WRK/wrk-$b-$round.txt"
        IFS=$'\t' read -r _ _ rps p99 cpu wcpu bad < <(tail -n1 "$RESULTS")
        echo "round $round binary $b ($bin): $rps ${OP}s/s, p99 $p99 ms, node CPU $cpu µs/request, wrk $wcpu µs/request, non-200 $bad"
        req=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$line")
        awk -v req="$req" -v tick="$TICK" '{ printf "  CPU µs/request by node:"; for (i = 1; i < NF; i += 2) printf " %s %.1f", $i, $(i + 1) * 1e6 / tick / (req ? req : 1); print "" }' <<<"$roles"
        for i in 0 1 2; do
            [[ -s $WORK/perf-stat.$i.txt ]] || continue
            if ((i == l)); then r=leader; elif ((i == t)); then r=target; else r=follower; fi
            awk -v n="$req" -v r="$r" \
                '/context-switches|sys_enter/ { gsub(",", "", $1); printf "  %s %s: %.2f per request\n", r, $2, $1 / n }' \
                "$WORK/perf-stat.$i.txt"
            rm -f "$WORK/perf-stat.$i.txt"
        done
        if [[ ${METRICS:-0} == 1 ]]; then
            for i in 0 1 2; do
                echo "  /metrics of node $((i + 1)) (${METRICS_GREP:-batch|append|raft_}):"
                curl -s --max-time 5 "http://127.0.0.1:${P[i]}/metrics" | grep -E "${METRICS_GREP:-batch|append|raft_}" | grep -v '^#' | sed 's/^/    /' || true
            done
        fi
        for pid in "${nodes[@]}"; do stop_pid "$pid" 30; done
        if [[ -n ${KEEP_LOGS:-} ]]; then
            for n in 0 1 2; do cp "$WORK/r$round-b$b-n$n/server.log" "$KEEP_LOGS/server-$b-$round-$n.log"; done
        fi
        rm -rf "$WORK"/r$round-b$b-n*
    done
done

echo ""
echo "medians over $ROUNDS rounds (${OP}s, target: $TARGET, ${DURATION}s, -c$CONNS, ${VALUE_SIZE}-byte values):"
python3 - "$RESULTS" "$@" <<'EOF'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines()]
for b, name in enumerate(sys.argv[2:], 1):
    mine = [r for r in rows if int(r[0]) == b]
    med = lambda i: statistics.median(float(r[i]) for r in mine)
    print(f"  {b}: {name}: {med(2):,.0f} requests/s, p99 {med(3):.1f} ms, nodes {med(4):.1f} µs/request, wrk {med(5):.1f} µs/request")
EOF
