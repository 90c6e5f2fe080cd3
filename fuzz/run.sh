#!/usr/bin/env bash
# Runs the cargo-fuzz targets, each for a bounded time, then minimises each corpus.
#
#   fuzz/run.sh [SECONDS] [TARGET...]        (or FUZZ_SECONDS=SECONDS fuzz/run.sh)
#
# SECONDS per target defaults to 60; TARGET defaults to all of them. New inputs land in
# fuzz/corpus/<target>/, which `cargo fuzz cmin` then shrinks to the inputs that add coverage
# (commit the result). Crashes are saved in fuzz/artifacts/<target>/ (not committed): fix
# the crate, add the input to the corpus and a regression test, then rerun.
#
# Works on the stable toolchain (RUSTC_BOOTSTRAP=1 unlocks the sanitizer flags cargo-fuzz
# passes). One fuzzer process at a time, at low priority: the machine is shared. (No -jobs or
# -fork: libFuzzer then runs in this one process; -jobs=1 would add a supervising process and
# move the output to fuzz-0.log.)
set -euo pipefail
cd "$(dirname "$0")"

ALL=(request_decode token_verify wal_recovery snapshot_reader peer_decode)
secs="${FUZZ_SECONDS:-60}"
if [[ $# -gt 0 && $1 =~ ^[0-9]+$ ]]; then
    secs=$1
    shift
fi
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${ALL[@]}")

export RUSTC_BOOTSTRAP=1
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# wal_recovery writes a small log directory per input: keep that on a tmpfs when there is one.
if [[ -z ${TMPDIR:-} && -d /dev/shm && -w /dev/shm ]]; then
    export TMPDIR=/dev/shm
fi

nice -n 10 cargo fuzz build

status=0
mkdir -p logs
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    echo "== $t: ${secs}s"
    log="logs/$t.log"
    dict=()
    [[ -f dict/$t.dict ]] && dict=(-dict="dict/$t.dict")
    if nice -n 10 cargo fuzz run "$t" "corpus/$t" -- "${dict[@]}" \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see $log and artifacts/$t/)"
        status=1
    fi
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || true)
    echo "   executions: ${runs:-?}  result: $result"
    grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY)' "$log" | head -5 || true
    # Edges only (no hit counters), smallest covering set: a corpus small enough to commit.
    # The merge renames files by content hash; seed-* and crash-* files keep their names.
    keep=$(mktemp -d)
    cp corpus/"$t"/seed-* corpus/"$t"/crash-* "$keep"/ 2>/dev/null || true
    nice -n 10 cargo fuzz cmin "$t" "corpus/$t" -- -use_counters=0 -set_cover_merge=1 \
        >"logs/$t.cmin.log" 2>&1 ||
        echo "   (cmin failed, see logs/$t.cmin.log)"
    for f in "$keep"/*; do
        [[ -e $f ]] || continue
        rm -f "corpus/$t/$(sha1sum <"$f" | cut -d' ' -f1)"
        cp "$f" "corpus/$t/"
    done
    rm -rf "$keep"
    echo "   corpus: $(find "corpus/$t" -type f | wc -l) files, $(cat corpus/"$t"/* | wc -c) bytes"
done
exit $status
