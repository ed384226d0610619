"""Pictures: a clip's taggram (``tagger plot taggram``) and a run's training history (``tagger plot run``).

Each function draws a :class:`matplotlib.figure.Figure`, saves it as PNG and
returns it, so what it drew can be checked line by line, label by label.
"""

import csv
import json
import os
import zipfile

import numpy as np

from ..exceptions import DataError
from ..records import write_atomic

__all__ = ["read_taggram", "plot_taggram", "plot_run"]


def _save(fig, out):
    """The figure as a PNG, written atomically; a missing folder is made, as every output's is."""
    write_atomic(out, lambda f: fig.savefig(f, format="png", dpi=120), binary=True)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_taggram(path):
    """A taggram file that ``tagger tag --taggram`` wrote, as a dict of arrays (and ``path``, ``model`` when recorded)."""
    if not os.path.exists(path):
        raise DataError(f"{path}: no such taggram file")
    what = "tagger tag --taggram DIR writes one .npz per clip into DIR"
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic[:2] != b"PK":  # an .npz is a zip archive; a tag output or any other file is not
        raise DataError(f"{path}: not a taggram file ({what}; this file is not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise DataError(
            f"{path}: a damaged or truncated taggram file ({type(exc).__name__}: {exc}); tag the clip"
            " again to rewrite it"
        ) from exc
    missing = [k for k in ("taggram", "labels", "timestamps") if k not in data]
    if missing:
        raise DataError(f"{path}: not a taggram file of tagger tag (missing {', '.join(missing)})")
    taggram, labels, times = data["taggram"], data["labels"], data["timestamps"]
    if taggram.ndim != 2 or taggram.shape[1] != len(labels) or len(times) != taggram.shape[0]:
        raise DataError(
            f"{path}: its taggram {taggram.shape} does not match its {len(labels)} labels and {len(times)} patch"
            " times (patches x labels expected); tag the clip again to rewrite it"
        )
    return data


def plot_taggram(path, out=None, *, top=10):
    """The clip's top tags over time: one row per tag, patch by patch, the clip's path and the model in the title.

    Parameters
    ----------
    path : str
        A ``.npz`` of ``tagger tag --taggram``: ``taggram`` (T, n_labels), ``labels``, ``timestamps`` (T,) in s.
    out : str, optional
        The PNG (default: ``path`` with ``.png``).
    top : int
        Tags shown: the highest mean probability over the clip first.

    Returns
    -------
    matplotlib.figure.Figure
    """
    data = read_taggram(path)
    taggram, labels, times = data["taggram"], [str(t) for t in data["labels"]], data["timestamps"]
    order = np.argsort(-taggram.mean(axis=0), kind="stable")[: max(1, int(top))]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(times) + 3), 0.35 * len(order) + 1.6))
    step = float(times[1] - times[0]) if len(times) > 1 else 0.96
    end = float(times[-1]) + step if len(times) else step
    image = ax.imshow(
        taggram[:, order].T, aspect="auto", cmap="magma", vmin=0.0, vmax=1.0, extent=(0.0, end, len(order) - 0.5, -0.5)
    )
    ax.set_yticks(range(len(order)), [labels[i] for i in order], fontsize=8)
    ax.set_xlabel("time (s)")
    clip = str(data["path"]) if "path" in data else os.path.splitext(os.path.basename(path))[0]
    model = str(data["model"]) if "model" in data else "model not recorded"
    ax.set_title(f"{clip}\n{model}", fontsize=8)
    fig.colorbar(image, ax=ax, label="probability")
    fig.tight_layout()
    _save(fig, out or os.path.splitext(path)[0] + ".png")
    plt.close(fig)
    return fig


def _number(text):
    try:
        float(text)
    except (TypeError, ValueError):
        return False
    return True


def plot_run(run_dir, out=None):
    """A run's training history: loss and the monitored score per epoch, the learning rate, the best epoch marked.

    Parameters
    ----------
    run_dir : str
        A run folder of ``tagger train`` (``history.csv``; ``metrics.json`` names the monitor and the best epoch).
    out : str, optional
        The PNG (default ``run_dir/history.png``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    path = os.path.join(run_dir, "history.csv")
    members = os.path.join(run_dir, "members")
    if not os.path.exists(path) and os.path.isdir(members):  # an ensemble trains no epochs of its own
        names = sorted(os.listdir(members))
        raise DataError(
            f"{run_dir}: an ensemble; its members trained the epochs: plot one of"
            f" {', '.join(os.path.join(members, n) for n in names)}"
        )
    if not os.path.exists(path):
        raise DataError(f"{run_dir}: no history.csv (not a run folder of tagger train, or no epoch finished yet)")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: a damaged history ({exc})") from exc
    if not rows:
        raise DataError(f"{path}: no epoch recorded yet")
    needed = ("epoch", "loss", "val_score", "lr")
    columns = {}
    for line, row in enumerate(rows, start=2):
        try:
            for key in needed:
                columns.setdefault(key, []).append(int(row[key]) if key == "epoch" else float(row[key]))
        except (KeyError, TypeError, ValueError):
            bad = {k: row.get(k) for k in needed if k not in row or not _number(row.get(k))}
            raise DataError(
                f"{path}: a damaged history: line {line} has no number for {', '.join(bad) or 'a column'} ({bad});"
                f" the columns {', '.join(needed)} are written by tagger train"
            ) from None
    epochs = columns["epoch"]
    column = columns.__getitem__
    metrics = {}
    if os.path.exists(os.path.join(run_dir, "metrics.json")):
        with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
            metrics = json.load(f)
    monitor = metrics.get("monitor", "validation score")
    scores = column("val_score")
    best = metrics.get("best_epoch", epochs[int(np.argmax(scores))])
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 6), height_ratios=(3, 1))
    top.plot(epochs, column("loss"), color="tab:blue", marker=".", label="training loss")
    top.set_ylabel("training loss")
    right = top.twinx()
    right.plot(epochs, scores, color="tab:orange", marker=".", label=f"{monitor} (validation)")
    right.set_ylabel(f"{monitor} (validation)")
    for ax in (top, right, bottom):
        ax.axvline(best, color="tab:green", linestyle="--", label=f"best epoch {best}" if ax is right else None)
    handles = top.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    top.legend(handles, [h.get_label() for h in handles], fontsize=8, loc="best")
    bottom.plot(epochs, column("lr"), color="tab:gray", marker=".", label="learning rate")
    bottom.set_yscale("log")
    bottom.set_ylabel("learning rate")
    bottom.set_xlabel("epoch")
    bottom.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole numbers
    at_best = scores[epochs.index(best)] if best in epochs else max(scores)
    top.set_title(f"{os.path.basename(os.path.normpath(run_dir))}: best epoch {best}, {monitor} {at_best:.4f}")
    fig.tight_layout()
    _save(fig, out or os.path.join(run_dir, "history.png"))
    plt.close(fig)
    return fig
