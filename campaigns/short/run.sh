#!/usr/bin/env bash
# The short campaign: rerun to resume (finished runs are skipped).
# Issue 20 order: lns against finetune on 5 seeds first; then three candidates for
# why lns ends below finetune (alpha = 0.1; labels frozen at the pretrained signs;
# theta at a tenth of the learning rate; 2 seeds each, judged on the hold-out);
# then lns_no_noisy; then the report over every arm. The earlier arms (lns_stop_rho, lns_no_noisy_stop_rho, lns_gated: 3
# seeds; the alpha and rho sweeps; the seed-1 baseline) are complete.
cd "$(dirname "$0")/../.."  # the repository root, wherever it is cloned
R=".venv/bin/python train/reproduce.py --protocol short --runs_dir campaigns/short --results_dir docs/results"
$R --seeds 5 --arms baseline,finetune,lns \
 && $R --seeds 2 --arms baseline,finetune,lns_alpha_0.1,lns_pretrained_labels,lns_theta_lr_0.1 \
 && $R --seeds 5 --arms baseline,finetune,lns,lns_no_noisy \
 && $R --report_only --seeds 5 --baseline_seeds 2 \
       --arms baseline,finetune,lns,lns_no_noisy,lns_alpha_0.1,lns_pretrained_labels,lns_theta_lr_0.1,lns_stop_rho,lns_no_noisy_stop_rho,lns_gated
