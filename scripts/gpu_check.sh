#!/usr/bin/env bash
# Prove the GPU path on a machine with one CUDA device, in a few minutes: the GPU tests (the
# generative mechanisms, regret and training on CUDA against the CPU), then the generative
# benchmarks on the GPU (the allocation by beam count and batch size, prices by bid response,
# grid regret, with peak memory). Run from the repository root after `pip install -e ".[dev]"`:
#   scripts/gpu_check.sh                 # or: scripts/gpu_check.sh runs/feed_small_ega
# An argument names a trained ega checkpoint; without one the benchmark trains one briefly.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to check')"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
python -m pytest -q -m gpu tests/test_gpu.py
checkpoint=()
if [ "$#" -ge 1 ]; then checkpoint=(--checkpoint "$1"); fi
ega-sim bench --suite ega --device cuda "${checkpoint[@]}"
ega-sim bench --suite position --device cuda --requests 1000000 --repeats 3
