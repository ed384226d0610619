# shellcheck shell=bash
# Shared helpers of the cloud scripts: dry runs and storage copies (gs:// or a local folder).

# Run a command, or only print it (shell-quoted) when DRY_RUN=1.
run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "$@" | sed 's/ $//'
    printf '\n'
  else
    "$@"
  fi
}

is_gcs() { [[ "$1" == gs://* ]]; }

# storage_sync SRC DST: mirror a folder (gcloud storage rsync for buckets, tar for local folders), leaving out the
# .tmp-* files of writes still in progress (the periodic sync runs while a step writes; tagger renames them when done)
storage_sync() {
  local src=$1 dst=$2
  if is_gcs "$src" || is_gcs "$dst"; then
    run gcloud storage rsync --recursive --exclude='(^|.*/)\.tmp-[^/]*$' "$src" "$dst"
  else
    run mkdir -p "$dst"
    run copy_tree "$src" "$dst"
  fi
}

# copy_tree SRC DST: SRC's files into DST, but the .tmp-* files of writes in progress.
copy_tree() { tar -C "$1" --exclude='.tmp-*' -cf - . | tar -C "$2" -xf -; }

# storage_cp SRC DST: copy one file.
storage_cp() {
  local src=$1 dst=$2
  if is_gcs "$src" || is_gcs "$dst"; then
    run gcloud storage cp "$src" "$dst"
  else
    run mkdir -p "$(dirname "$dst")"
    run cp "$src" "$dst"
  fi
}

# storage_exists PATH: true when the object or folder exists.
storage_exists() {
  if is_gcs "$1"; then
    gcloud storage ls "$1" >/dev/null 2>&1
  else
    [[ -e "$1" ]]
  fi
}

die() {
  printf 'tagger-cloud: error: %s\n' "$*" >&2
  exit 1
}
