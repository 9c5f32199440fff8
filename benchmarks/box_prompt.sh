#!/usr/bin/env bash
# Oracle row: box_prompt (LiteMedSAM + ground-truth box) on every image of each dataset.
# Usage: bash benchmarks/box_prompt.sh   (~40 min on the 2-core CPU; fills .cache/embeddings, reused by later benchmarks)
set -euo pipefail
cd "$(dirname "$0")/.."
RP=.venv/bin/roiprompt
$RP bench box_prompt --dataset kvasir_seg --cache-dir .cache/embeddings --json benchmarks/results/box_prompt_kvasir_seg.json
$RP bench box_prompt --dataset busbra --cache-dir .cache/embeddings --json benchmarks/results/box_prompt_busbra.json
$RP bench box_prompt --dataset jsrt --cache-dir .cache/embeddings --json benchmarks/results/box_prompt_jsrt.json
.venv/bin/python benchmarks/make_results.py
