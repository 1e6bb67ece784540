#!/usr/bin/env bash
# Fail a GPU worker's setup loudly when its driver cannot run torch 2.14.1's CUDA 13 build (needs an NVIDIA
# driver of branch 580 or newer) instead of letting trials fall back to the CPU.
set -euo pipefail
driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n1)"
if (( ${driver%%.*} < 580 )); then
  echo "NVIDIA driver $driver is too old for torch's CUDA 13 build (needs >= 580): use a newer AMI" >&2
  exit 1
fi
python -c "import torch; assert torch.cuda.is_available(), 'torch sees no GPU'; \
print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0), 'driver $driver')"
