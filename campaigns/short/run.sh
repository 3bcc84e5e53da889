#!/usr/bin/env bash
# The issue-11 campaign: rerun to resume (finished runs are skipped).
# Order: the arms (3 seeds), the alpha and rho sweeps, then the second baseline,
# so the paired comparisons and sweeps arrive before the ~2 h seed-spread run.
cd "$(dirname "$0")/../.."  # the repository root, wherever it is cloned
R=".venv/bin/python train/reproduce.py --protocol short --runs_dir campaigns/short --results_dir docs/results"
ARMS="baseline,finetune,lns,lns_no_noisy,lns_gated"
$R --seeds 3 --arms $ARMS \
 && $R --seeds 2 --sweep alpha=0,0.1,0.5,1,2 \
 && $R --seeds 2 --sweep rho=0,0.001,0.005,0.02,0.2 \
 && $R --seeds 3 --baseline_seeds 2 --arms $ARMS
