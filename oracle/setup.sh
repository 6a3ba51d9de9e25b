#!/usr/bin/env bash
# Create (or reuse) the Python venv holding the real PyTorch 2.15.0 used as the oracle.
#
#   VENV=${PTCONFORM_TORCH_VENV:-$HOME/.cache/ptconform/venv-torch-2.15.0}
#
# `bash oracle/setup.sh 2.6.0` (or 2.0.1) makes the venv of an older release for the
# cross-version corpus (venv-torch-<version>; numpy<2 for releases before 2.3).
#
# Idempotent: when "$VENV/bin/python" already imports torch 2.15.0 nothing is done.
# Prints the venv's python path as the last (and only stdout) line, so callers can do
#   PY=$(bash oracle/setup.sh)
# All progress messages go to stderr.
set -euo pipefail

TORCH_VERSION="${1:-2.15.0}"
if [ "$TORCH_VERSION" = "2.15.0" ]; then
    VENV="${PTCONFORM_TORCH_VENV:-$HOME/.cache/ptconform/venv-torch-2.15.0}"
    NUMPY="numpy"
else
    VENV="$HOME/.cache/ptconform/venv-torch-$TORCH_VERSION"
    NUMPY="numpy<2"
fi
PY="$VENV/bin/python"

torch_ok() {
    [ -x "$PY" ] && "$PY" -c 'import torch,sys; sys.exit(torch.__version__.split("+")[0]!="'"$TORCH_VERSION"'")' \
        >/dev/null 2>&1
}

if torch_ok; then
    echo "$PY"
    exit 0
fi

echo "setup.sh: installing torch==$TORCH_VERSION into $VENV (this downloads several GB)" >&2

if ! command -v python3 >/dev/null 2>&1; then
    echo "setup.sh: python3 not found (need CPython 3.11 with the venv module)" >&2
    exit 1
fi

mkdir -p "$(dirname "$VENV")"
if [ ! -x "$PY" ]; then
    if ! python3 -m venv "$VENV" >&2; then
        echo "setup.sh: 'python3 -m venv' failed; on Debian run: apt-get install -y python3-venv" >&2
        exit 1
    fi
fi

"$PY" -m pip install --disable-pip-version-check --quiet --upgrade pip >&2 || true
# expecttest is only needed so torch.testing._internal.jit_utils (clear_class_registry)
# can be imported; make_corpus.py falls back to the same three calls without it.
"$PY" -m pip install --disable-pip-version-check "torch==$TORCH_VERSION" "$NUMPY" expecttest >&2

if ! torch_ok; then
    echo "setup.sh: torch $TORCH_VERSION still not importable from $PY" >&2
    exit 1
fi

echo "$PY"
