#!/usr/bin/env bash
# Create the virtual environment and install the pinned packages.
# PyTorch is installed first. TORCH=cpu (the default) installs the CPU build, never a CUDA one
# (several GB, of no use without a GPU). TORCH=cuda, asked for on a GPU machine
# (`make setup TORCH=cuda`), installs the CUDA build of the same version: PyPI's default Linux
# wheel, or the one from TORCH_INDEX_URL (e.g. https://download.pytorch.org/whl/cu128); a CUDA
# build from another index than TORCH_INDEX_URL is replaced (unset, any CUDA build is kept).
set -euo pipefail
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_BUILD=${TORCH:-cpu}
case "$TORCH_BUILD" in
    cpu | cuda) ;;
    *) echo "synthocr: TORCH=$TORCH_BUILD: give cpu (the default) or cuda" >&2; exit 1 ;;
esac
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "synthocr needs Python >= 3.11; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    # Debian and Ubuntu ship venv/ensurepip separately (python3-venv): installed as root, or with
    # sudo when it needs no password (sudo -n never prompts); otherwise the apt-get line is printed.
    if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        elif command -v sudo >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo -n apt-get update -qq \
                && sudo -n DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        else
            echo "synthocr: $PYTHON cannot create virtual environments; install python3-venv:" >&2
            echo "  sudo apt-get install python3-venv" >&2
            exit 1
        fi
    fi
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)
TORCH_PIN=torch==2.13.0
# The index a CUDA build came from (empty: PyPI's), so that another TORCH_INDEX_URL replaces it.
INDEX_RECORD="$VENV/.synthocr-torch-index"
# The installed torch is kept when it is the pinned version of the asked-for build and, for a
# CUDA build with TORCH_INDEX_URL set, was installed from that index.
have_torch() {
    TORCH_BUILD=$TORCH_BUILD "$VENV/bin/python" - 2>/dev/null <<'PY' || return 1
import os, sys, torch
build = "cuda" if torch.version.cuda is not None else "cpu"
sys.exit(torch.__version__.split("+")[0] != "2.13.0" or build != os.environ["TORCH_BUILD"])
PY
    if [ "$TORCH_BUILD" = cuda ] && [ -n "${TORCH_INDEX_URL:-}" ]; then
        [ -f "$INDEX_RECORD" ] && [ "$(cat "$INDEX_RECORD")" = "$TORCH_INDEX_URL" ]
    fi
}
if have_torch; then
    :  # already there
else
    # Another version or build (CPU for CUDA, or the reverse): pip would take 2.13.0 of either
    # build as satisfying the pin, so it goes first.
    if "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
        "${PIP[@]}" uninstall -q -y torch
    fi
fi
# Whether pip finds the pinned wheel without an index (a configured find-links folder): the
# probe downloads it into a folder of its own, removed after (a 183 MB copy otherwise left in /tmp).
local_cpu_wheel() {
    local probe found=1
    probe=$(mktemp -d)
    if "${PIP[@]}" download -q --no-deps --no-index -d "$probe" "$TORCH_PIN" >/dev/null 2>&1; then
        found=0
    fi
    rm -rf "$probe"
    return "$found"
}
if have_torch; then
    :
elif [ "$TORCH_BUILD" = cuda ]; then
    "${PIP[@]}" install -q "$TORCH_PIN" \
        ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple}
    printf '%s' "${TORCH_INDEX_URL:-}" > "$INDEX_RECORD"
elif local_cpu_wheel; then
    "${PIP[@]}" install -q "$TORCH_PIN"      # a local CPU wheel is configured (find-links)
    rm -f "$INDEX_RECORD"
else
    "${PIP[@]}" install -q "$TORCH_PIN" --index-url https://download.pytorch.org/whl/cpu \
        --extra-index-url https://pypi.org/simple
    rm -f "$INDEX_RECORD"
fi
"${PIP[@]}" install -q -e '.[dev,tensorboard]'
if ! have_torch; then
    echo "synthocr: expected the $TORCH_BUILD build of $TORCH_PIN, got: $("$VENV/bin/python" -c \
        'import torch; print(torch.__version__, "CUDA", torch.version.cuda)' 2>&1)" >&2
    exit 1
fi
echo "torch 2.13.0 ($TORCH_BUILD build) ready"
