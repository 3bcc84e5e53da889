#!/usr/bin/env bash
# Issue 20's remaining runs, shortest first; rerun to resume (finished runs are
# skipped, an interrupted one resumes from its checkpoint). Results are committed
# after each stage with campaigns/commit_results.sh.
cd "$(dirname "$0")/.."  # the repository root, wherever it is cloned
R=".venv/bin/python train/reproduce.py --protocol short --runs_dir campaigns/short --results_dir docs/results"
M=".venv/bin/python train/reproduce.py --protocol medium --runs_dir campaigns/medium \
   --baselines_dir campaigns/short --results_dir docs/results/medium"
B1=".venv/bin/python train/reproduce.py --protocol short --runs_dir campaigns/short_baseline1 \
   --baseline_seed 1 --results_dir docs/results/short_baseline1"
C="bash campaigns/commit_results.sh"
# 1. the last short candidate (theta at a tenth of the learning rate), 2 seeds
$R --seeds 2 --arms baseline,finetune,lns_theta_lr_0.1 && $C "Campaign short: lns_theta_lr_0.1 (2 seeds)"
# 2. medium: does fine-tuning move the baseline's hold-out accuracy? 2 seeds
$M --seeds 2 --arms baseline,finetune && $C "Campaign medium: finetune seeds 0-1 (the protocol check)"
# 3. short: lns_no_noisy with the full-agreement warm start, 5 seeds
$R --seeds 5 --arms baseline,finetune,lns,lns_no_noisy \
 && $R --report_only --seeds 5 --baseline_seeds 2 --arms baseline,finetune,lns,lns_no_noisy,lns_alpha_0.1,\
lns_pretrained_labels,lns_theta_lr_0.1,lns_stop_rho,lns_no_noisy_stop_rho,lns_gated \
 && $C "Campaign short: lns_no_noisy (5 seeds); the report over every short arm"
# 4. medium: 5 seeds of finetune, lns and lns_gated (the candidate the short
#    campaign's hold-out picked, docs/results/short.md), seed by seed
$M --seeds 5 --arms baseline,finetune,lns,lns_gated && $C "Campaign medium: finetune, lns, lns_gated (5 seeds)"
# 5. does the difference depend on the baseline? The seed-1 baseline (retrained:
#    the short campaign's seed-1 model was not kept), 2 seeds of finetune and lns
$B1 --seeds 2 --arms baseline,finetune,lns && $C "Campaign short_baseline1: finetune and lns from the seed-1 baseline"
# 6. medium: lns_no_noisy, 3 seeds
$M --seeds 3 --arms baseline,lns_no_noisy && $C "Campaign medium: lns_no_noisy (3 seeds)"
$M --report_only --seeds 5 --arms baseline,finetune,lns,lns_gated,lns_no_noisy && $C "Campaign medium: report"
