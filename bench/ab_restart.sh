#!/usr/bin/env bash
# A/B of statemanager builds on restart time and memory, on the same number of items (in one
# shared directory with SAME_DIR):
#
#   bench/ab_restart.sh before=/path/a after=/path/b
#
# 1. Memory: per label and round (alternating), a fresh server with MEMORY_ITEMS distinct items
#    of VALUE_SIZE bytes stored through bench/load.py; bytes per item = VmRSS growth / items.
# 2. Restart: per label a data directory of ITEMS distinct items written by its own binary, and
#    one unmeasured restart on it; then per round each label in turn restarts on its directory:
#    seconds from process start until /ready is 200 and the first and last keys can be fetched
#    (polled every 10 ms), the server's user and system CPU seconds until then (the system
#    share includes what this machine charges for memory touched first: see
#    docs/benchmarks.md, "Restart and the machine's fresh memory"), and VmRSS then; stopped
#    with SIGTERM. With SAME_DIR=1 every build
#    restarts on the one directory the first build wrote (for builds that read and write the
#    same format): how much log lies after the last snapshot is then the same for all, which
#    separate directories do not ensure.
# Knobs: ROUNDS=3 ITEMS=1000000 MEMORY_ITEMS=100000 VALUE_SIZE=1024; SAME_DIR, SKIP_MEMORY and
#        SKIP_RESTART are on with any non-empty value (even 0)
# Only 127.0.0.1; every process stopped by PID; every wait bounded.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROUNDS=${ROUNDS:-3} ITEMS=${ITEMS:-1000000} MEMORY_ITEMS=${MEMORY_ITEMS:-100000}
VALUE_SIZE=${VALUE_SIZE:-1024} CONNS=64
(($# >= 1)) || { echo "usage: $0 LABEL=BINARY ..." >&2; exit 2; }
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
ab_start sm-abr
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fetch_ok() {
    curl -s --max-time 2 -X POST "$1/fetch_data" \
        -d "{\"namespace\":\"bench\",\"key\":\"k$2\"}" | grep -q '"data"'
}

# start LABEL BINARY DIR PORT: a server on DIR (config written once), PID in $PID.
start() {
    local bin=$2 dir=$3 port=$4
    [[ -s $dir/config.yaml ]] ||
        printf 'max_persistent_data_items: %s\nlog_level: warning\n' $((ITEMS * 2)) >"$dir/config.yaml"
    "$bin" serve --config "$dir/config.yaml" --port "$port" --data-dir "$dir/data" \
        --log-stderr >>"$dir/server-$1.log" 2>&1 &
    PID=$!
    track "$PID"
}

if [[ -z ${SKIP_MEMORY:-} ]]; then
    for ((round = 1; round <= ROUNDS; round++)); do
        for spec in "$@"; do
            label=${spec%%=*} bin=${spec#*=} dir=$WORK/mem-$label-$round
            mkdir -p "$dir"
            port=$(free_ports 1)
            start "$label" "$bin" "$dir" "$port"
            url=http://127.0.0.1:$port
            wait_for 60 "$label /ready" http_200 "$url/ready"
            sleep 1
            before=$(rss_kib "$PID")
            preload "$label" statemanager "$url" "$MEMORY_ITEMS" "$VALUE_SIZE" >/dev/null
            sleep 2
            after=$(rss_kib "$PID")
            per_item=$(((after - before) * 1024 / MEMORY_ITEMS))
            stop_pid "$PID" 60
            rm -rf "$dir"
            log "round $round $label: memory ${before} -> ${after} KiB, $per_item bytes per item"
            printf 'memory\t%s\t%s\n' "$label" "$per_item" >>"$ROWS"
        done
    done
fi

if [[ -z ${SKIP_RESTART:-} ]]; then
    last=$((ITEMS - 1))
    declare -A DIR PORT
    for spec in "$@"; do
        label=${spec%%=*} bin=${spec#*=}
        if [[ -n ${SAME_DIR:-} && $spec != "$1" ]]; then
            # Every build restarts on the first one's directory (and port).
            DIR[$label]=${DIR[${1%%=*}]} PORT[$label]=${PORT[${1%%=*}]}
            continue
        fi
        DIR[$label]=$WORK/restart-$label PORT[$label]=$(free_ports 1)
        mkdir -p "${DIR[$label]}"
        start "$label" "$bin" "${DIR[$label]}" "${PORT[$label]}"
        url=http://127.0.0.1:${PORT[$label]}
        wait_for 60 "$label /ready" http_200 "$url/ready"
        preload "$label" statemanager "$url" "$ITEMS" "$VALUE_SIZE" >/dev/null
        stop_pid "$PID" 300
        log "$label: data dir $(du -sh "${DIR[$label]}/data" | cut -f1) with $ITEMS items"
    done
    # restart_once LABEL BINARY: seconds to ready and fetchable into RESTART_SECS, VmRSS into RSS.
    restart_once() {
        local t0 t1 i ready=0 end=$((SECONDS + 600)) url=http://127.0.0.1:${PORT[$1]}
        t0=$(date +%s%N)
        start "$1" "$2" "${DIR[$1]}" "${PORT[$1]}"
        for ((i = 0; i < 600 * 100 && SECONDS <= end; i++)); do
            if http_200 "$url/ready" && fetch_ok "$url" 0 && fetch_ok "$url" "$last"; then ready=1; break; fi
            alive "$PID" || break
            sleep 0.01
        done
        t1=$(date +%s%N)
        RESTART_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')
        RSS=$(rss_kib "$PID")
        read -r USER_SECS SYS_SECS <<<"$(cpu_of "$PID")"
        ((ready)) || problem "$1: not ready after ${RESTART_SECS}s"
        stop_pid "$PID" 300
    }
    for spec in "$@"; do
        restart_once "${spec%%=*}" "${spec#*=}"
        log "${spec%%=*}: unmeasured first restart ${RESTART_SECS}s"
    done
    for ((round = 1; round <= ROUNDS; round++)); do
        for spec in "$@"; do
            label=${spec%%=*} bin=${spec#*=}
            restart_once "$label" "$bin"
            log "round $round $label: restart ${RESTART_SECS}s (CPU: user ${USER_SECS}s, system ${SYS_SECS}s), VmRSS $RSS KiB"
            printf 'restart\t%s\t%s\n' "$label" "$RESTART_SECS" >>"$ROWS"
            printf 'user\t%s\t%s\n' "$label" "$USER_SECS" >>"$ROWS"
            printf 'system\t%s\t%s\n' "$label" "$SYS_SECS" >>"$ROWS"
            printf 'rss\t%s\t%s\n' "$label" "$RSS" >>"$ROWS"
        done
    done
fi

echo
echo "medians over $ROUNDS rounds (memory: bytes per item with $MEMORY_ITEMS items;" \
    "restart: s with $ITEMS items; user, system: the server's CPU s until ready; rss: KiB after the restart)"
python3 - "$ROWS" "$@" <<'EOF'
import statistics, sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
labels = [spec.split("=", 1)[0] for spec in sys.argv[2:]]
for what in ("memory", "restart", "user", "system", "rss"):
    values = {l: [float(v) for w, lab, v in rows if w == what and lab == l] for l in labels}
    if not any(values.values()):
        continue
    base = statistics.median(values[labels[0]]) if values[labels[0]] else None
    for l in labels:
        if not values[l]:
            continue
        m = statistics.median(values[l])
        ratio = f"  {m / base:.2f}x {labels[0]}" if base else ""
        print(f"{what:8} {l:12} median {m:g}  (rounds: {', '.join(f'{v:g}' for v in values[l])}){ratio}")
EOF
if [[ -s $PROBLEMS ]]; then echo "PROBLEMS:"; cat "$PROBLEMS"; fi
