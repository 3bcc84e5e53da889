#!/usr/bin/env bash
# The issue-11 campaign: rerun to resume (finished runs are skipped).
cd /work/main
R=".venv/bin/python train/reproduce.py --protocol short --runs_dir campaigns/short --results_dir docs/results"
$R --seeds 3 --baseline_seeds 2 --arms baseline,finetune,lns,lns_no_noisy,lns_gated \
 && $R --seeds 2 --sweep alpha=0,0.1,0.5,1,2 \
 && $R --seeds 2 --sweep rho=0,0.001,0.005,0.02,0.2
