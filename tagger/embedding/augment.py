"""Audio augmentation: the GTZAN course projects' seven transforms, built from audiomentations and librosa.

>>> y2 = augment(y, 16000, seed=augment_seed("blues.00012", 1))   # one seeded copy

In order, each applied with its own probability (the course projects'
default: 0.25 each, the percussive part last): additive Gaussian noise at a
signal-to-noise ratio, a circular time shift, a speed change (time stretch,
pitch kept), a pitch shift (duration kept), pitch and speed together
(resampling, as a record played faster), a gain (a multiplication) and the
percussive component of HPSS. ``tagger prepare --augment N`` writes N such
copies of every training track into the cache (:func:`augmented_rows`);
the decode workers make them, in parallel (:class:`Augmented` tasks).
"""

import copy
import hashlib
import json
import random
from typing import NamedTuple

import numpy as np

from ..exceptions import ParameterError
from .kernels import import_librosa

__all__ = ["DEFAULTS", "augment", "augment_seed", "check_settings", "Augmented", "augmented_rows", "COPY_MARK"]

#: each transform's probability and range (the course projects' probabilities: 0.25 each)
DEFAULTS = {
    "noise": {"p": 0.25, "min_snr_db": 10.0, "max_snr_db": 30.0},
    "shift": {"p": 0.25, "min_fraction": -0.2, "max_fraction": 0.2},  # circular (the end wraps to the start)
    "speed": {"p": 0.25, "min_rate": 0.8, "max_rate": 1.25},  # > 1: faster and shorter, same pitch
    "pitch": {"p": 0.25, "min_semitones": -2.0, "max_semitones": 2.0},
    "pitch_speed": {"p": 0.25, "min_factor": 0.9, "max_factor": 1.1},  # > 1: higher and shorter
    "gain": {"p": 0.25, "min_gain_db": -6.0, "max_gain_db": 6.0},
    "percussive": {"p": 0.25},
}
ORDER = tuple(DEFAULTS)
#: a copy's track id: ``<source track id>@aug<k>``
COPY_MARK = "@aug"


def check_settings(settings=None):
    """Complete augmentation settings from :data:`DEFAULTS` and check them.

    Parameters
    ----------
    settings : dict, optional
        transform -> {setting: value}; missing transforms and settings take
        the defaults; ``{"noise": {"p": 0}}`` turns one off.

    Returns
    -------
    dict

    Raises
    ------
    ParameterError
        Unknown transform or setting, a probability outside [0, 1], min above max.
    """
    out = copy.deepcopy(DEFAULTS)
    for name, given in (settings or {}).items():
        if name not in DEFAULTS:
            raise ParameterError(f"unknown augmentation {name!r}; known: {', '.join(ORDER)}")
        if not isinstance(given, dict):
            raise ParameterError(f"augmentation {name}={given!r} must be a mapping of settings")
        for key, value in given.items():
            if key not in DEFAULTS[name]:
                raise ParameterError(f"unknown setting {name}.{key}; known: {', '.join(DEFAULTS[name])}")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise ParameterError(f"augmentation setting {name}.{key}={value!r} must be a number")
            out[name][key] = float(value)
    for name, cfg in out.items():
        if not 0 <= cfg["p"] <= 1:
            raise ParameterError(f"augmentation setting {name}.p={cfg['p']!r} must be in [0, 1]")
        lows = [k for k in cfg if k.startswith("min_")]
        for low in lows:
            high = "max_" + low[4:]
            if cfg[low] > cfg[high]:
                raise ParameterError(f"augmentation setting {name}.{low}={cfg[low]} is above {name}.{high}={cfg[high]}")
    for name in ("speed", "pitch_speed"):
        key = "min_rate" if name == "speed" else "min_factor"
        if out[name][key] <= 0:
            raise ParameterError(f"augmentation setting {name}.{key}={out[name][key]} must be > 0")
    return out


def _percussive(samples, sample_rate):
    return import_librosa().effects.percussive(samples).astype(np.float32)


