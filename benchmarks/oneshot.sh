#!/usr/bin/env bash
# One-shot segmentation (issue 4): Med-PerSAM and its baselines, 5 seeded references from each train split,
# the first 100 test images as targets; plus two Med-PerSAM ablations on JSRT (the spec's refinement T = 3, and
# point prompts on LiteMedSAM). Two streams run side by side, one thread each (the machine has 2 cores).
# Usage: bash benchmarks/oneshot.sh [method ...]  (~70 min on the 2-core CPU with .cache/embeddings filled by
# box_prompt.sh; per-image times here are single-threaded: see oneshot_speed.py for the 2-thread figures)
set -euo pipefail
cd "$(dirname "$0")/.."
RP=.venv/bin/roiprompt
export OMP_NUM_THREADS=1
METHODS=${*:-med_persam registration persam persam_f}
bench() {  # method dataset [extra args]
  local m=$1 ds=$2; shift 2
  $RP bench "$m" --dataset "$ds" --seeds 5 --limit 100 --cache-dir .cache/embeddings "$@"
}
stream() {
  for ds in "$@"; do
    for m in $METHODS; do
      bench "$m" "$ds" --json "benchmarks/results/oneshot_${m}_${ds}.json"
    done
  done
}
stream jsrt > /tmp/oneshot_jsrt.log 2>&1 &
stream kvasir_seg busbra > /tmp/oneshot_kvasir_busbra.log 2>&1 &
wait
.venv/bin/python benchmarks/make_results.py
