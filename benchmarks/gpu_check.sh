#!/usr/bin/env bash
# One-GPU check of decoding speed (3B-shaped random model, bf16, 512x512, batch 1 and 8,
# sequential vs speculative): see benchmarks/gpu_check.py. Meant to finish in <= 5 minutes.
#   bash benchmarks/gpu_check.sh            # on the GPU machine
#   bash benchmarks/gpu_check.sh --dry-run  # tiny shape on the CPU: checks that it runs
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
exec timeout 300 python benchmarks/gpu_check.py "$@"
