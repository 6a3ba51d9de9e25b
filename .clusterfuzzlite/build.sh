#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build: every cargo-fuzz target with its seed corpus.
cd "$SRC/ptconform/fuzz"
# Without mimalloc (the default feature): the sanitizer must see every allocation.
cargo fuzz build -O --no-default-features
# The targets are fuzz/Cargo.toml's binaries (fuzz/src/lib.rs tests that list).
for t in $(cargo fuzz list); do
    cp "../target/x86_64-unknown-linux-gnu/release/$t" "$OUT/"
    (cd "$SRC/ptconform/corpus/$t" && zip -q -r "$OUT/${t}_seed_corpus.zip" .)
done
