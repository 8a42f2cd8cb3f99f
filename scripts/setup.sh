#!/usr/bin/env bash
# Creates .venv and installs rollspec with its test tools. Idempotent and quick when
# nothing changed. On a machine without an NVIDIA GPU it installs the CPU build of the
# pinned torch first, so no later requirement can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.13.0
PYTHON=${PYTHON:-python3}

pip_install() {
    local log
    log=$(mktemp)
    if ! .venv/bin/python -m pip install --disable-pip-version-check "$@" >"$log" 2>&1; then
        grep -v "is ignored" "$log" >&2
        echo "setup: pip install $* failed" >&2
        exit 1
    fi
    rm -f "$log"
}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=".venv/.setup-$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)"
[ -f "$stamp" ] && exit 0
echo "setup: installing into .venv (first run takes a minute)" >&2
pip_install "torch==$TORCH_VERSION"
has_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then has_gpu=1; fi
if [ "$has_gpu" = 0 ] && ! .venv/bin/python -c "import sys, torch; sys.exit(torch.version.cuda is not None)"; then
    echo "setup: no GPU here but the installed torch is a CUDA build; install the CPU wheel with" >&2
    echo "  .venv/bin/pip install torch==$TORCH_VERSION --index-url https://download.pytorch.org/whl/cpu" >&2
    exit 1
fi
pip_install -e '.[test]'
.venv/bin/python -c "import rollspec, torch, transformers"
rm -f .venv/.setup-*
touch "$stamp"
