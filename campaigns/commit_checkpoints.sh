#!/usr/bin/env bash
# Commit what the campaign runs still training need to resume (a session's end
# kills them): their checkpoint (backup/, or backup_warmup/ in an LNS warm start),
# last.keras, best.keras, warmup.weights.h5, flip_reference.npz, elapsed.json and
# their logs. Run it right after an epoch ends (log.csv just written), not while
# BackupAndRestore writes. commit_results.sh untracks the checkpoint files again
# once a run is complete.
cd "$(dirname "$0")/.."
for run in $(find campaigns -name fit.log -printf '%h\n' | sort); do
  [ -f "$run/metrics.json" ] && continue
  [ -d "$run/backup" ] || [ -d "$run/backup_warmup" ] || continue
  for f in backup backup_warmup last.keras best.keras warmup.weights.h5 flip_reference.npz elapsed.json \
           log.csv layers.csv fit.log warmup.json warmup_log.csv warmup/layers.csv; do
    [ -e "$run/$f" ] && git add -f "$run/$f"
  done
  git add -u "$run"  # checkpoint files BackupAndRestore has replaced since
  echo "checkpoint of $run: $(($(wc -l < "$run/log.csv" 2>/dev/null || echo 1) - 1)) epochs"
done
git diff --cached --quiet || git commit -qm "${1:-Campaign checkpoints of the runs in flight (rerun campaigns/issue20.sh to resume them)}"
git log --oneline -1
