"""Handcrafted features: the 57 columns of the GTZAN feature table, arrays first, then files.

>>> values = handcrafted(y, sr)                       # (57,) float64, named by FEATURE_NAMES
>>> features_to_file(["genres/"], "features.csv")     # one row per file, resumable

The features are means and variances over frames of chroma, RMS, spectral
centroid, bandwidth and roll-off, zero-crossing rate, the harmonic and
percussive signals of HPSS and 20 MFCCs, plus the tempo, computed with
librosa at 22,050 Hz with the settings in :mod:`tagger.embedding.params` that
reproduce ``features_30_sec.csv``. :class:`FeatureExtractor` makes them
another input of the one pipeline: cache entries of kind ``'features'``
(one (1, 57) row per track) that ``tagger train``, ``evaluate`` and ``tag``
use as they use embeddings.
"""

import logging
import os
import warnings

import numpy as np

from ..console import progress_bar
from ..exceptions import AudioError, DataError
from ..resumable import ResumableOutput, check_resume
from ..tables import parquet_path_columns
from . import files, params, provenance
from .audio import to_mono
from .decode import describe_error, load_source
from .kernels import import_librosa
from .pipeline import TrackResult, _task, default_workers, iter_messages, refuse_in_bootstrapping_child
from .registry import Kind, Model

__all__ = [
    "FEATURE_NAMES",
    "handcrafted",
    "feature_messages",
    "FeatureExtractor",
    "features_to_file",
    "FORMATS",
    "make_extractor",
]

log = logging.getLogger(__name__)

_FRAME_FEATURES = (
    "chroma_stft",
    "rms",
    "spectral_centroid",
    "spectral_bandwidth",
    "rolloff",
    "zero_crossing_rate",
    "harmony",
    "perceptr",
)
#: the 57 feature columns, in the table's order
FEATURE_NAMES = tuple(
    [f"{name}_{stat}" for name in _FRAME_FEATURES for stat in ("mean", "var")]
    + ["tempo"]
    + [f"mfcc{i}_{stat}" for i in range(1, params.FEATURE_N_MFCC + 1) for stat in ("mean", "var")]
)
FORMATS = ("csv", "parquet")


def handcrafted(y, sr=params.FEATURE_SAMPLE_RATE):
    """The 57 handcrafted features of a waveform.

    Parameters
    ----------
    y : np.ndarray, shape (n,) or (n, channels)
        Samples (float in [-1, 1], or integer PCM); downmixed, and resampled
        to 22,050 Hz when ``sr`` differs.
    sr : int
        Sample rate of ``y`` in Hz.

    Returns
    -------
    np.ndarray, shape (57,), float64
        In the order of :data:`FEATURE_NAMES`.

    Raises
    ------
    AudioError
        Audio shorter than one FFT frame (2,048 samples at 22,050 Hz, 93 ms),
        or holding NaN or infinite samples.
    """
    y = to_mono(y, sr, sample_rate=params.FEATURE_SAMPLE_RATE)
    return _features(y)


