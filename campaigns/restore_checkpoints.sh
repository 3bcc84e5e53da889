#!/usr/bin/env bash
# Before a campaign resumes: give back, from the last commit, every run in flight whose
# working copy has lost the checkpoint that commit_checkpoints.sh committed for it.
#
# A new machine may start from a partial copy of the last session's working folder:
# its tracked files as the session left them, but none of its new, untracked ones.
# A run then holds BackupAndRestore's state file naming a newer checkpoint that is
# not there, the deletion of the committed one, and its logs of later epochs.
# Resumed as it is, the run would start again from epoch 1 (lns_larq.training sets
# its logs aside in stale/): 188 epochs of a 400-epoch baseline, 10 hours, were one
# such copy away from it on 2026-12-07. Restored (every tracked file of the run, as
# committed), it resumes from the committed epoch. A run whose working copy can resume
# at least as far as the committed checkpoint (on the machine that trained it, its
# own newer checkpoint) is left alone, and so is a complete run.
#
# How far a run can resume, by its checkpoint (commit_checkpoints.sh commits the
# newest): fine-tuning's backup/ (3), the LNS warm start's result warmup.weights.h5
# (2), the warm start in progress backup_warmup/ (1), none (0).
#   bash campaigns/restore_checkpoints.sh    # campaigns/issue36.sh runs it first
cd "$(dirname "$0")/.."
# Whether BackupAndRestore folder $1's state file names a checkpoint that is there
# (lns_larq.callbacks.has_checkpoint, without starting TensorFlow).
resumable() {
  local name
  name=$(sed -n 's/^model_checkpoint_path: "\(.*\)"$/\1/p' "$1/chief/checkpoint" 2>/dev/null)
  [ -n "$name" ] && [ -f "$1/chief/$name.index" ]
}
level() {  # how far the working copy of run $1 can resume
  if resumable "$1/backup"; then echo 3
  elif [ -f "$1/warmup.weights.h5" ]; then echo 2
  elif resumable "$1/backup_warmup"; then echo 1
  else echo 0
  fi
}
# Each committed checkpoint file that the working copy lacks, as "<level> <run>".
git ls-files --deleted -- campaigns | sed -E -n \
  -e 's#^(.*)/backup/.*#3 \1#p' -e 's#^(.*)/warmup\.weights\.h5$#2 \1#p' -e 's#^(.*)/backup_warmup/.*#1 \1#p' |
  sort -k1,1nr | awk '!seen[$2]++' |
  while read -r committed run; do
    [ -f "$run/metrics.json" ] && continue
    [ "$(level "$run")" -ge "$committed" ] && continue
    git checkout HEAD -- "$run" || exit 1
    echo "restored $run from the last commit: its working copy had lost the committed checkpoint"
  done
