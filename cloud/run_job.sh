#!/usr/bin/env bash
# The job runner, on the VM (it is the VM's startup script) or locally for a test.
#
# Mirrors the bucket into a work folder (BUCKET/data -> data/, BUCKET/audio -> audio/, BUCKET/jobs/JOB/* -> the
# rest), installs tagger from the job's wheel into a virtual environment (or uses --image's container), then
# runs the job's steps (jobs/JOB/steps.json: tagger command lines) in order in the work folder. A step whose
# marker jobs/JOB/steps/N.done is in the bucket is skipped; a step in progress resumes (embedding and tagging
# skip finished files, training resumes from its checkpoint). The work goes back to the bucket every
# SYNC_SECONDS, after each step and at the end; SIGTERM (a spot VM's preemption) is passed to the running step,
# which stops cleanly, and the work is copied back before the machine stops. Writes jobs/JOB/status and
# jobs/JOB/log.txt, and shuts the machine down whatever happened.
#
# Settings (environment; on a VM, read from the instance metadata when unset):
#   TAGGER_JOB       job name                      (metadata tagger-job)
#   TAGGER_BUCKET    gs://bucket or a local folder (metadata tagger-bucket)
#   TAGGER_IMAGE     container image; empty: tagger from the job's wheel (metadata tagger-image)
#   TAGGER_WORK      local work folder             (default /var/tmp/tagger/JOB)
#   TAGGER_VENV      virtual environment for the wheel (default /var/tmp/tagger/venv; reused while the wheel is the same)
#   TAGGER_PIP_ARGS  extra pip install arguments   (default none)
#   SYNC_SECONDS     seconds between uploads       (default 120)
#   SHUTDOWN_CMD     run at the end                (default: sudo shutdown -h now; empty: none)
# A job without steps.json but with config.json (tagger-cloud before steps) runs `train config.json --run-dir run`.
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=cloud/common.sh
if [[ -f "$here/common.sh" ]]; then source "$here/common.sh"; else
  # on a VM the runner arrives alone as the startup script: define the helpers inline
  run() { "$@"; }
  is_gcs() { [[ "$1" == gs://* ]]; }
  storage_sync() { if is_gcs "$1" || is_gcs "$2"; then gcloud storage rsync --recursive --exclude='(^|.*/)\.tmp-[^/]*$' "$1" "$2"; else mkdir -p "$2" && tar -C "$1" --exclude='.tmp-*' -cf - . | tar -C "$2" -xf -; fi; }
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
VENV=${TAGGER_VENV:-/var/tmp/tagger/venv}
SYNC_SECONDS=${SYNC_SECONDS:-120}
SHUTDOWN_CMD=${SHUTDOWN_CMD-sudo shutdown -h now}
JOB_URL="${BUCKET%/}/jobs/$JOB"
child=""

# sync_back: the work folder to the bucket (data/ and audio/ to the bucket's, the rest to the job's folder)
sync_back() {
  local entry name
  for entry in "$WORK"/* "$WORK"/.[!.]*; do
    [[ -e "$entry" ]] || continue
    name=$(basename "$entry")
    case $name in
      audio|.venv|steps.json|*.whl) continue ;;  # inputs, not results
      data) storage_sync "$entry" "${BUCKET%/}/data" ;;
      *) if [[ -d "$entry" ]]; then storage_sync "$entry" "$JOB_URL/$name"; else storage_cp "$entry" "$JOB_URL/$name"; fi ;;
    esac
  done
}

finish() {
  local rc=$?
  [[ -n "${syncer:-}" ]] && kill "$syncer" 2>/dev/null
  sync_back >/dev/null 2>&1 || true
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
# preemption: the running step gets SIGTERM too (it stops cleanly); then finish copies the work back
trap 'echo "SIGTERM: stopping the running step" >&2; [[ -n "$child" ]] && kill -TERM "$child" 2>/dev/null; terminated=1' TERM
terminated=0

mkdir -p "$WORK"
for shared in data audio; do
  if storage_exists "${BUCKET%/}/$shared"; then
    storage_sync "${BUCKET%/}/$shared" "$WORK/$shared" || die "cannot fetch ${BUCKET%/}/$shared"
  fi
done
storage_exists "$JOB_URL" || die "no job at $JOB_URL"
storage_sync "$JOB_URL" "$WORK" || die "cannot fetch $JOB_URL"
rm -f "$WORK/status"
[[ -d "$WORK/steps" || -d "$WORK/run" ]] && echo "resuming from $JOB_URL"

# tagger: the container, or the job's wheel in a virtual environment (GPU build of TensorFlow on a GPU)
wheel=$(find "$WORK" -maxdepth 1 -name 'vggish_tagger-*.whl' | head -n 1)
if [[ -n "$IMAGE" ]]; then
  tagger_cmd=(docker run --rm --gpus all -v "$WORK:/work" -w /work "$IMAGE" tagger)
elif [[ -n "$wheel" ]]; then
  stamp="$VENV/.tagger-wheel"
  if [[ ! -x "$VENV/bin/tagger" || "$(cat "$stamp" 2>/dev/null)" != "$(sha256sum "$wheel" | cut -d' ' -f1)" ]]; then
    echo "installing $(basename "$wheel") into $VENV"
    extra=()
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
      extra=("tensorflow[and-cuda]")  # the pinned TensorFlow with its CUDA libraries
    fi
    python3 -m venv "$VENV" || die "cannot create $VENV"
    # TAGGER_PIP_ARGS is a list of pip arguments: word splitting intended
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install --quiet ${TAGGER_PIP_ARGS:-} "$wheel" "${extra[@]}" 2>&1 | tail -n 5 \
      || die "cannot install $wheel"
    [[ -x "$VENV/bin/tagger" ]] || die "installing $wheel gave no tagger command"
    sha256sum "$wheel" | cut -d' ' -f1 > "$stamp"
  fi
  tagger_cmd=("$VENV/bin/tagger")
else
  tagger_cmd=(tagger)  # installed on the host
fi

# each step as one shell-quoted line (python's shlex.join), read back into its arguments with eval
steps=()
if [[ -f "$WORK/steps.json" ]]; then
  while IFS= read -r line; do steps+=("$line"); done < <(python3 - "$WORK/steps.json" <<'PY'
import json, shlex, sys
with open(sys.argv[1], encoding="utf-8") as f:
    for step in json.load(f):
        print(shlex.join(step))
PY
)
elif [[ -f "$WORK/config.json" ]]; then
  steps=("train config.json --run-dir run")
else
  die "no steps.json (or config.json) in $JOB_URL"
fi

( while sleep "$SYNC_SECONDS"; do sync_back >/dev/null 2>&1 || true; done ) &
syncer=$!

cd "$WORK" || die "no work folder $WORK"
mkdir -p "$WORK/steps"
for i in "${!steps[@]}"; do
  n=$((i + 1))
  args=()
  eval "args=(${steps[$i]})"  # shlex-quoted by the code above: words, never commands
  if storage_exists "$JOB_URL/steps/$n.done"; then
    echo "step $n done before: tagger ${args[*]}"
    continue
  fi
  echo "step $n: tagger ${args[*]}" | tee -a "$WORK/log.txt"
  "${tagger_cmd[@]}" "${args[@]}" >> "$WORK/log.txt" 2>&1 &
  child=$!
  wait "$child"
  rc=$?
  [[ $terminated == 1 ]] && wait "$child" 2>/dev/null
  child=""
  if [[ $terminated == 1 ]]; then
    echo "step $n stopped by SIGTERM; rerun the job to continue" | tee -a "$WORK/log.txt"
    exit 143
  fi
  if [[ $rc != 0 ]]; then
    echo "step $n failed (exit $rc): see $JOB_URL/log.txt" | tee -a "$WORK/log.txt"
    exit "$rc"
  fi
  sync_back >/dev/null 2>&1 || true
  date -u +%FT%TZ > "$WORK/steps/$n.done"
  storage_cp "$WORK/steps/$n.done" "$JOB_URL/steps/$n.done" || die "cannot record step $n in $JOB_URL"
done
echo "all ${#steps[@]} steps done"
