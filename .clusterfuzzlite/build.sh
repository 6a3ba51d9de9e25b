#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build: every cargo-fuzz target with its seed corpus.
cd "$SRC/ptconform/fuzz"
cargo fuzz build -O
for t in zip_load flatbuffer_load pickle code_parse roundtrip_zip roundtrip_flatbuffer convert; do
    cp "target/x86_64-unknown-linux-gnu/release/$t" "$OUT/"
    (cd "$SRC/ptconform/corpus/$t" && zip -q -r "$OUT/${t}_seed_corpus.zip" .)
done
