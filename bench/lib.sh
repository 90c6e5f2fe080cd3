# shellcheck shell=bash disable=SC2034  # STOP_SECS and LAST_LOAD are read by the scripts
# bench/lib.sh: what the benchmark scripts share (sourced, not run). A script sets HERE, WORK,
# RAW_LOG, PROBLEMS and ROWS (where needed) before using these, then calls `bench_traps`.
#
# Processes: every process a script starts is registered with `track PID`; `stop_pid` signals
# only a registered PID that is still a child of this shell, and forgets it once reaped, so a
# recycled PID is never signalled. On exit every registered PID is stopped (SIGTERM, then
# SIGKILL after a bound), `bench_cleanup_hook` runs if the script defines one, and WORK is
# removed. Every wait is bounded.

declare -A OURS=()

# track PID: register a process this script started.
track() { OURS[$1]=1; }

# alive PID: true while PID runs (a zombie awaiting `wait` counts as gone). The state is read
# once: a process reaped between a check that its status exists and the read of it used to
# count as running (the read failed), and stop_pid then reported it as not stopping.
alive() {
    local state
    state=$(awk '/^State:/ { print $2; exit }' "/proc/$1/status" 2>/dev/null) || return 1
    [[ -n $state && $state != Z && $state != X ]]
}

# our_child PID: true when PID is a child of this shell.
our_child() { [[ $(ps -o ppid= -p "$1" 2>/dev/null | tr -d ' ') == "$$" ]]; }

# reap PID: wait for an exited child and forget it.
reap() { wait "$1" 2>/dev/null || true; unset "OURS[$1]"; }

# secs_since NANOS: seconds elapsed since a `date +%s%N` value, 3 decimals.
secs_since() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }

# stop_pid PID [SECONDS]: SIGTERM, up to SECONDS (default 30) for it to exit, then SIGKILL;
# reaps it. Sets STOP_SECS to the seconds it took to exit after SIGTERM.
stop_pid() {
    local pid=$1 limit=${2:-30} i t0 what
    t0=$(date +%s%N)
    if our_child "$pid"; then
        # What it is, read before it exits (for the message below).
        what=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-80)
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < limit * 50; i++)); do
            alive "$pid" || break
            sleep 0.02
        done
        if alive "$pid"; then
            echo "PID $pid ($what) still running $(secs_since "$t0")s after SIGTERM (limit ${limit}s; $(grep -m1 '^State' "/proc/$pid/status" 2>/dev/null | tr -s '\t ' ' ')); sent SIGKILL" >>"$PROBLEMS"
            # Only while it is still our child: a PID already reaped may belong to another.
            if our_child "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
        fi
    fi
    reap "$pid"
    STOP_SECS=$(secs_since "$t0")
}

bench_cleanup() {
    local pid
    for pid in "${!OURS[@]}"; do stop_pid "$pid" 20; done
    if declare -F bench_cleanup_hook >/dev/null; then bench_cleanup_hook; fi
    rm -rf "$WORK"
}

# bench_traps: stop what was started and remove WORK on exit or interrupt.
bench_traps() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# ab_start PREFIX: how the A/B scripts begin: WORK, a temp dir named PREFIX.* (removed on
# exit), the PROBLEMS, RAW_LOG and ROWS files in it, and the traps.
ab_start() {
    WORK=$(mktemp -d "${BENCH_TMP:-/tmp}/$1.XXXXXX")
    PROBLEMS=$WORK/problems.txt RAW_LOG=$WORK/raw.txt ROWS=$WORK/rows.tsv
    : >"$PROBLEMS"
    : >"$ROWS"
    bench_traps
}

# log: print to the terminal and keep in the raw log. problem: the same, and note it.
log() { echo "$*" | tee -a "$RAW_LOG"; }
problem() { log "PROBLEM: $*"; echo "$*" >>"$PROBLEMS"; }

