#!/usr/bin/env python3
"""A stand-in for gcloud / gsutil: records its arguments; serves gs://BUCKET/... from $FAKE_GCS/BUCKET/...

With $FAKE_GCLOUD_ERROR set, `storage ls` fails with that message (auth or network trouble).
Appends one JSON line per call to $FAKE_LOG: {"tool": ..., "args": [...]}. Implements
`storage cp|rsync|ls|cat` on the local folder; every other command only records.
"""

import json
import os
import re
import shutil
import sys


def local(url):
    if url.startswith("gs://"):
        return os.path.join(os.environ["FAKE_GCS"], url[5:])
    return url


def main():
    tool, args = os.path.basename(sys.argv[0]), sys.argv[1:]
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps({"tool": tool, "args": args}) + "\n")
    if tool == "gcloud" and args[:1] == ["storage"]:
        verb, rest = args[1], [a for a in args[2:] if not a.startswith("--")]
        if verb == "cp":
            src, dst = map(local, rest)
            if not os.path.exists(src):
                sys.exit(f"fake gcloud: {rest[0]} not found")
            os.makedirs(os.path.dirname(dst) or ".", exist_ok=True)
            shutil.copy(src, dst)
        elif verb == "rsync":
            src, dst = map(local, rest)
            if not os.path.isdir(src):
                sys.exit(f"fake gcloud: {rest[0]} not found")
            excludes = [re.compile(a.split("=", 1)[1]) for a in args if a.startswith("--exclude=")]

            def ignore(folder, names):  # gcloud matches each path relative to SRC against the --exclude regex
                rel = os.path.relpath(folder, src)
                paths = {n: n if rel == "." else f"{rel}/{n}" for n in names}
                return {n for n, p in paths.items() if any(x.search(p) for x in excludes)}

            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=ignore)
        elif verb == "ls":
            if os.environ.get("FAKE_GCLOUD_ERROR"):  # offline, logged out: gcloud fails, whatever the URL
                sys.exit(os.environ["FAKE_GCLOUD_ERROR"])
            sys.exit(0 if os.path.exists(local(rest[0])) else 1)
        elif verb == "cat":
            sys.stdout.write(open(local(rest[0])).read())


if __name__ == "__main__":
    main()
