#!/usr/bin/env bash
# One measured fuzzing run, for the numbers quoted in the README and issue notes.
#   scripts/fuzz-campaign.sh TARGET SECONDS [mutator|bytes] [LOGDIR]
# Starts from the committed seeds (copied, so corpus/ is not touched), one core, and
# prints libFuzzer's final line (runs, cov = edges, ft = features, corp) and execs/s.
# `bytes` turns the structure-aware custom mutator off (PTCONFORM_NO_CUSTOM_MUTATOR=1)
# to compare it with libFuzzer's byte mutations alone. PTCONFORM_KEEP_CORPUS=DIR keeps the
# corpus the run grew (for fuzz_cost, or to replay it on another build).
# PTCONFORM_FUZZ_LEAN_DEPS=1 fuzzes a build whose deflate, CRC and hash libraries are not
# instrumented (fuzz/uninstrumented-deps.sh, target dir target/fuzz-lean), then replays the
# grown corpus on the regular, fully instrumented build, so its "full cov" compares with
# runs of that build.
set -euo pipefail
cd "$(dirname "$0")/.."
t="$1"; secs="$2"; mode="${3:-mutator}"; logdir="${4:-target/fuzz-campaign}"
mkdir -p "$logdir"; logdir="$(cd "$logdir" && pwd)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
cp -r "corpus/$t/." "$work/corpus/"
log="$logdir/$t-$mode-${secs}s.log"
if [ "$mode" = bytes ]; then export PTCONFORM_NO_CUSTOM_MUTATOR=1; fi
lean=()
if [ -n "${PTCONFORM_FUZZ_LEAN_DEPS:-}" ]; then
    lean=(env RUSTC_WRAPPER="$PWD/fuzz/uninstrumented-deps.sh" CARGO_TARGET_DIR="$PWD/target/fuzz-lean")
fi
(cd fuzz && "${lean[@]}" cargo fuzz run --sanitizer none "$t" "$work/corpus" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" >"$log" 2>&1) || true
last="$(grep -E '^#[0-9]+' "$log" | tail -1)"
eps="$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo ?)"
crashes="$(ls "$work/artifacts" | wc -l)"
if [ "$crashes" != 0 ]; then
    mkdir -p "fuzz/artifacts/$t" && cp "$work/artifacts"/* "fuzz/artifacts/$t/"
fi
if [ -n "${PTCONFORM_KEEP_CORPUS:-}" ]; then
    mkdir -p "$PTCONFORM_KEEP_CORPUS" && cp -r "$work/corpus/." "$PTCONFORM_KEEP_CORPUS/"
fi
full=""
if [ -n "${PTCONFORM_FUZZ_LEAN_DEPS:-}" ]; then
    (cd fuzz && cargo fuzz run --sanitizer none "$t" "$work/corpus" -- -runs=0 \
        -rss_limit_mb=2048 -timeout=20 >"$log.replay" 2>&1) || true
    full=" | full cov: $(grep -E '^#[0-9]+' "$log.replay" | tail -1 | grep -oE 'cov: [0-9]+ ft: [0-9]+')"
fi
echo "$t $mode ${secs}s: $last | execs/s $eps$full | crashes $crashes (log $log)"
