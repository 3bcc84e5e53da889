#!/usr/bin/env bash
# The medium campaign (issue 20): 12 fine-tuning epochs from the short campaign's
# seed-0 baseline. Rerun to resume (finished runs are skipped).
# First 2 seeds of finetune, to check that fine-tuning moves the baseline's
# hold-out accuracy; then 5 seeds of finetune and lns, then 3 of lns_no_noisy.
cd "$(dirname "$0")/../.."  # the repository root, wherever it is cloned
M=".venv/bin/python train/reproduce.py --protocol medium --runs_dir campaigns/medium \
   --baselines_dir campaigns/short --results_dir docs/results/medium"
$M --seeds 2 --arms baseline,finetune \
 && $M --seeds 5 --arms baseline,finetune,lns \
 && $M --seeds 3 --arms baseline,lns_no_noisy \
 && $M --report_only --seeds 5 --arms baseline,finetune,lns,lns_no_noisy
