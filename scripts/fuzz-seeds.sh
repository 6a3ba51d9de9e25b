#!/usr/bin/env bash
# Fills corpus/<target>/ with seed inputs for every fuzz target, from the PyTorch-made
# corpus and from generated cases:
#   zip_load, flatbuffer_load   the corpus archives plus `ptconform gen` cases
#   pickle                      every .pkl record of the corpus zips
#   code_parse                  every code/*.py record of the corpus zips
#   roundtrip_*, convert        generator input bytes (deterministic)
# then minimizes each target's seeds with `cargo fuzz cmin` (keeping the smallest set of
# inputs with the same coverage; `regression-*` inputs are always kept).
# Run from anywhere: bash scripts/fuzz-seeds.sh [--no-minimize]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin=target/release/ptconform
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
for t in zip_load flatbuffer_load pickle code_parse roundtrip_zip roundtrip_flatbuffer convert; do
    # Crash inputs found by fuzzing (regression-*) are kept across regenerations.
    mkdir -p "$tmp/keep/$t" "corpus/$t"
    find "corpus/$t" -name 'regression-*' -exec mv {} "$tmp/keep/$t/" \;
    rm -rf "corpus/$t"; mkdir -p "corpus/$t"
done
cp corpus/*.pt corpus/zip_load/
cp corpus/*.ptl corpus/flatbuffer_load/
"$bin" gen --seed 1 --count 16 --out "$tmp/gen" >/dev/null
cp "$tmp"/gen/*.pt corpus/zip_load/
cp "$tmp"/gen/*.ptl corpus/flatbuffer_load/
python3 - <<'PY'
import glob, hashlib, os, zipfile
for path in sorted(glob.glob("corpus/*.pt")):
    z = zipfile.ZipFile(path)
    for info in z.infolist():
        data = z.read(info)
        name = hashlib.sha1(data).hexdigest()[:16]
        if info.filename.endswith(".pkl"):
            open(os.path.join("corpus/pickle", name), "wb").write(data)
        elif "/code/" in info.filename and info.filename.endswith(".py"):
            open(os.path.join("corpus/code_parse", name), "wb").write(data)
PY
python3 - <<'PY'
import os, struct
def splitmix(seed, index, n):
    state = (seed ^ (index * 0x9E3779B97F4A7C15)) & (2**64 - 1)
    out = bytearray()
    while len(out) < n:
        state = (state + 0x9E3779B97F4A7C15) & (2**64 - 1)
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
        out += struct.pack("<Q", z ^ (z >> 31))
    return bytes(out[:n])
for t in ("roundtrip_zip", "roundtrip_flatbuffer", "convert"):
    for i in range(16):
        open(f"corpus/{t}/seed-{i:02}", "wb").write(splitmix(2, i, 512 + 256 * i))
PY
for t in zip_load flatbuffer_load pickle code_parse roundtrip_zip roundtrip_flatbuffer convert; do
    before=$(ls "corpus/$t" | wc -l)
    if [ "${1:-}" != --no-minimize ]; then
        # Regression inputs (still in $tmp/keep) stay whatever their coverage.
        (cd fuzz && cargo fuzz cmin --sanitizer none "$t" "../corpus/$t" -- -rss_limit_mb=2048 \
            >"$tmp/cmin-$t.log" 2>&1) || { tail -5 "$tmp/cmin-$t.log"; exit 1; }
    fi
    cp "$tmp/keep/$t"/* "corpus/$t/" 2>/dev/null || true
    echo "corpus/$t: $before seeds, $(ls "corpus/$t" | wc -l) after minimizing"
done
