#!/usr/bin/env bash
# A RUSTC_WRAPPER for fuzz builds that compiles well-tested libraries ptconform does not
# fuzz (deflate, CRC, hashing) without libFuzzer's coverage and comparison
# instrumentation: in their tight loops every comparison called a hook, about half of a
# round-trip target's time. ptconform's own crates stay instrumented.
#   RUSTC_WRAPPER="$PWD/fuzz/uninstrumented-deps.sh" cargo fuzz build --sanitizer none
rustc="$1"; shift
crate=""; prev=""
for a in "$@"; do
    if [ "$prev" = "--crate-name" ]; then crate="$a"; fi
    prev="$a"
done
case "$crate" in
    miniz_oxide|adler2|crc32fast|sha2|digest|block_buffer|cpufeatures|flate2|memchr)
        args=()
        for a in "$@"; do
            case "$a" in
                -Cpasses=sancov-module|-Cllvm-args=-sanitizer-coverage-*) ;;
                *) args+=("$a") ;;
            esac
        done
        exec "$rustc" "${args[@]}"
        ;;
esac
exec "$rustc" "$@"
