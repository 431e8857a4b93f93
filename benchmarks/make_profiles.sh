#!/usr/bin/env bash
# Regenerate the shipped calibration profiles from the measured tables in ../shared/data/measured.
set -euo pipefail
cd "$(dirname "$0")/.."
perfsim calibrate --hardware h100-sxm --out perfsim/profiles/h100-sxm.yaml \
  --from aic-h100-gemm --from vidur-h100 --from aic-h100-context-attention \
  --from aic-h100-generation-attention --from aic-h100-moe
perfsim calibrate --hardware a100-sxm-80gb --out perfsim/profiles/a100-sxm-80gb.yaml \
  --from vidur-a100 --from llmcompass-a100-matmul --from llmcompass-a100-softmax \
  --from llmcompass-a100-layernorm --from llmcompass-a100-gelu
perfsim calibrate --hardware a40 --out perfsim/profiles/a40.yaml --from vidur-a40
