#!/usr/bin/env bash
# Commit what each campaign run still in flight needs to resume, and nothing more:
# its one checkpoint and its logs. Run it once, when a session ends with runs
# unfinished (a session's end kills them; the next session resumes them by rerunning
# the campaign's command). Every committed checkpoint stays in the history, so each
# call costs the packed repository about the checkpoints' compressed size.
#
# A fine-tuning checkpoint (backup/) is committed with its SGD momentum zeroed
# (lns_larq.callbacks.zero_momentum): the zeros pack to nothing, so it costs about
# half, ResNet-20 1.0 MB instead of 2.0, an LNS ResNet-20 about 10 MB instead of 19
# (its mappings and their momentum). A run resumed from it starts without momentum,
# back within about 10 of an epoch's 313 steps at SGD's 0.9. Its float tensors are
# then rounded to MANTISSA_BITS bits of mantissa, 10 (float16's precision) unless set
# (lns_larq.callbacks.round_checkpoint): an LNS ResNet-20's weights pack to 6.0 MB
# instead of 9.5 (4.8 MB at 7 bits), each moves by at most 2^-11 of itself, no
# latent weight changes sign, and 0.013 % of an LNS network's binary weights flip
# (0.11 % at 7 bits; docs/results/README.md). Every run of a campaign is treated
# alike, so the paired arms cross each session's end the same way.
#
# The checkpoint of a run is the newest of
#   backup/             fine-tuning's (BackupAndRestore): every weight, the LNS
#                       mappings included, and the optimizer's state;
#   warmup.weights.h5   an LNS warm start's result, before fine-tuning's first epoch;
#   backup_warmup/      an LNS warm start's, while it runs.
# best.keras, last.keras and the older checkpoints are not needed to resume and
# are untracked if an earlier call committed them. commit_results.sh untracks a
# run's checkpoint once the run is complete.
#
# Budget (issue 36: the packed repository grows by at most 250 MiB): a run whose
# checkpoint is over 5 MB (an LNS run's) and that has trained for less than an hour
# (elapsed.json) is not committed; it starts again next session, losing at most an
# hour of one core instead of adding 10 MB (compressed) to the history.
#
# The training processes are stopped (SIGSTOP) while the files are added, so that
# no checkpoint is half written, and continued afterwards.
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}  # one with lns_larq and TensorFlow
has_files() { [ -d "$1" ] && [ -n "$(find "$1" -type f -print -quit)" ]; }
pids=$(pgrep -f "${PAUSE:-train/fit.py}" || true)  # PAUSE: which processes to stop (the tests' own)
# shellcheck disable=SC2086
[ -n "$pids" ] && kill -STOP $pids
trap '[ -n "$pids" ] && kill -CONT $pids 2>/dev/null' EXIT
for run in $(find campaigns -name fit.log -printf '%h\n' | sort); do
  [ -f "$run/metrics.json" ] && continue
  if has_files "$run/backup"; then checkpoint=backup
  elif [ -f "$run/warmup.weights.h5" ]; then checkpoint=warmup.weights.h5
  elif has_files "$run/backup_warmup"; then checkpoint=backup_warmup
  else continue
  fi
  size_kb=$(du -sk "$run/$checkpoint" | cut -f1)
  seconds=$(python3 -c "import json; print(int(json.load(open('$run/elapsed.json'))['seconds']))" 2>/dev/null || echo 0)
  if [ "$size_kb" -gt 5120 ] && [ "$seconds" -lt 3600 ]; then
    echo "not committed: $run ($checkpoint, $((size_kb / 1024)) MB) has trained ${seconds} s only; it starts again"
    continue
  fi
  counts="0 0"
  if [ "$checkpoint" = backup ]; then
    err=$(mktemp)
    if counts=$("$PYTHON" -c 'import sys, lns_larq.callbacks as c
print(c.zero_momentum(sys.argv[1]), c.round_checkpoint(sys.argv[1], int(sys.argv[2])))' \
        "$run/backup" "${MANTISSA_BITS:-10}" 2> "$err"); then
      counts=${counts##*$'\n'}  # its last line, whatever an import printed before
    else  # the checkpoint is committed whole rather than not at all
      echo "checkpoint of $run committed as it is: zero_momentum or round_checkpoint failed: $(tail -n 1 "$err")"
      counts="0 0"
    fi
    rm -f "$err"
  fi
  read -r zeroed rounded <<< "$counts"
  git rm -r -q --cached --ignore-unmatch "$run/backup" "$run/backup_warmup" "$run/warmup.weights.h5" \
    "$run/best.keras" "$run/last.keras" > /dev/null
  git add -f "$run/$checkpoint"
  for f in log.csv layers.csv fit.log elapsed.json flip_reference.npz warmup.json warmup_log.csv warmup/layers.csv; do
    [ -e "$run/$f" ] && git add -f "$run/$f"
  done
  echo "checkpoint of $run ($checkpoint, $(du -sh "$run/$checkpoint" | cut -f1), $zeroed momentum tensors zeroed, $rounded tensors rounded): $(($(wc -l < "$run/log.csv" 2>/dev/null || echo 1) - 1)) epochs"
done
git diff --cached --quiet || git commit -qm "${1:-Campaign checkpoints of the runs in flight (rerun the campaign command to resume them)}"
git log --oneline -1
