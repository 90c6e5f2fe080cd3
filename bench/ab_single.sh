#!/usr/bin/env bash
# A/B of statemanager builds on one node, with the HTTP ceiling beside them:
#
#   bench/ab_single.sh ceiling=target/release/examples/http_ceiling before=/path/a after=/path/b
#
# Each LABEL=BINARY (a label starting with "ceiling" is the ceiling server, one starting with
# "durable" the durable ceiling, examples/durable_ceiling.rs, which answers stores only: its
# fetch runs are skipped; "durableN" gives it a gather of N requests) gets a fresh process and
# data dir per round; the builds alternate round by round (ROUNDS, default 3).
# Per run: 2 s of warm-up stores, then wrk stores and fetches (DURATION s each, -t2 -c64,
# VALUE_SIZE-byte values over KEYS keys; knobs ROUNDS=3 DURATION=8 KEYS=10000 VALUE_SIZE=1024), with requests/s, p99 and the server's CPU per request (utime +
# stime from /proc/PID/stat). At the end: the medians per label, and the ratios of every
# label to the first that is not a ceiling of either kind. Only 127.0.0.1; every process
# stopped by PID.
#
# CYCLE=1: also the store cycle of each store run, read from the server's /metrics before
# and after it (`store_cycle` in lib.sh): stores per batch, the batch cycle, the mean commit,
# log fsync, apply and gather (the wait for the answered callers' next stores) in µs, and the
# share of batches written in place; with their medians.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-8} KEYS=${KEYS:-10000} VALUE_SIZE=${VALUE_SIZE:-1024}
THREADS=2 CONNS=64
(($# >= 1)) || { echo "usage: $0 LABEL=BINARY ..." >&2; exit 2; }
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
ab_start sm-ab
export BENCH_LUA_DIR=$HERE/lua BENCH_KEYS=$KEYS BENCH_VALUE_SIZE=$VALUE_SIZE
TICK=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }

for ((round = 1; round <= ROUNDS; round++)); do
    for spec in "$@"; do
        label=${spec%%=*} bin=${spec#*=} dir=$WORK/$label-$round
        mkdir -p "$dir"
        if [[ $label == ceiling* ]]; then
            "$bin" 127.0.0.1:0 "$dir/addr.json" >/dev/null 2>&1 &
        elif [[ $label == durable* ]]; then
            gather=${label#durable}
            [[ $gather =~ ^[0-9]+$ ]] || gather=0
            "$bin" 127.0.0.1:0 "$dir/addr.json" "$dir" "$gather" >/dev/null 2>&1 &
        else
            # Room for every key (the default max_persistent_data_items is 1024).
            printf 'max_persistent_data_items: %s\nlog_level: warning\n' $((KEYS * 2)) >"$dir/config.yaml"
            "$bin" serve --config "$dir/config.yaml" --port 0 --data-dir "$dir/data" \
                --addr-file "$dir/addr.json" --log-stderr >"$dir/server.log" 2>&1 &
        fi
        pid=$!
        track "$pid"
        wait_for 60 "$label's address file" test -s "$dir/addr.json"
        url=http://$(addr_of "$dir/addr.json")
        ours=1
        [[ $label == ceiling* || $label == durable* ]] && ours=0
        ((ours == 0)) || wait_for 60 "$label /ready" http_200 "$url/ready"
        # Every key stored once (fetches then find them), then 2 s of warm-up stores.
        ((ours == 0)) || preload "$label" statemanager "$url" >/dev/null
        timeout 60 wrk -t2 -c64 -d2s -s "$HERE/lua/sm_store.lua" "$url" >/dev/null 2>&1 || true
        line="round $round $label:"
        ops=(store fetch)
        [[ $label == durable* ]] && ops=(store)
        for op in "${ops[@]}"; do
            cycle=0 cycle_text=""
            if [[ ${CYCLE:-0} == 1 && $ours == 1 && $op == store ]]; then
                if curl -sf --max-time 5 "$url/metrics" >"$dir/metrics-before"; then
                    cycle=1
                else
                    problem "$label: no /metrics before the store run; no cycle for it"
                fi
            fi
            before=$(ticks "$pid")
            run_wrk "$label" "$op" "sm_$op.lua" "$url" >/dev/null
            used=$(($(ticks "$pid") - before))
            if ((cycle)); then
                if curl -sf --max-time 5 "$url/metrics" >"$dir/metrics-after" &&
                    out=$(store_cycle "$dir/metrics-before" "$dir/metrics-after" "$DURATION") &&
                    [[ -n $out ]]; then
                    printf '%s\t%s\n' "$label" "$out" >>"$WORK/cycle.tsv"
                    IFS=$'\t' read -r per_batch cycle_us commit_us fsync_us inline apply_us gather_us <<<"$out"
                    cycle_text=" [$per_batch per batch, cycle $cycle_us µs, commit $commit_us, fsync $fsync_us, apply $apply_us, gather $gather_us, in place $inline %]"
                else
                    problem "$label: no store cycle for round $round (no /metrics after the run, or no batch)"
                fi
            fi
            IFS=$'\t' read -r _ _ rps _ p99 _ < <(tail -n1 "$ROWS")
            requests=$(awk -v r="$rps" -v d="$DURATION" 'BEGIN { printf "%d", r * d }')
            cpu=$(awk -v t="$used" -v k="$TICK" -v n="$requests" 'BEGIN { printf "%.1f", n ? t * 1e6 / k / n : 0 }')
            printf '%s\t%s\n' "$(tail -n1 "$ROWS")" "$cpu" >>"$WORK/cpu.tsv"
            line+=" $op $rps/s p99 ${p99} ms cpu ${cpu} µs;"
            line+=$cycle_text
        done
        echo "$line"
        stop_pid "$pid" 30
        rm -rf "$dir"
    done
done

echo ""
touch "$WORK/cycle.tsv"
python3 - "$WORK/cpu.tsv" "$WORK/cycle.tsv" "$@" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
cycles = [l.rstrip("\n").split("\t") for l in open(sys.argv.pop(2)) if l.strip()]
labels = [s.split("=", 1)[0] for s in sys.argv[2:]]
med = {}
for label in labels:
    for op in ("store", "fetch"):
        mine = [r for r in rows if r[0] == label and r[1] == op]
        if mine:
            m = lambda i: statistics.median(float(r[i]) for r in mine)
            med[(label, op)] = m(2)
            print(f"{label} {op}: median {m(2):,.0f}/s, p99 {m(4):.2f} ms, CPU {m(8):.1f} µs per request ({len(mine)} runs)")
    mine = [c for c in cycles if c[0] == label]
    if mine:
        m = lambda i: statistics.median(float(c[i]) for c in mine)
        print(f"{label} store cycle: median {m(1):.1f} stores per batch, cycle {m(2):.0f} µs, "
              f"commit {m(3):.0f} µs, fsync {m(4):.0f} µs, apply {m(6):.0f} µs, gather {m(7):.0f} µs, "
              f"in place {m(5):.0f} % "
              f"({len(mine)} runs)")
base = next((l for l in labels if not l.startswith(("ceiling", "durable"))), None)
for label in labels:
    for op in ("store", "fetch"):
        if base and label != base and (label, op) in med and (base, op) in med:
            print(f"{label}/{base} {op}: {med[(label, op)] / med[(base, op)]:.2f}×")
PY
[[ -s $PROBLEMS ]] && { echo "PROBLEMS:"; sed 's/^/  /' "$PROBLEMS"; }
exit 0
