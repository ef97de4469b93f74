#!/usr/bin/env bash
# Creates .venv (if missing) with the stack the project needs and installs mmttsrn editable.
# Idempotent: installed packages are kept; the mmcv wheel (compiled ops, ~12 min to build on
# 2 cores) is built once and cached in $MMTTSRN_CACHE (default ~/.cache/mmttsrn).
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
CACHE=${MMTTSRN_CACHE:-$HOME/.cache/mmttsrn}
MMCV_VERSION=$(sed -n 's/^mmcv==//p' requirements/mmcv.txt)
mkdir -p "$CACHE/wheels"

step() { echo "[install] $*"; }
pip_q() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@"; }

if [ ! -x "$VENV/bin/python" ]; then
  step "creating $VENV"
  "$PY" -m venv "$VENV"
fi

step "build tools and torch"
pip_q -r requirements/build.txt -r requirements/torch.txt

if "$VENV/bin/python" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  step "mmcv $MMCV_VERSION with ops already installed"
else
  wheel=$(ls "$CACHE"/wheels/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    log="$CACHE/mmcv-$MMCV_VERSION-build.log"
    step "building mmcv $MMCV_VERSION with ops from its sdist (about 12 min on 2 cores); log: $log"
    src=$(mktemp -d)
    trap 'rm -rf "$src"' EXIT
    if ! {
      "$VENV/bin/python" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
        "mmcv==$MMCV_VERSION" -d "$src" &&
      tar -xzf "$src"/mmcv-"$MMCV_VERSION".tar.gz -C "$src" &&
      # torch >= 2.10 headers need C++20; mmcv 2.1 pins -std=c++17.
      sed -i 's/-std=c++17/-std=c++20/g' "$src/mmcv-$MMCV_VERSION/setup.py" &&
      MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$VENV/bin/python" -m pip wheel \
        --no-deps --no-build-isolation -w "$CACHE/wheels" "$src/mmcv-$MMCV_VERSION"
    } >"$log" 2>&1; then
      echo "[install] ERROR: building mmcv $MMCV_VERSION (compiled ops) failed; see $log" >&2
      tail -n 20 "$log" >&2
      exit 1
    fi
    wheel=$(ls "$CACHE"/wheels/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)
  fi
  step "installing $wheel"
  pip_q --no-deps "$wheel"
fi

step "runtime, test and lint requirements"
pip_q -r requirements.txt -r requirements/lint.txt
# mmcv's own dependencies (it was installed with --no-deps).
pip_q addict packaging Pillow pyyaml yapf opencv-python
# ONNX export and inference: only tools/deployment and mmttsrn.apis'
# ONNX entry import them. Skipped when the pinned versions are there.
if "$VENV/bin/python" - requirements/onnx.txt <<'PY' 2>/dev/null; then
import sys
from importlib.metadata import version
pins = [line.split('#')[0].strip() for line in open(sys.argv[1])]
sys.exit(any(version(name) != want
             for name, want in (pin.split('==') for pin in pins if pin)))
PY
  step "onnx, onnxruntime and onnxscript already installed"
else
  step "onnx, onnxruntime and onnxscript (requirements/onnx.txt)"
  pip_q -r requirements/onnx.txt
fi
step "mmttsrn (editable)"
pip_q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import mmttsrn, mmcv.ops; print('[install] ok: mmttsrn', mmttsrn.__version__)"
