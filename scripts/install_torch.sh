#!/usr/bin/env bash
# Install PyTorch into the given interpreter's environment unless one is already there.
# - a torch already importable (CUDA or CPU build): keep it;
# - an NVIDIA GPU visible (nvidia-smi): the regular build from PyPI (CUDA);
# - otherwise the CPU build, explicitly: `torch==X+cpu` (a local wheel or a pip index that has it,
#   e.g. TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu), so pip never pulls CUDA packages.
set -euo pipefail
py=${1:?usage: install_torch.sh PYTHON [VERSION]}
version=${2:-2.13.0}

if "$py" -c "import torch" 2>/dev/null; then
  "$py" -c "import torch; print(f'torch {torch.__version__} already installed (cuda: {torch.version.cuda})')"
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "GPU found: installing torch==$version (CUDA build)"
  exec "$py" -m pip install "torch==$version"
fi
echo "no GPU: installing the CPU build torch==$version+cpu"
if [ -n "${TORCH_CPU_INDEX:-}" ]; then
  exec "$py" -m pip install "torch==$version+cpu" --extra-index-url "$TORCH_CPU_INDEX"
fi
exec "$py" -m pip install "torch==$version+cpu"
