#!/usr/bin/env bash
# The whole cross-version campaign, which CI cannot fit (each release is a ~5 GB venv):
# for every PyTorch release given (default: every one with a corpus/torch-<version>/
# directory), make its venv (oracle/setup.sh VERSION), optionally regenerate its corpus,
# then run the release's tests and a conform campaign written as that release writes and
# loaded by that release.
#
#   scripts/cross-version.sh                    # every release in corpus/torch-*/
#   scripts/cross-version.sh 2.3.1 2.4.1        # these releases
#   REGEN=1 CASES=1000 scripts/cross-version.sh 2.5.1
#
# CI runs tests/pytorch/cross_version.rs against the committed files only: every release's
# archives read with their facts and re-save byte for byte; the release-specific PyTorch
# tests there skip (saying so) without the older venvs.
set -euo pipefail
cd "$(dirname "$0")/.."

CASES="${CASES:-300}"
if [ "$#" -eq 0 ]; then
    set -- $(ls -d corpus/torch-*/ | sed -n 's|corpus/torch-\([0-9][0-9.]*\)/|\1|p')
fi
cargo build --release --locked
for version in "$@"; do
    echo "== PyTorch $version" >&2
    py="$(bash oracle/setup.sh "$version")"
    if [ "${REGEN:-0}" = 1 ]; then
        "$py" oracle/makers/make_corpus.py "corpus/torch-$version" --no-twins
    fi
    ./target/release/ptconform conform --cases "$CASES" --as-pytorch "$version" \
        --torch "$py" --corpus /nonexistent
done
# The release tests run once, over every venv now present.
cargo test --release --locked --test pytorch cross_version:: -- --nocapture
