#!/usr/bin/env bash
# Med-PerSAM ablations on JSRT (all 5 structures, 5 seeded references, first 50 test images): the spec's
# refinement (T = 3 rounds) and the paper's point prompts, both switched off by default for LiteMedSAM.
# Usage: bash benchmarks/oneshot_ablation.sh   (~25 min, one thread each, two runs side by side)
set -euo pipefail
cd "$(dirname "$0")/.."
RP=.venv/bin/roiprompt
export OMP_NUM_THREADS=1
run() {  # name config...
  local name=$1; shift
  $RP bench med_persam --dataset jsrt --seeds 5 --limit 50 --cache-dir .cache/embeddings "$@" \
    --json "benchmarks/results/oneshot_med_persam_jsrt_${name}.json"
}
run refine3 --config refine_rounds=3 > /tmp/ablation_refine.log 2>&1 &
run points --config points=subregion --config multimask=true > /tmp/ablation_points.log 2>&1 &
wait
.venv/bin/python benchmarks/make_results.py
