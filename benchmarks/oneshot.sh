#!/usr/bin/env bash
# One-shot segmentation (issue 4): Med-PerSAM and its baselines, 5 seeded references from each train split,
# the first 100 test images as targets. Two streams run side by side, one thread each (the machine has 2 cores).
# Usage: bash benchmarks/oneshot.sh   (~60 min on the 2-core CPU with .cache/embeddings filled by box_prompt.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
RP=.venv/bin/roiprompt
export OMP_NUM_THREADS=1
stream() {  # one dataset after another, every method
  for ds in "$@"; do
    for m in med_persam registration persam persam_f; do
      $RP bench $m --dataset "$ds" --seeds 5 --limit 100 --cache-dir .cache/embeddings \
        --json "benchmarks/results/oneshot_${m}_${ds}.json"
    done
  done
}
stream jsrt > /tmp/oneshot_stream1.log 2>&1 &
stream kvasir_seg busbra > /tmp/oneshot_stream2.log 2>&1 &
wait
.venv/bin/python benchmarks/make_results.py
