#!/usr/bin/env bash
# Create the virtual environment and install the pinned packages.
# PyTorch is installed first, CPU build only: a CUDA build is several GB and never wanted here
# (GPU machines install their own CUDA build on purpose, see README "Scaling").
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "synthocr needs Python >= 3.11; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    # Debian and Ubuntu ship venv/ensurepip separately (python3-venv).
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        else
            echo "synthocr: $PYTHON cannot create virtual environments; install python3-venv" >&2
            exit 1
        fi
    fi
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
TORCH=torch==2.13.0
if "$VENV/bin/python" -c 'import torch, sys; sys.exit(torch.__version__.split("+")[0] != "2.13.0")' 2>/dev/null; then
    :  # already there
elif "${PIP[@]}" download -q --no-deps --no-index -d "$(mktemp -d)" "$TORCH" >/dev/null 2>&1; then
    "${PIP[@]}" install -q "$TORCH"          # a local CPU wheel is configured (find-links)
else
    "${PIP[@]}" install -q "$TORCH" --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple
fi
"${PIP[@]}" install -q -e '.[dev]'
"$VENV/bin/python" - <<'PY'
import torch
if torch.version.cuda is not None:
    raise SystemExit(f"a CUDA build of torch was installed ({torch.__version__}); expected the CPU build")
print(f"torch {torch.__version__} (CPU build) ready")
PY
