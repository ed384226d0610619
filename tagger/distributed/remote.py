"""Files on a local disk or in a bucket (``gs://``), through Beam's FileSystems: the pipeline's storage.

Imported only when Beam runs.
"""

import os
import pickle

from apache_beam.io.filesystems import FileSystems

from ..embedding import cache, files

__all__ = ["is_remote", "track_id_for_url", "read_bytes", "write_entry", "fingerprint", "Storage", "view"]


def is_remote(path):
    """Whether ``path`` is a URL (``gs://bucket/...``) rather than a local path."""
    return "://" in str(path)


def track_id_for_url(url, root=None):
    """Track id of a file in a bucket: its path below ``root`` (a URL prefix), else ``_<scheme>/<bucket>/<key>``."""
    if root and str(root).rstrip("/") + "/" == url[: len(str(root).rstrip("/")) + 1]:
        return url[len(str(root).rstrip("/")) + 1 :]
    scheme, rest = url.split("://", 1)
    return f"_{scheme}/{rest}"


def read_bytes(path):
    """The bytes of a local or remote file."""
    with FileSystems.open(path) as f:
        return f.read()


def write_entry(cache_dir, track_id, entry):
    """Write an entry: atomically on a local disk, as one object in a bucket (objects appear whole)."""
    if not is_remote(cache_dir):
        return cache.write_entry(cache_dir, track_id, entry)
    path = cache.entry_path(cache_dir, track_id).replace(os.sep, "/")
    with FileSystems.create(path) as f:
        f.write(pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL))
    return path


def fingerprint(path):
    """:func:`tagger.embedding.files.fingerprint` of a local or remote file (None when it cannot be read)."""
    if not is_remote(path):
        return files.fingerprint(path)
    try:
        size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
        with FileSystems.open(path) as f:
            return files.fingerprint_stream(f, size)
    except Exception:  # noqa: BLE001 - unreadable: the decoder reports why
        return None


class Storage:
    """Cache entries on a local disk or in a bucket, for :class:`tagger.embedding.cache.CacheView` (the one policy)."""

    def read(self, path):
        if not is_remote(path):
            return cache.LocalStorage().read(path)
        if not FileSystems.exists(path):
            return None
        return read_bytes(path)

    def write(self, cache_dir, track_id, entry):
        return write_entry(cache_dir, track_id, entry)

    def writable(self, cache_dir):
        return True if is_remote(cache_dir) else cache.writable(cache_dir)


def view(settings):
    """The cache policy over the pipeline's cache (``settings``: :func:`tagger.distributed.pipeline.settings_of`)."""
    return cache.CacheView(settings["cache_dir"], settings["provenance"], storage=Storage())
