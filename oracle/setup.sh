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
#
# `bash oracle/setup.sh --models` additionally installs, into the 2.15.0 venv, the model
# libraries used by oracle/makers/make_models.py (the real-model corpus), at exact pins, every
# package with --no-deps so pip can never replace torch (torchvision/torchaudio pin an
# older torch in their metadata):
#   torchvision 0.29.2, torchaudio 2.11.1, timm 1.0.31
#   + what they import: pillow (torchvision), pyyaml, safetensors, huggingface_hub and its
#     own dependencies (timm)
# Idempotent: nothing is installed when every pin is already there. Still prints only the
# python path on stdout. No weights are ever downloaded (make_models.py uses random
# weights and points TORCH_HOME / HF_HOME at an empty temp dir with HF_HUB_OFFLINE=1).
set -euo pipefail

MODELS=0
if [ "${1:-}" = "--models" ]; then
    MODELS=1
    shift
fi
TORCH_VERSION="${1:-2.15.0}"
if [ "$MODELS" = 1 ] && [ "$TORCH_VERSION" != "2.15.0" ]; then
    echo "setup.sh: --models is only supported for torch 2.15.0" >&2
    exit 2
fi
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

# exact pins of oracle/makers/make_models.py's libraries (and their whole dependency closure,
# as resolved by pip on 2.15.0 / CPython 3.11), installed with --no-deps
MODEL_PINS=(
    torchvision==0.29.2 torchaudio==2.11.1 timm==1.0.31
    pillow==13.0.0 pyyaml==6.0.4 safetensors==0.8.0 huggingface_hub==2.4.0
    packaging==26.4 tqdm==4.70.1 hf-xet==1.8.0 click==8.5.1 httpx2==2.16.2
    httpcore2==2.16.2 h11==0.16.0 anyio==4.16.0 idna==3.20 truststore==0.10.5
)

models_ok() {
    "$PY" - "${MODEL_PINS[@]}" >/dev/null 2>&1 <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for pin in sys.argv[1:]:
    name, want = pin.split("==")
    try:
        have = version(name)
    except PackageNotFoundError:
        sys.exit(1)
    if have.split("+")[0] != want:
        sys.exit(1)
PYEOF
}

install_models() {
    if models_ok; then
        return 0
    fi
    echo "setup.sh: installing the model libraries into $VENV: ${MODEL_PINS[*]}" >&2
    "$PY" -m pip install --disable-pip-version-check --no-cache-dir --no-deps "${MODEL_PINS[@]}" >&2
    if ! models_ok; then
        echo "setup.sh: model library pins still not satisfied in $VENV" >&2
        exit 1
    fi
    if ! torch_ok; then
        echo "setup.sh: installing the model libraries changed torch in $VENV" >&2
        exit 1
    fi
    "$PY" -c 'import torchvision, torchaudio, timm' >&2 || {
        echo "setup.sh: torchvision / torchaudio / timm do not import" >&2
        exit 1
    }
}

if torch_ok; then
    if [ "$MODELS" = 1 ]; then
        install_models
    fi
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

"$PY" -m pip install --disable-pip-version-check --no-cache-dir --quiet --upgrade pip >&2 || true
# expecttest is only needed so torch.testing._internal.jit_utils (clear_class_registry)
# can be imported; make_corpus.py falls back to the same three calls without it.
"$PY" -m pip install --disable-pip-version-check --no-cache-dir "torch==$TORCH_VERSION" "$NUMPY" expecttest >&2

if ! torch_ok; then
    echo "setup.sh: torch $TORCH_VERSION still not importable from $PY" >&2
    exit 1
fi

if [ "$MODELS" = 1 ]; then
    install_models
fi

echo "$PY"