def _transforms(settings, sample_rate):
    import_librosa()  # before audiomentations, which imports librosa: its kernels compiled one process at a time
    import audiomentations as am

    s = settings
    return am.Compose(
        [
            am.AddGaussianSNR(
                min_snr_db=s["noise"]["min_snr_db"], max_snr_db=s["noise"]["max_snr_db"], p=s["noise"]["p"]
            ),
            am.Shift(
                min_shift=s["shift"]["min_fraction"],
                max_shift=s["shift"]["max_fraction"],
                shift_unit="fraction",
                rollover=True,
                fade_duration=0.0,
                p=s["shift"]["p"],
            ),
            am.TimeStretch(
                min_rate=s["speed"]["min_rate"],
                max_rate=s["speed"]["max_rate"],
                leave_length_unchanged=False,
                p=s["speed"]["p"],
            ),
            am.PitchShift(
                min_semitones=s["pitch"]["min_semitones"], max_semitones=s["pitch"]["max_semitones"], p=s["pitch"]["p"]
            ),
            # resampled to sr / factor and played at sr: `factor` times faster and higher
            am.Resample(
                min_sample_rate=int(round(sample_rate / s["pitch_speed"]["max_factor"])),
                max_sample_rate=int(round(sample_rate / s["pitch_speed"]["min_factor"])),
                p=s["pitch_speed"]["p"],
            ),
            am.Gain(min_gain_db=s["gain"]["min_gain_db"], max_gain_db=s["gain"]["max_gain_db"], p=s["gain"]["p"]),
            am.Lambda(transform=_percussive, p=s["percussive"]["p"]),
        ]
    )


def augment_seed(track_id, copy_number, base_seed=0):
    """The seed of one copy of one track (stable across runs, machines and worker order)."""
    digest = hashlib.sha256(f"{track_id}\0{copy_number}\0{base_seed}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def augment(y, sample_rate, *, seed, settings=None):
    """One augmented copy of a mono waveform.

    Parameters
    ----------
    y : np.ndarray, shape (n,), float32
    sample_rate : int
        Hz.
    seed : int
        The same seed gives the same copy (:func:`augment_seed`).
    settings : dict, optional
        See :func:`check_settings`.

    Returns
    -------
    np.ndarray, shape (m,), float32
        m differs from n after a speed change.
    """
    settings = check_settings(settings)
    y = np.ascontiguousarray(y, dtype=np.float32)
    # audiomentations draws from the global `random` and NumPy generators: seed them, then put them back
    saved = random.getstate(), np.random.get_state()
    try:
        random.seed(seed)
        np.random.seed(seed)
        out = _transforms(settings, sample_rate)(samples=y, sample_rate=sample_rate)
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])
    return np.ascontiguousarray(out, dtype=np.float32)


class Augmented(NamedTuple):
    """A worker task: copy ``copy`` of the audio at ``path``, made with ``seed`` and ``settings`` (JSON text)."""

    path: str
    copy: int
    seed: int
    settings: str

    def __fspath__(self):  # the source file: fingerprints and messages name it
        return self.path


def augmented_rows(df, n_copies, *, settings=None, base_seed=0):
    """Index rows and worker tasks for ``n_copies`` augmented copies of every training track.

    Parameters
    ----------
    df : pandas.DataFrame
        A track index (``track_id``, ``path``, ``split``, ``labels``, and ``fold`` when present).
    n_copies : int
    settings : dict, optional
    base_seed : int

    Returns
    -------
    rows : pandas.DataFrame
        The copies: ``track_id`` ``<id>@aug<k>``, the source's path, split
        (always ``train``), labels and fold; ``augmented_from`` the source id;
        ``augmentation`` the settings and seed as JSON.
    items : list of (Augmented, str)
        Worker tasks and their track ids.
    """
    import pandas as pd

    if not isinstance(n_copies, int) or isinstance(n_copies, bool) or n_copies < 0:
        raise ParameterError(f"augment={n_copies!r} must be an integer >= 0 (copies per training track)")
    settings = check_settings(settings)
    text = json.dumps(settings, sort_keys=True)
    rows, items = [], []
    for _, row in df[df["split"] == "train"].iterrows():
        for k in range(1, n_copies + 1):
            seed = augment_seed(row["track_id"], k, base_seed)
            copy_row = row.to_dict()
            copy_row.update(
                track_id=f"{row['track_id']}{COPY_MARK}{k}",
                augmented_from=row["track_id"],
                augmentation=json.dumps({"seed": seed, "copy": k, "settings": settings}, sort_keys=True),
            )
            rows.append(copy_row)
            items.append((Augmented(str(row["path"]), k, seed, text), copy_row["track_id"]))
    return pd.DataFrame(rows, columns=list(df.columns) + ["augmented_from", "augmentation"]), items