# wait_for SECONDS DESCRIPTION CMD...: run CMD every 0.05 s until it succeeds, at most SECONDS.
wait_for() {
    local limit=$1 what=$2 i end=$((SECONDS + $1))
    shift 2
    for ((i = 0; i < limit * 20 && SECONDS <= end; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.05
    done
    problem "timed out after ${limit}s waiting for $what"
    return 1
}

# http_200 URL: true when GET URL answers 200 within 2 s.
http_200() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1") == 200 ]]; }

# json_field DOTTED.KEY < JSON: print one field.
json_field() { python3 -c 'import json,sys; v=json.load(sys.stdin); exec("for k in sys.argv[1].split(\".\"): v=v[k]"); print(v)' "$1"; }

# free_ports N: N distinct free ports outside the ephemeral range (see cluster.py).
free_ports() { python3 "$HERE/cluster.py" free-ports "$1"; }

# addr_of FILE [KEY]: the address (default "http") in an --addr-file.
addr_of() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "${2:-http}"; }

# cpu_of PID: the process's user and system CPU seconds so far, "USER SYS" (/proc/PID/stat).
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f %.2f", $14 / hz, $15 / hz }' "/proc/$1/stat"; }

# fresh_touch_secs KIB: seconds a new process takes to write KIB KiB of newly allocated memory.
# On a virtual machine whose balloon reports freed memory back to the host (this one: see
# docs/benchmarks.md, "Restart and the machine's fresh memory"), the first write to such
# memory costs system time the program cannot avoid; this is that cost for a restart's VmRSS.
fresh_touch_secs() {
    python3 -c 'import sys, time
n = int(sys.argv[1]) * 1024
t = time.monotonic(); b = b"1" * n; print(f"{time.monotonic() - t:.2f}")' "$1"
}

# cpu_ticks: the machine's busy and idle clock ticks so far, all cores (/proc/stat; iowait
# counts as idle: no core was running anything).
cpu_ticks() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6; exit}' /proc/stat; }

# record_idle BEFORE LABEL...: when IDLE_ROWS is set, appends the LABEL columns and the share
# of the machine's CPU left idle since BEFORE (a `cpu_ticks` line), in per cent.
record_idle() {
    [[ -n ${IDLE_ROWS:-} ]] || return 0
    local before=$1 busy0 idle0 busy1 idle1
    shift
    read -r busy0 idle0 <<<"$before"
    read -r busy1 idle1 <<<"$(cpu_ticks)"
    awk -v b=$((busy1 - busy0)) -v i=$((idle1 - idle0)) -v l="$(IFS=$'\t'; echo "$*")" \
        'BEGIN { printf "%s\t%.1f\n", l, (b + i) ? 100 * i / (b + i) : 0 }' >>"$IDLE_ROWS"
}

# run_wrk LABEL... SCRIPT URL: one wrk run with lua/SCRIPT. The full output goes to the raw
# log; the BENCHRESULT line printed by lua/common.lua's done() becomes a row of ROWS: the
# LABEL columns, then rps, p50_ms, p99_ms, non-200, misses, other errors (tab-separated).
# With IDLE_ROWS set, the machine's idle share during the run goes there (`record_idle`).
run_wrk() {
    local url=${*: -1} script=${*: -2:1} out line bad before
    local labels=("${@:1:$#-2}")
    log ""
    log "### ${labels[*]}: wrk -t$THREADS -c$CONNS -d${DURATION}s --latency -s lua/$script $url"
    before=$(cpu_ticks)
    out=$(timeout $((DURATION + 120)) wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --timeout 10s \
        --latency -s "$HERE/lua/$script" "$url" 2>&1) || problem "wrk exited with status $? (${labels[*]})"
    record_idle "$before" "${labels[@]}"
    log "$out"
    line=$(grep '^BENCHRESULT' <<<"$out" || true)
    if [[ -z $line ]]; then
        problem "no BENCHRESULT from wrk (${labels[*]})"
        return
    fi
    python3 - "$line" "${labels[@]}" >>"$ROWS" <<'PY'
import sys
line, labels = sys.argv[1], sys.argv[2:]
kv = dict(f.split("=", 1) for f in line.split()[1:])
other = sum(int(kv[k]) for k in ("connect_err", "read_err", "write_err", "timeout"))
print("\t".join(labels + [kv["rps"], kv["p50_ms"], kv["p99_ms"], kv["non200"], kv["miss"], str(other)]))
PY
    bad=$(tail -n1 "$ROWS" | awk -F'\t' '{print $(NF-2) + $(NF-1) + $NF}')
    if ((bad > 0)); then
        problem "${labels[*]}: $(tail -n1 "$ROWS" | awk -F'\t' '{printf "%s non-200, %s misses, %s socket errors/timeouts", $(NF-2), $(NF-1), $NF}') (samples: $(grep '^BENCHSAMPLE' <<<"$out" | head -n2 | cut -c13-300 | tr '\n' ' '))"
    fi
}

