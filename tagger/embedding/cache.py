"""The embedding cache: one pickle per track, written atomically, read safely.

Entry (a dict, ``<cache>/<track_id>.pkl``, format :data:`FORMAT`):

``format`` int; ``provenance`` dict, the record of what made it
(:mod:`tagger.embedding.provenance`); ``embedding`` np.ndarray (T, 128), float32 raw VGGish output
or uint8 postprocessed, or (1, 57) float32 handcrafted features, or (T, 96, 64)
float16 log-mel patches; ``kind`` ``'raw'``, ``'postprocessed'``, ``'features'`` or
``'melspec'`` (what ``embedding`` holds;
a features entry's ``frontend`` is :func:`tagger.embedding.params.feature_params` and
its ``weights`` the feature set); ``pca`` str or None, the PCA parameters' id of a
postprocessed entry; ``timestamps`` np.ndarray (T,), patch start times in
seconds; ``frontend`` dict, :func:`tagger.embedding.vggish.params.frontend_params`;
``weights`` str, the network that made it (weights hash and precision);
``source`` str, the audio path as given when it was embedded, or a record
id; ``fingerprint`` str or None, :func:`tagger.embedding.files.fingerprint` of
the audio; ``duration`` float, seconds (or None).

Every command reads and judges entries through one policy,
:class:`CacheView`: a verdict per entry (hit, missing, source changed, other
settings, old format, wrong kind, unreadable, invalid) and one rule per
verdict (:data:`RULES`). Entries are validated when read (shape for their
kind, dtype, finite values). A raw entry serves heads that need postprocessed
embeddings too: the postprocessor is applied on read (:func:`embedding_for`),
so ``tagger embed`` then ``tagger tag --cache`` runs the network once. Readers
that know the source check its fingerprint: an entry whose audio changed is
stale, never reused. Format 2 entries are upgraded when read (:func:`upgrade`). Loading uses a restricted unpickler that
accepts NumPy arrays and builtins only, so a planted pickle cannot run code.
Files are created with the umask's permissions (a group-shared cache stays
readable by the group).
"""

import io
import os
import pickle

import numpy as np

from ..exceptions import DataError, ParameterError
from ..records import write_atomic
from . import files, provenance, registry

__all__ = [
    "FORMAT",
    "READABLE_FORMATS",
    "RULES",
    "DATASET_FIELDS",
    "CacheView",
    "Verdict",
    "LocalStorage",
    "dataset_provenance",
    "validate_entry",
    "upgrade",
    "serving",
    "StaleEntry",
    "entry_path",
    "make_entry",
    "write_entry",
    "read_entry",
    "loads_entry",
    "check_entry",
    "serves",
    "embedding_for",
    "safe_loads",
    "embedding_as_float",
    "writable",
]

FORMAT = 3
READABLE_FORMATS = (2, 3)  # format 2 entries are upgraded on read (:func:`upgrade`)
_KEYS_2 = (
    "format",
    "embedding",
    "kind",
    "pca",
    "timestamps",
    "frontend",
    "weights",
    "source",
    "fingerprint",
    "duration",
)
_KEYS = _KEYS_2 + ("provenance",)


class StaleEntry(DataError):
    """A cache entry that exists but cannot serve this reader.

    ``reason`` says why: ``'format'`` (an older cache format), ``'settings'``
    (made with other settings: named), ``'source'`` (its audio changed),
    ``'kind'`` (postprocessed, raw wanted) or ``'invalid'`` (what it holds is
    not a valid embedding of its kind).
    """

    def __init__(self, message, reason):
        super().__init__(message)
        self.reason = reason


