#!/usr/bin/env bash
# Commit the small result files of every complete campaign run (metrics.json,
# logs, per-layer figures, warm-start report); models and checkpoints stay out.
cd "$(dirname "$0")/.."
files=$(find campaigns -name metrics.json -printf '%h\n' | while read -r run; do
  for f in metrics.json log.csv layers.csv fit.log warmup.json warmup_log.csv warmup/layers.csv elapsed.json; do
    [ -f "$run/$f" ] && echo "$run/$f"
  done
done)
git add $files campaigns/*/campaign.log docs/results 2>/dev/null
# A complete run's checkpoint, committed while it trained (commit_checkpoints.sh),
# is no longer needed: untrack it (the files stay on disk).
find campaigns -name metrics.json -printf '%h\n' | while read -r run; do
  git rm -r -q --cached --ignore-unmatch "$run/backup" "$run/backup_warmup" "$run/last.keras" "$run/best.keras" \
    "$run/warmup.weights.h5" "$run/flip_reference.npz" "$run/elapsed.json" > /dev/null
done
git diff --cached --quiet || git commit -qm "${1:-Campaign results}" && git log --oneline -1
