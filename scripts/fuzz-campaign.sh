#!/usr/bin/env bash
# One measured fuzzing run, for the numbers quoted in the README and issue notes.
#   scripts/fuzz-campaign.sh TARGET SECONDS [mutator|bytes] [LOGDIR]
# Starts from the committed seeds (copied, so corpus/ is not touched), one core, and
# prints libFuzzer's final line (runs, cov = edges, ft = features, corp) and execs/s.
# `bytes` turns the structure-aware custom mutator off (PTCONFORM_NO_CUSTOM_MUTATOR=1)
# to compare it with libFuzzer's byte mutations alone. PTCONFORM_KEEP_CORPUS=DIR keeps the
# corpus the run grew (for fuzz_cost, or to replay it on another build).
set -euo pipefail
cd "$(dirname "$0")/.."
t="$1"; secs="$2"; mode="${3:-mutator}"; logdir="${4:-target/fuzz-campaign}"
mkdir -p "$logdir"; logdir="$(cd "$logdir" && pwd)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
cp -r "corpus/$t/." "$work/corpus/"
log="$logdir/$t-$mode-${secs}s.log"
if [ "$mode" = bytes ]; then export PTCONFORM_NO_CUSTOM_MUTATOR=1; fi
(cd fuzz && cargo fuzz run --sanitizer none "$t" "$work/corpus" -- \
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
echo "$t $mode ${secs}s: $last | execs/s $eps | crashes $crashes (log $log)"