# (module, name) pairs a cache pickle may reference: NumPy array and dtype reconstruction only
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
_ALLOWED_DTYPE_CLASSES = {
    "Float16DType",
    "Float32DType",
    "Float64DType",
    "UInt8DType",
    "Int64DType",
    "Int32DType",
    "BoolDType",
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED or (module == "numpy.dtypes" and name in _ALLOWED_DTYPE_CLASSES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a cache entry")


def safe_loads(data):
    """Unpickle bytes allowing only NumPy arrays and builtins.

    Raises
    ------
    pickle.UnpicklingError
        If the pickle references any other global.
    """
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def entry_path(cache_dir, track_id):
    """Path of a track's entry: ``<cache_dir>/<track_id>.pkl`` (track ids may hold ``/``)."""
    track_id = str(track_id)
    if not track_id or track_id.startswith(("/", "\\")) or ".." in track_id.replace("\\", "/").split("/"):
        raise ParameterError(f"track_id={track_id!r} must be a non-empty relative name without '..'")
    return os.path.join(os.fspath(cache_dir), track_id + ".pkl")


def make_entry(
    embedding,
    timestamps,
    *,
    kind,
    frontend,
    weights,
    source,
    pca=None,
    fingerprint=None,
    duration=None,
    precision=None,
    short_policy=None,
):
    """Assemble a cache entry after checking shapes and types.

    Parameters
    ----------
    embedding : np.ndarray, shape (T, 128), float32 (raw) or uint8 (postprocessed); (1, D) for features
    timestamps : np.ndarray, shape (T,)
    kind : str
        A registered kind (:func:`tagger.embedding.registry.kinds`): its spec gives the shape, dtype and precision.
    frontend : dict
    weights : str
        The network's id (weights and precision, without postprocessing).
    source : str
    pca : str, optional
        Id of the PCA parameters; required for postprocessed entries.
    fingerprint : str, optional
        :func:`tagger.embedding.files.fingerprint` of the source file.
    duration : float, optional
    precision : str, optional
        The network's precision (default: read from ``weights``, e.g. ``'…+bfloat16'``).
    short_policy : {'pad', 'skip'}, optional
        The short-clip policy of the run; recorded when it applied (a clip shorter than one patch).

    Returns
    -------
    dict
    """
    spec = registry.kind(kind)  # ParameterError naming the registered kinds
    embedding = np.asarray(embedding)
    if embedding.dtype != spec.dtype:
        if not spec.cast:
            raise DataError(f"{source}: a {kind} embedding is {spec.dtype}, got {embedding.dtype}")
        embedding = embedding.astype(spec.dtype)
    if spec.pca and not pca:
        raise DataError(f"{source}: a {kind} entry needs the id of its PCA parameters")
    timestamps = np.asarray(timestamps, dtype=np.float64)
    if not spec.fits(embedding):
        raise DataError(f"{source}: embedding must have shape {spec.shape_text()}, got {embedding.shape}")
    if timestamps.shape != (len(embedding),):
        raise DataError(f"{source}: timestamps shape {timestamps.shape} does not match {len(embedding)} patches")
    if spec.precision is None:  # the network's, from its id
        base, recorded = provenance.split_network_id(weights)
        precision = precision or recorded
    else:
        base, precision = str(weights), precision or spec.precision
    window = registry.model(spec.model).window_seconds
    short = not spec.per_clip and duration is not None and duration < window
    record = provenance.record(
        weights=base,
        precision=precision,
        pca=pca if spec.pca else None,
        frontend=frontend,
        short_policy=(short_policy or "pad") if short else None,
        kind=kind,
    )
    return {
        "format": FORMAT,
        "provenance": record,
        "embedding": embedding,
        "kind": kind,
        "pca": str(pca) if spec.pca else None,
        "timestamps": timestamps,
        "frontend": dict(frontend),
        "weights": str(weights),
        "source": str(source),
        "fingerprint": None if fingerprint is None else str(fingerprint),
        "duration": None if duration is None else float(duration),
    }


def write_entry(cache_dir, track_id, entry):
    """Write an entry atomically (temporary file in the same folder, then rename).

    Returns
    -------
    str
        The entry's path.
    """
    path = entry_path(cache_dir, track_id)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return write_atomic(
        path, lambda f: pickle.dump(entry, f, protocol=pickle.HIGHEST_PROTOCOL), binary=True, fsync=True
    )


def validate_entry(entry, *, path="<entry>"):
    """Check what an entry holds: shape for its kind, dtype, finite values, timestamps (read-time validation).

    Raises
    ------
    StaleEntry
        ``reason='invalid'``, naming the entry and the problem.
    """
    emb, kind = entry["embedding"], entry["kind"]
    problem = None
    if not isinstance(emb, np.ndarray):
        problem = f"its embedding is a {type(emb).__name__}, not an array"
    elif kind not in registry.kinds():
        problem = f"unknown kind {kind!r}"
    else:
        spec = registry.kind(kind)
        if not spec.fits(emb, entry["frontend"] or {}):
            problem = f"its embedding has shape {emb.shape}, a {kind} entry holds {spec.shape_text()}"
        elif emb.dtype != spec.dtype:
            problem = f"its embedding is {emb.dtype}, a {kind} entry holds {np.dtype(spec.dtype)}"
        elif emb.dtype != np.uint8 and not np.isfinite(emb).all():
            problem = f"its embedding holds {int((~np.isfinite(emb)).sum())} NaN or infinite values"
        elif np.shape(entry["timestamps"]) != (len(emb),):
            problem = f"its timestamps have shape {np.shape(entry['timestamps'])} for {len(emb)} patches"
    if problem:
        raise StaleEntry(f"{path}: invalid cache entry: {problem}", "invalid")
    return entry


def upgrade(entry):
    """A format-2 entry in the current format: its provenance rebuilt from the fields it holds (nothing re-embedded).

    Format 2 did not record the short-clip policy; an entry of a clip shorter
    than one patch can only have been padded (``skip`` makes no entry), so it
    gets ``pad``, every other entry None (the policy did not apply).
    """
    if entry.get("format") != 2:
        return entry
    window = registry.model(registry.kind(entry["kind"]).model).window_seconds  # one row's span (VGGish: 0.96 s)
    short = "pad" if entry.get("duration") is not None and entry["duration"] < window else None
    upgraded = dict(entry, format=FORMAT)
    upgraded["provenance"] = provenance.of_legacy(
        weights=entry["weights"],
        kind=entry["kind"],
        pca=entry["pca"],
        frontend=entry["frontend"],
        short_policy=short,
    )
    return upgraded


def check_entry(entry, *, path="<entry>", frontend=None, weights=None, fingerprint=None, want=None):
    """Validate an entry (format, keys, contents) and, when given, its provenance and source fingerprint.

    Parameters
    ----------
    want : dict, optional
        The reader's provenance record (:func:`tagger.embedding.provenance.record`):
        the entry must serve it (:func:`serving`).
    frontend, weights : optional
        Single fields to check (the frontend dict; the network id).

    Raises
    ------
    DataError
        Not a cache entry at all.
    StaleEntry
        Naming the entry and the mismatch; ``reason`` is ``'format'``,
        ``'invalid'``, ``'source'``, ``'kind'`` or ``'settings'``.
    """
    if isinstance(entry, dict) and entry.get("format") not in READABLE_FORMATS and "embedding" in entry:
        raise StaleEntry(
            f"{path}: cache format {entry.get('format')!r}, this tagger reads {READABLE_FORMATS} (format 1 entries were"
            " keyed by their path below each input folder and never checked against their audio); rebuild the cache:"
            " rerun the same `tagger embed` (or `tagger prepare`) with --overwrite, or use a new cache folder",
            "format",
        )
    keys = _KEYS if isinstance(entry, dict) and entry.get("format") == FORMAT else _KEYS_2
    if not isinstance(entry, dict) or any(k not in entry for k in keys):
        raise DataError(
            f"{path}: not a tagger cache entry (keys {sorted(entry) if isinstance(entry, dict) else type(entry)})"
        )
    try:
        entry = upgrade(entry)
    except DataError as exc:
        raise StaleEntry(f"{path}: {exc}", "format") from exc
    validate_entry(entry, path=path)
    if fingerprint is not None and entry["fingerprint"] != fingerprint:
        raise StaleEntry(
            f"{path}: its source {entry['source']} changed since it was embedded"
            f" (fingerprint {entry['fingerprint']}, now {fingerprint})",
            "source",
        )
    if frontend is not None and entry["frontend"] != dict(frontend):
        diff = {k: (entry["frontend"].get(k), v) for k, v in frontend.items() if entry["frontend"].get(k) != v}
        raise StaleEntry(f"{path}: made with other frontend settings (cached, wanted): {diff}", "settings")
    if weights is not None and entry["weights"] != weights:
        raise StaleEntry(f"{path}: made by the network {entry['weights']}, wanted {weights}", "settings")
    if want is not None:
        reason, diff = serving(entry["provenance"], want)
        if reason is not None:
            named = [d.split(":", 1)[0] for d in diff]
            hint = _reuse_hint(entry["provenance"], want, named)
            raise StaleEntry(f"{path}: made with other {', '.join(named)} settings: {'; '.join(diff)}{hint}", reason)
    return entry


def _reuse_hint(have, want, named):
    """The options that make a run want what an entry holds, where only its precision (machines whose ``auto``
    differs, AMX or not) or its frontend kind (reference or device log-mel) differ; else ``''``.

    With the precision, the frontend kind is named too for a model whose extractor takes one: its default may
    follow the precision (VGGish's does), so naming both reuses the entries whatever the defaults.
    """
    cached, wanted = dict(have.get("frontend") or {}), dict(want.get("frontend") or {})
    kind = cached.pop("frontend_kind", None) or "reference"
    if "frontend" in named and (kind == (wanted.pop("frontend_kind", None) or "reference") or cached != wanted):
        return ""  # more than the frontend kind differs: no option reuses them
    if set(named) - {"precision", "frontend"}:
        return ""
    try:
        takes_kind = "frontend_kind" in registry.model(registry.kind(have["kind"]).model).options
    except ParameterError:  # a kind no registered model makes
        takes_kind = False
    options = [f"--precision {have['precision']}"] if "precision" in named else []
    if "frontend" in named or (takes_kind and options):
        options.append(f"--frontend {kind}")
    return f" ({' '.join(options)} reuses them)"


def serving(have, want):
    """Whether an entry of provenance ``have`` serves a reader of provenance ``want``; the one rule.

    A raw entry serves raw and postprocessed readers of the same network
    (postprocessed on read); a postprocessed entry serves postprocessed
    readers of the same PCA parameters; features and log-mel patches serve
    their own kind. Weights, precision and frontend match exactly
    (:mod:`tagger.embedding.provenance`); the short-clip policy matters only
    where it applied.

    Returns
    -------
    reason : None, 'kind' or 'settings'
        None: it serves. ``'kind'``: a postprocessed entry for a raw reader
        (a raw entry would serve both). ``'settings'``: made otherwise.
    differences : list of str
    """
    fields = ["weights", "precision", "frontend"]
    if have.get("short_policy") is not None:
        fields.append("short_policy")
    a, b = have["kind"], want["kind"]
    cached, wanted = registry.kind(a), registry.kind(b)
    if a != b and wanted.served_by != a:  # raw entries serve postprocessed readers, transformed on reading
        if cached.served_by == b:  # a postprocessed entry for a raw reader: the raw values are gone
            diff = provenance.differences(have, want, fields=fields)
            return ("settings" if diff else "kind"), diff or [f"kind: {a} (cached), {b} (wanted)"]
        fields.append("kind")
    elif a == b and cached.pca:
        fields.append("pca")
    diff = provenance.differences(have, want, fields=fields)
    return ("settings" if diff else None), diff


def serves(entry, kind, pca=None):
    """Whether an entry can give embeddings of ``kind`` (raw entries serve postprocessed readers too).

    Parameters
    ----------
    entry : dict
    kind : str
        A registered kind (:func:`tagger.embedding.registry.kinds`).
    pca : str, optional
        The reader's PCA parameters id (postprocessed readers).
    """
    have = upgrade(entry)["provenance"]
    return serving(have, {**have, "kind": kind, "pca": pca})[0] is None  # the one rule, on kind and PCA alone


def embedding_for(entry, postprocessor=None):
    """The entry's embedding as a reader needs it.

    Parameters
    ----------
    entry : dict
    postprocessor : tagger.embedding.vggish.postprocess.Postprocessor, optional
        Given when the reader needs postprocessed embeddings: a raw entry is
        postprocessed on the fly.

    Returns
    -------
    np.ndarray, shape (T, 128): float32 raw, or uint8 postprocessed
    """
    spec = registry.kind(entry["kind"])
    if postprocessor is not None and any(registry.kind(k).served_by == spec.name for k in registry.kinds()):
        return postprocessor(entry["embedding"])
    if postprocessor is None and spec.served_by is not None:
        raise DataError(
            f"{entry['source']}: the cache holds {spec.name} embeddings only; {spec.served_by} ones are needed"
        )
    return entry["embedding"]


def writable(cache_dir):
    """Whether entries can be written into ``cache_dir`` (created when missing and possible)."""
    cache_dir = os.fspath(cache_dir)
    try:
        os.makedirs(cache_dir, exist_ok=True)
    except OSError:
        return False
    return os.access(cache_dir, os.W_OK | os.X_OK)


def read_entry(cache_dir, track_id=None, *, frontend=None, weights=None, fingerprint=None, want=None):
    """Read and validate one entry (the policy's reader: other modules go through :class:`CacheView`).

    Parameters
    ----------
    cache_dir : str
        Cache folder, or the entry's path when ``track_id`` is None.
    track_id : str, optional
    frontend, weights, fingerprint, want : optional
        Expected values (see :func:`check_entry`); a mismatch raises :class:`StaleEntry`.

    Returns
    -------
    dict
    """
    path = os.fspath(cache_dir) if track_id is None else entry_path(cache_dir, track_id)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no cache entry") from exc
    return loads_entry(data, path=path, frontend=frontend, weights=weights, fingerprint=fingerprint, want=want)


def loads_entry(data, *, path="<entry>", frontend=None, weights=None, fingerprint=None, want=None):
    """An entry from its bytes (read from a file or a bucket object), unpickled safely and checked as :func:`read_entry` does."""
    try:
        entry = safe_loads(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DataError(f"{path}: unreadable or unsafe cache entry ({exc})") from exc
    return check_entry(entry, path=path, frontend=frontend, weights=weights, fingerprint=fingerprint, want=want)


# ---------------------------------------------------------------------------------------------------------------
# The cache policy: the one place that judges whether an existing entry serves a request, and what to do about it.

HIT, MISSING, SOURCE_CHANGED, OTHER_SETTINGS, OLD_FORMAT, WRONG_KIND, UNREADABLE, INVALID = (
    "hit",
    "missing",
    "source changed",
    "other settings",
    "old format",
    "wrong kind",
    "unreadable",
    "invalid",
)
#: verdict -> what every command does with it (the cache table of docs/design.md):
#: ``use`` the entry; ``embed`` the clip and store it; ``replace`` the entry with a new one (with a warning);
#: ``keep``: never used and never replaced without ``--overwrite`` (someone else's work). In a cache this
#: process cannot write, ``embed`` and ``replace`` compute the clip for the run alone, without storing it.
#: A command whose only product is the entry (``embed``, ``prepare``) refuses to start over ``keep`` entries
#: (a Beam job on a bucket, which cannot look before it starts, lists each in its errors file instead); a
#: command that needs the embedding (``tag``, ``evaluate``) computes it for the run and leaves the entry.
RULES = {
    HIT: "use",
    MISSING: "embed",
    SOURCE_CHANGED: "replace",
    WRONG_KIND: "replace",
    UNREADABLE: "replace",
    INVALID: "replace",
    OTHER_SETTINGS: "keep",
    OLD_FORMAT: "keep",
}
# StaleEntry.reason -> verdict
_REASONS = {
    "source": SOURCE_CHANGED,
    "settings": OTHER_SETTINGS,
    "format": OLD_FORMAT,
    "kind": WRONG_KIND,
    "invalid": INVALID,
}


class Verdict:
    """What the policy says of one track's entry: ``status`` (a verdict), ``action``, ``entry`` (hits), ``message``."""

    __slots__ = ("status", "action", "entry", "message")

    def __init__(self, status, entry=None, message=None, *, overwrite=False):
        self.status, self.entry, self.message = status, entry, message
        action = RULES[status]
        self.action = "replace" if overwrite and action in ("use", "keep") else action

    @property
    def hit(self):
        return self.action == "use"

    def __repr__(self):
        return f"Verdict({self.status!r}, action={self.action!r})"


class LocalStorage:
    """Entries as files on this machine (:func:`write_entry`: atomic, fsync'd)."""

    def read(self, path):
        """The entry file's bytes, or None when there is none."""
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write(self, cache_dir, track_id, entry):
        return write_entry(cache_dir, track_id, entry)

    def writable(self, cache_dir):
        return writable(cache_dir)


class CacheView:
    """The one cache policy: judges entries against a reader's provenance and reads, checks and stores them.

    Parameters
    ----------
    cache_dir : str
        Local folder, or a bucket prefix with a ``storage`` that reaches it.
    want : dict, optional
        The reader's provenance record (:func:`tagger.embedding.provenance.of_extractor`);
        None for a reader that takes whatever the cache holds, as long as it is
        all of one provenance (training, :meth:`load`).
    overwrite : bool
        Entries that would be used or kept are replaced.
    storage : optional
        ``read(path)``, ``write(cache_dir, track_id, entry)`` and ``writable(cache_dir)``
        (default :class:`LocalStorage`).
    """

    def __init__(self, cache_dir, want=None, *, overwrite=False, storage=None):
        self.cache_dir = os.fspath(cache_dir)
        self.want, self.overwrite = want, overwrite
        self.storage = storage or LocalStorage()
        self._writable = None

    @property
    def writable(self):
        """Whether this process can store entries here (checked once)."""
        if self._writable is None:
            self._writable = bool(self.storage.writable(self.cache_dir))
        return self._writable

    def path(self, track_id):
        return entry_path(self.cache_dir, track_id)

    def judge(self, track_id, fingerprint=None):
        """The verdict on a track's entry (``fingerprint``: of its audio now; None skips that check)."""
        path = self.path(track_id)
        try:
            data = self.storage.read(path)
        except OSError as exc:
            return Verdict(UNREADABLE, message=f"{path}: unreadable ({exc})", overwrite=self.overwrite)
        if data is None:
            return Verdict(MISSING, overwrite=self.overwrite)
        try:
            entry = loads_entry(data, path=path, fingerprint=fingerprint, want=self.want)
        except StaleEntry as exc:
            return Verdict(_REASONS[exc.reason], message=str(exc), overwrite=self.overwrite)
        except DataError as exc:
            return Verdict(UNREADABLE, message=str(exc), overwrite=self.overwrite)
        return Verdict(HIT, entry, overwrite=self.overwrite)

    def holds_all(self, items):
        """Whether every ``(path, track_id)`` item's entry is a hit, judged against its audio as it is now (what a
        run whose extractor is not made yet asks: :func:`tagger.embedding.extractor.plan`)."""
        return all(self.judge(track_id, files.fingerprint(path)).hit for path, track_id in items)

    def read(self, track_id):
        """A hit's entry, read again when its turn comes.

        Raises
        ------
        DataError
            The entry no longer serves (replaced or removed by another process since it was judged).
        """
        verdict = self.judge(track_id)
        if verdict.status != HIT:
            raise DataError(f"cache entry for {track_id} changed during the run ({verdict.status}); rerun")
        return verdict.entry

    def store(self, track_id, entry):
        """Write an entry (the caller decided, by its verdict, that it may)."""
        return self.storage.write(self.cache_dir, track_id, entry)

    def load(self, track_ids):
        """Entries of a dataset, all of one provenance (training and evaluation).

        Every entry is read and validated; a dataset whose entries come from
        two weights, PCA files, frontends, precisions or kinds is refused.

        Returns
        -------
        list of dict
            The entries, in ``track_ids`` order.

        Raises
        ------
        DataError
            A missing, unreadable, invalid or old-format entry (named), or mixed
            provenance (counts and one example of each).
        """
        entries, groups = [], {}
        for track_id in track_ids:
            verdict = self.judge(track_id)
            if verdict.status == MISSING:
                raise DataError(f"{self.path(track_id)}: no cache entry")
            if verdict.status != HIT:
                raise DataError(verdict.message)
            entry = verdict.entry
            key = _dataset_key(entry["provenance"])
            groups.setdefault(key, [track_id, 0, entry["provenance"]])[1] += 1
            entries.append(entry)
        if len(groups) > 1:
            (a_id, a_n, a), (b_id, b_n, b) = sorted(groups.values(), key=lambda g: -g[1])[:2]
            diff = provenance.differences(a, b, fields=DATASET_FIELDS, labels=(a_id, b_id))
            raise DataError(
                f"{self.cache_dir}: the dataset mixes embeddings of {len(groups)} provenances: {a_n} entries like"
                f" {a_id}, {b_n} like {b_id} ({'; '.join(diff)}); a head trains on one: re-embed the others"
                " into this cache with the same settings (tagger embed --overwrite), or into a separate cache"
            )
        return entries


#: what every entry of one dataset shares (the short-clip policy is per entry: it applies to short clips only)
DATASET_FIELDS = ("weights", "precision", "pca", "frontend", "kind")


def _dataset_key(record):
    import json

    return json.dumps([record.get(f) for f in DATASET_FIELDS], sort_keys=True)


def dataset_provenance(entries):
    """The shared provenance of a dataset's entries (:meth:`CacheView.load`), short-clip policy left out."""
    record = dict(entries[0]["provenance"])
    record["short_policy"] = None
    return record


def embedding_as_float(entry):
    """The entry's embedding as float32: as is, or, where it holds its kind's stored dtype, through the kind's
    ``to_float`` (VGGish's quantised uint8 values are dequantised to [-2, 2])."""
    emb = entry["embedding"]
    spec = registry.kind(entry["kind"])
    if spec.to_float and emb.dtype == np.dtype(spec.dtype):
        return registry.resolve(spec.to_float)(emb)
    return emb.astype(np.float32, copy=False)