# warm_wrk SECONDS SCRIPT URL: a wrk run that is not counted (a warm-up before the measured
# rounds); a failure is reported as a problem.
warm_wrk() {
    log "warm-up: $1 s of lua/$2 on $3"
    timeout $(($1 + 60)) wrk -t"$THREADS" -c"$CONNS" -d"$1s" -s "$HERE/lua/$2" "$3" >/dev/null 2>&1 \
        || problem "the warm-up with lua/$2 on $3 failed"
}

# store_cycle BEFORE AFTER SECONDS: the store cycle between two /metrics texts (files)
# taken SECONDS apart on one node: stores per batch, a batch's cycle (SECONDS over the
# batches), the mean commit (proposal to outcome) and log fsync, in µs, and the share of
# batches whose log entry was written in place, then the mean apply and the mean gather (the
# writer's wait for the answered callers' next stores: the HTTP phase) in µs (0 from a build
# without `statemanager_apply_seconds` or `statemanager_write_gather_seconds`)
# (tab-separated, one line); nothing when no batch was proposed in between.
store_cycle() {
    python3 - "$1" "$2" "$3" <<'PY'
import sys
def load(path):
    values = {}
    for line in open(path):
        if line.startswith("#"):
            continue
        name, _, value = line.rstrip("\n").rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            pass
    return values
a, b, seconds = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
d = lambda k: b.get(k, 0.0) - a.get(k, 0.0)
batches = d("statemanager_batch_ops_count")
if batches <= 0:
    sys.exit()
fsyncs = d("statemanager_wal_append_fsync_seconds_count")
print("\t".join(f"{v:.1f}" for v in (
    d("statemanager_batch_ops_sum") / batches,
    seconds / batches * 1e6,
    d("statemanager_batch_commit_seconds_sum") / max(d("statemanager_batch_commit_seconds_count"), 1) * 1e6,
    d("statemanager_wal_append_fsync_seconds_sum") / max(fsyncs, 1) * 1e6,
    100 * d("statemanager_wal_inline_appends_total") / batches,
    d("statemanager_apply_seconds_sum") / max(d("statemanager_apply_seconds_count"), 1) * 1e6,
    d("statemanager_write_gather_seconds_sum") / max(d("statemanager_write_gather_seconds_count"), 1) * 1e6,
)))
PY
}

# preload SYSTEM KIND URL [COUNT] [SIZE]: store COUNT (default KEYS) distinct keys of SIZE
# (default VALUE_SIZE) bytes exactly once each through URL. Sets LAST_LOAD to load.py's line.
preload() {
    local system=$1 kind=$2 url=$3 count=${4:-$KEYS} size=${5:-$VALUE_SIZE} out
    log "preload $system via $url: $count keys x $size bytes"
    out=$(timeout 1300 python3 "$HERE/load.py" --kind "$kind" --url "$url" --count "$count" \
        --value-size "$size" --concurrency "$CONNS" --timeout 1200) || problem "preload of $system incomplete: $out"
    log "  $out"
    LAST_LOAD=$out
}

# wait_for_idle SECONDS: wait (every 10 s, at most SECONDS) until no cargo or rustc runs.
wait_for_idle() {
    local limit=$1 waited=0 i
    for ((i = 0; i <= limit / 10; i++)); do
        if ! pgrep -x cargo >/dev/null && ! pgrep -x rustc >/dev/null; then break; fi
        if ((i == 0)); then log "cargo/rustc running; waiting (every 10 s, at most ${limit}s)"; fi
        if ((waited >= limit)); then
            problem "cargo/rustc still running after ${limit}s; measuring anyway"
            break
        fi
        sleep 10
        waited=$((waited + 10))
    done
    log "waited ${waited}s for cargo/rustc"
}