def _warm_up():
    """Run :func:`_compute` once on 2 s of clicks in noise (float32, as every caller passes)."""
    import librosa

    rng = np.random.default_rng(0)
    y = 0.05 * rng.standard_normal(2 * params.FEATURE_SAMPLE_RATE).astype(np.float32)
    y[:: params.FEATURE_SAMPLE_RATE // 4] = 1.0  # onsets, so that beat tracking reaches its kernels
    _compute(librosa, y)


def _features(y):
    return _compute(import_librosa(warm=_warm_up), y)


def _compute(librosa, y):
    sr, n_fft, hop, pad = params.FEATURE_SAMPLE_RATE, params.FEATURE_N_FFT, params.FEATURE_HOP, params.FEATURE_PAD_MODE
    if len(y) < n_fft:
        raise AudioError(f"audio of {len(y)} samples at {sr} Hz is shorter than one {n_fft}-sample frame")
    stft = librosa.stft(y, n_fft=n_fft, hop_length=hop, pad_mode=pad)
    magnitude = np.abs(stft)
    power = magnitude**2
    harmonic, percussive = librosa.decompose.hpss(stft)
    # the table's librosa cut the inverse STFTs to length afterwards (no `length` argument)
    harmony = librosa.util.fix_length(librosa.istft(harmonic, hop_length=hop), size=len(y))
    perceptr = librosa.util.fix_length(librosa.istft(percussive, hop_length=hop), size=len(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # silence: "Trying to estimate tuning from empty frequency set"
        chroma = librosa.feature.chroma_stft(S=power, sr=sr, n_fft=n_fft, hop_length=hop)
    frames = {
        "chroma_stft": chroma,
        "rms": librosa.feature.rms(y=y, frame_length=n_fft, hop_length=hop, pad_mode=pad),
        "spectral_centroid": librosa.feature.spectral_centroid(S=magnitude, sr=sr, n_fft=n_fft, hop_length=hop),
        "spectral_bandwidth": librosa.feature.spectral_bandwidth(S=magnitude, sr=sr, n_fft=n_fft, hop_length=hop),
        "rolloff": librosa.feature.spectral_rolloff(S=magnitude, sr=sr, n_fft=n_fft, hop_length=hop),
        "zero_crossing_rate": librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
        "harmony": harmony,
        "perceptr": perceptr,
    }
    out = []
    for name in _FRAME_FEATURES:
        out += [np.mean(frames[name]), np.var(frames[name])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # silence: "no onsets", tempo 0
        tempo = librosa.beat.beat_track(y=y, sr=sr, hop_length=hop)[0]
    out.append(np.atleast_1d(tempo)[0])
    mel = librosa.feature.melspectrogram(S=power, sr=sr, n_fft=n_fft, hop_length=hop)
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=params.FEATURE_N_MFCC)
    for row in mfcc:
        out += [np.mean(row), np.var(row)]
    return np.asarray(out, dtype=np.float64)


def feature_messages(index, path):
    """Worker job (:func:`tagger.embedding.pipeline.iter_messages`): one file's features, as one message.

    Yields
    ------
    tuple
        ``("done", index, duration_s, [warning texts], values (57,) float64, length_samples)``
        or ``("error", index, reason)``.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            y = load_source(path, sample_rate=params.FEATURE_SAMPLE_RATE)
            try:
                values = _features(y)
            except AudioError as exc:
                raise AudioError(f"{os.fspath(path)}: {exc}") from exc
        texts = [str(w.message) for w in caught]
        yield ("done", index, len(y) / params.FEATURE_SAMPLE_RATE, texts, values, len(y))
    except Exception as exc:  # noqa: BLE001 - any failure of one file is reported, never fatal
        yield ("error", index, describe_error(exc))


def iter_features(paths, *, workers=None):
    """Features of files, in parallel; yield :class:`tagger.embedding.pipeline.TrackResult` in input order.

    A result's ``embedding`` is the (1, 57) feature row, ``timestamps`` is ``[0.0]``.
    """
    paths = [_task(p) for p in paths]
    pending, next_out = {}, 0
    workers = default_workers() if workers is None else workers
    for message in iter_messages(paths, feature_messages, {}, workers=workers):
        index = message[1]
        result = TrackResult(index=index, path=os.fspath(paths[index]))
        if message[0] == "done":
            result.duration, result.warnings = message[2], message[3]
            result.embedding, result.timestamps = message[4][None, :], np.zeros(1)
            result.length = message[5]
        else:
            result.error = message[2]
        pending[index] = result
        while next_out in pending:
            yield pending.pop(next_out)
            next_out += 1


class FeatureExtractor:
    """The handcrafted features behind the interface of :class:`tagger.embedding.vggish.extractor.Embedder`.

    So that caches, training, evaluation and tagging take feature rows where
    they take embeddings: an "embedding" here is one (1, 57) row per clip,
    of kind ``'features'``, made by the feature set :data:`tagger.embedding.params.FEATURE_SET`.
    """

    kind = "features"
    pca_id = None
    postprocessor = None
    short_policy = "error"
    dtype = "float64"

    def __init__(self):
        self.frontend = params.feature_params()
        self.network_id = params.FEATURE_SET

    def finalize(self, values):
        return values

    def embed(self, y, sr):
        """Features of a waveform as an embedding: ``(values (1, 57), timestamps [0.0])``."""
        return handcrafted(y, sr)[None, :], np.zeros(1)

    def settle(self, paths):
        """Nothing depends on the run's audio (:meth:`tagger.embedding.extractor.Extractor.settle`)."""

    def iter_files(self, paths, *, workers=None, raw=False):
        """Features of files in parallel (see :func:`iter_features`); ``raw`` is accepted and ignored."""
        return iter_features(paths, workers=workers)


def _fields():
    return ["path", "filename", "length", *FEATURE_NAMES]


def features_to_file(
    inputs, out, *, include=(), exclude=(), root=None, workers=None, errors_file=None, progress=None, overwrite=False
):
    """Handcrafted features of audio files into a table, one row per file, resumably.

    Columns: ``path`` (as found), ``filename`` (its base name, as in the GTZAN
    table), ``length`` (samples at 22,050 Hz), then :data:`FEATURE_NAMES`.
    CSV rows are appended as files finish; a rerun skips files already in the
    table or in the errors file and ends as an uninterrupted run would. A
    Parquet ``out`` is collected in ``OUT.partial.csv`` and written when every
    file is done. The settings are recorded in ``OUT.meta.json`` (a rerun
    with others is refused unless ``overwrite``); one process writes an output
    at a time.

    Parameters
    ----------
    inputs : sequence of str
        Files, folders, list files (see :func:`tagger.embedding.files.collect`).
    out : str
        ``.csv`` or ``.parquet``.
    workers : int, optional
        Processes (default: one per core beyond the first; 0: in this process).
    errors_file : str, optional
        Default ``OUT.errors.tsv``.
    progress : bool, optional
    overwrite : bool

    Returns
    -------
    dict
        total, extracted, skipped, failed, errors_file.
    """
    refuse_in_bootstrapping_child()  # an unguarded script re-run by a worker stops here, fast
    out = os.fspath(out)
    fmt = "parquet" if out.endswith(".parquet") else "csv"
    items = files.collect(inputs, include=include, exclude=exclude, root=root, required=True)
    rows_file = out + ".partial.csv" if fmt == "parquet" else out
    settings = {"features": params.feature_params(), "format": fmt}
    output = ResumableOutput(
        out,
        kind="csv",
        settings=settings,
        compare=provenance.settings_differences,
        fieldnames=_fields(),
        rows_file=rows_file,
        errors_file=errors_file,
        overwrite=overwrite,
    )
    if fmt == "parquet" and os.path.exists(out) and not os.path.exists(rows_file) and not overwrite:
        check_resume(
            out, output.errors_file, output.meta_path, settings, compare=output.compare
        )  # a finished table: nothing to append
        done = {output.key(p) for p in _read_parquet_paths(out)}
        lacking = sum(output.key(p) not in done for p, _ in items)
        if lacking:
            raise DataError(
                f"{out} is finished and lacks {lacking} of these files; write to another --out, or rerun with --overwrite"
            )
        return {
            "total": len(items),
            "extracted": 0,
            "skipped": len(items),
            "failed": 0,
            "errors_file": output.errors_file,
        }
    with output:
        todo = [p for p, _ in output.pending(items)]
        summary = {
            "total": len(items),
            "extracted": 0,
            "skipped": len(items) - len(todo),
            "errors_file": output.errors_file,
        }
        bar = progress_bar(len(todo), desc="features", progress=progress)
        try:
            for r in iter_features(todo, workers=workers):
                for text in r.warnings:
                    log.warning("%s: %s", r.path, text)
                if r.ok:
                    output.row([r.path, os.path.basename(r.path), r.length, *(repr(float(v)) for v in r.embedding[0])])
                    summary["extracted"] += 1
                else:
                    log.error("%s: %s", r.path, r.error)
                    output.error(r.path, r.error)
                bar.update(1)
        finally:
            bar.close()
        summary["failed"] = output.failed
        if fmt == "parquet":
            import pandas as pd

            output.close_rows()
            table = read_table(rows_file)
            names = pd.DataFrame([parquet_path_columns(p) for p in table["path"]], index=table.index)
            shown = table["filename"].map(lambda n: os.fsencode(n).decode("utf-8", "replace"))
            table = table.assign(path=names["path"], filename=shown, path_bytes=names["path_bytes"])
            table.to_parquet(out, index=False)
            os.unlink(rows_file)
    return summary


def _read_parquet_paths(path):
    import pandas as pd
    import pyarrow.parquet as pq

    if "path_bytes" in pq.read_schema(path).names:  # the exact names (tagger writes them); else the readable ones
        return [os.fsdecode(b) for b in pd.read_parquet(path, columns=["path_bytes"])["path_bytes"]]
    return pd.read_parquet(path, columns=["path"])["path"].tolist()


def read_table(path):
    """A feature table (ours, or the GTZAN ``features_30_sec.csv``) as a DataFrame; every feature column checked.

    Raises
    ------
    DataError
        Missing file, missing feature columns (named), or non-numeric values.
    """
    import pandas as pd

    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such feature table")
    try:
        df = (
            pd.read_parquet(path)
            if path.endswith(".parquet")
            else pd.read_csv(
                path,
                keep_default_na=False,
                encoding_errors="surrogateescape",
                dtype={"path": object, "filename": object},
            )
        )
    except Exception as exc:  # noqa: BLE001 - any parser failure is a bad table
        raise DataError(f"{path}: unreadable feature table ({exc})") from exc
    missing = [c for c in ("filename", *FEATURE_NAMES) if c not in df.columns]
    if missing:
        raise DataError(f"{path}: a feature table needs the columns {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    try:
        df[list(FEATURE_NAMES)] = df[list(FEATURE_NAMES)].astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: non-numeric feature values ({exc})") from exc
    bad = ~np.isfinite(df[list(FEATURE_NAMES)].to_numpy()).all(axis=1)
    if bad.any():
        raise DataError(
            f"{path}: {int(bad.sum())} rows hold NaN or infinite features (first: {df['filename'][bad].iloc[0]})"
        )
    return df


def check_table_rows(df, path="<table>"):
    """Raise DataError when a feature table names a file twice (by stem)."""
    stems = df["filename"].map(lambda n: os.path.splitext(os.path.basename(str(n)))[0])
    dup = stems[stems.duplicated()]
    if len(dup):
        raise DataError(f"{path}: {len(dup)} files appear twice (first: {dup.iloc[0]})")
    return stems


def make_extractor(kind, **options):
    """The features model's extractor factory (:mod:`tagger.embedding.registry`): it takes no settings."""
    return FeatureExtractor()


#: The features model, declared to :mod:`tagger.embedding.registry`.
SPEC = Model(
    name="features",
    kinds=(
        Kind(
            "features",
            "features",
            (None,),
            "float32",
            "the 57 handcrafted features of tagger.embedding.features",
            per_clip=True,
            precision="float64",
            row_names=("D>0",),
        ),
    ),
    sample_rate=params.FEATURE_SAMPLE_RATE,
    window_seconds=0.0,
    hop_seconds=0.0,
    frontend=params.feature_params,
    weights=(),
    licence="none needed (computed, no weights)",
    make="tagger.embedding.features:make_extractor",
    options=(),
)
