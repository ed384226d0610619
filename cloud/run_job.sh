#!/usr/bin/env bash
# The job runner, on the VM (it is the VM's startup script) or locally for a test.
#
# Pulls the dataset and the experiment config from the bucket, resumes from the
# bucket's copy of the run folder, runs `tagger train`, copies the run folder
# back every SYNC_SECONDS while it trains and once at the end, writes
# jobs/JOB/status, and shuts the machine down whatever happened.
#
# Settings (environment; on a VM, read from the instance metadata when unset):
#   TAGGER_JOB       job name                      (metadata tagger-job)
#   TAGGER_BUCKET    gs://bucket or a local folder (metadata tagger-bucket)
#   TAGGER_IMAGE     container image; empty runs `tagger` from PATH (metadata tagger-image)
#   TAGGER_WORK      local work folder             (default /var/tmp/tagger/JOB)
#   SYNC_SECONDS     seconds between uploads       (default 120)
#   SHUTDOWN_CMD     run at the end                (default: sudo shutdown -h now; empty: none)
# Bucket layout: BUCKET/data/... (datasets, as the config's relative paths expect),
# BUCKET/jobs/JOB/config.json, BUCKET/jobs/JOB/run/ (the run folder), jobs/JOB/status, jobs/JOB/log.txt
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cloud/common.sh
if [[ -f "$here/common.sh" ]]; then source "$here/common.sh"; else
  # on a VM the runner arrives alone as the startup script: define the helpers inline
  run() { "$@"; }
  is_gcs() { [[ "$1" == gs://* ]]; }
  storage_sync() { if is_gcs "$1" || is_gcs "$2"; then gcloud storage rsync --recursive "$1" "$2"; else mkdir -p "$2" && cp -a "$1/." "$2/"; fi; }
  storage_cp() { if is_gcs "$1" || is_gcs "$2"; then gcloud storage cp "$1" "$2"; else mkdir -p "$(dirname "$2")" && cp "$1" "$2"; fi; }
  storage_exists() { if is_gcs "$1"; then gcloud storage ls "$1" >/dev/null 2>&1; else [[ -e "$1" ]]; fi; }
  die() { printf 'run_job: error: %s\n' "$*" >&2; exit 1; }
fi

metadata() {
  curl -sf -H 'Metadata-Flavor: Google' "http://metadata.google.internal/computeMetadata/v1/instance/attributes/$1" || true
}

JOB=${TAGGER_JOB:-$(metadata tagger-job)}
BUCKET=${TAGGER_BUCKET:-$(metadata tagger-bucket)}
IMAGE=${TAGGER_IMAGE-$(metadata tagger-image)}
[[ -n "$JOB" ]] || die "no job name (TAGGER_JOB or metadata tagger-job)"
[[ -n "$BUCKET" ]] || die "no bucket (TAGGER_BUCKET or metadata tagger-bucket)"
WORK=${TAGGER_WORK:-/var/tmp/tagger/$JOB}
SYNC_SECONDS=${SYNC_SECONDS:-120}
SHUTDOWN_CMD=${SHUTDOWN_CMD-sudo shutdown -h now}
JOB_URL="${BUCKET%/}/jobs/$JOB"

finish() {
  local rc=$?
  [[ -n "${syncer:-}" ]] && kill "$syncer" 2>/dev/null
  storage_sync "$WORK/run" "$JOB_URL/run" || true
  printf '%s exit=%s\n' "$([[ $rc == 0 ]] && echo succeeded || echo failed)" "$rc" > "$WORK/status"
  storage_cp "$WORK/status" "$JOB_URL/status" || true
  [[ -f "$WORK/log.txt" ]] && { storage_cp "$WORK/log.txt" "$JOB_URL/log.txt" || true; }
  if [[ -n "$SHUTDOWN_CMD" ]]; then
    # word splitting of the configured command is intended
    # shellcheck disable=SC2086
    $SHUTDOWN_CMD
  fi
}
trap finish EXIT

mkdir -p "$WORK/run" "$WORK/data"
storage_cp "$JOB_URL/config.json" "$WORK/config.json" || die "cannot fetch $JOB_URL/config.json"
storage_sync "${BUCKET%/}/data" "$WORK/data" || die "cannot fetch ${BUCKET%/}/data"
if storage_exists "$JOB_URL/run"; then
  echo "resuming from $JOB_URL/run"
  storage_sync "$JOB_URL/run" "$WORK/run" || die "cannot fetch $JOB_URL/run"
fi

( while sleep "$SYNC_SECONDS"; do storage_sync "$WORK/run" "$JOB_URL/run" >/dev/null 2>&1 || true; done ) &
syncer=$!

cd "$WORK" || die "no work folder $WORK"
if [[ -n "$IMAGE" ]]; then
  run docker run --rm --gpus all -v "$WORK:/work" -w /work "$IMAGE" \
    tagger train /work/config.json --run-dir /work/run 2>&1 | tee -a "$WORK/log.txt"
else
  run tagger train "$WORK/config.json" --run-dir "$WORK/run" 2>&1 | tee -a "$WORK/log.txt"
fi
