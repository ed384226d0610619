"""The provenance record: what made an embedding, written once and compared once.

Every cache entry, output ``.meta.json``, run folder and bundle carries one
record (a plain dict), made by :func:`record` and compared by
:func:`differences`, which names every field that differs:

``weights``
    The network's content id (``vggish-sha1:…`` for VGGish, the feature set
    for handcrafted features, ``melspec`` for log-mel patches), without
    precision or postprocessing.
``precision``
    The network's compute precision (``float32``, ``bfloat16``, ``float16``;
    ``float64`` for features, ``float16`` for stored log-mel patches).
``pca``
    The PCA parameters' content id (``pca-sha1:…``) when embeddings are
    postprocessed, else None.
``frontend``
    :func:`tagger.embedding.vggish.params.frontend_params` (or the feature / course
    settings): sample rate, STFT, mel bands, patch shape and hop.
``short_policy``
    What happens to clips shorter than one patch (``pad`` or ``skip``). A
    cache entry records it only when it applied (a padded clip); elsewhere
    it is None, and entries of clips of a patch or longer serve either policy.
``kind``
    ``raw``, ``postprocessed``, ``features`` or ``melspec``.

Precision rule (one rule, here): **exact match**. An entry or output made in
bfloat16 never serves a float32 reader, nor the reverse, and a dataset or an
output holds one precision. The bound between them is measured (0.8 % of the
largest float32 value with the fixture weights) but not proven for real
weights, so tagger does not treat them as equal; a cache shared by machines
whose ``--precision auto`` differs stays useful by passing the precision its
entries name (the refusal says which).
"""

import json
import numbers

from ..exceptions import DataError
from . import params, registry

__all__ = [
    "FIELDS",
    "record",
    "differences",
    "describe",
    "split_network_id",
    "of_extractor",
    "of_legacy",
    "settings_differences",
]

FIELDS = ("weights", "precision", "pca", "frontend", "short_policy", "kind")
_PRECISIONS = ("float32", "bfloat16", "float16", "float64")


def record(*, weights, precision, pca=None, frontend, short_policy=None, kind):
    """One provenance record (every field of :data:`FIELDS`, plain JSON values).

    Parameters
    ----------
    weights : str
    precision : str
    pca : str, optional
    frontend : dict
    short_policy : {'pad', 'skip'}, optional
    kind : {'raw', 'postprocessed', 'features', 'melspec'}

    Returns
    -------
    dict
    """
    return {
        "weights": str(weights),
        "precision": str(precision),
        "pca": None if pca is None else str(pca),
        "frontend": _plain(dict(frontend)),
        "short_policy": None if short_policy is None else str(short_policy),
        "kind": str(kind),
    }


def _plain(value):
    """JSON-comparable values (tuples as lists, NumPy scalars as Python numbers)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _show(field, value):
    if field == "frontend" and isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in value.items()) + "}"
    return "none" if value is None else str(value)


def differences(have, want, *, fields=FIELDS, labels=("cached", "wanted")):
    """Every field of ``fields`` where two records differ, as readable lines.

    A frontend difference names the keys that differ.

    Returns
    -------
    list of str
        E.g. ``["pca: pca-sha1:aa (cached), pca-sha1:bb (wanted)"]``; empty when they match.
    """
    out = []
    for field in fields:
        a, b = _plain(have.get(field)), _plain(want.get(field))
        if a == b:
            continue
        if field == "frontend" and isinstance(a, dict) and isinstance(b, dict):
            keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            a = {k: a.get(k) for k in keys}
            b = {k: b.get(k) for k in keys}
        out.append(f"{field}: {_show(field, a)} ({labels[0]}), {_show(field, b)} ({labels[1]})")
    return out


def describe(rec):
    """A one-line summary of a record, e.g. ``vggish-sha1:ab.. float32 raw, hop 0.96 s``."""
    parts = [rec.get("weights"), rec.get("precision"), rec.get("kind")]
    if rec.get("pca"):
        parts.append(rec["pca"])
    hop = (rec.get("frontend") or {}).get("hop_seconds")
    text = " ".join(str(p) for p in parts if p)
    return text + (f", hop {hop} s" if hop is not None else "")


def split_network_id(network_id):
    """``'vggish-sha1:ab+bfloat16'`` -> ``('vggish-sha1:ab', 'bfloat16')`` (float32 when no suffix)."""
    base, _, suffix = str(network_id).partition("+")
    parts = [p for p in suffix.split("+") if p and p != "pca"] if suffix else []
    precision = next((p for p in parts if p in _PRECISIONS), "float32")
    return base, precision


def of_extractor(extractor, *, kind=None):
    """The record of what an extractor (:class:`~tagger.embedding.vggish.extractor.Embedder`, feature or patch extractor) makes.

    ``kind``: override what is recorded (a tagger stores raw embeddings whatever its head reads).
    """
    kind = kind or extractor.kind
    spec = registry.kind(kind)
    if spec.precision is not None:  # a fixed precision: the extractor's dtype states it
        weights, precision = extractor.network_id, extractor.dtype
    else:  # a network's: its id carries it
        weights, precision = split_network_id(extractor.network_id)
    return record(
        weights=weights,
        precision=precision,
        pca=extractor.pca_id if spec.pca else None,
        frontend=extractor.frontend,
        short_policy=extractor.short_policy,
        kind=kind,
    )


def of_legacy(*, weights, kind, pca, frontend, short_policy=None):
    """The record rebuilt from a format-2 cache entry's or an old output's fields.

    Raises
    ------
    DataError
        When a field it needs was never recorded (an old output's ``+pca`` without the PCA parameters' id).
    """
    spec = registry.kind(kind)
    base, precision = split_network_id(weights)
    precision = spec.precision or precision
    if spec.pca and not pca:
        raise DataError(
            "it records postprocessed embeddings without the id of their PCA parameters, so what made it is unknown"
        )
    return record(weights=base, precision=precision, pca=pca, frontend=frontend, short_policy=short_policy, kind=kind)


def _describe_setting(value):
    if isinstance(value, dict) and "hash" in value:
        return f"{value['name']} ({value['hash']})"
    return json.dumps(value)


def _upgrade_settings(old):
    """Settings of an output begun by an older tagger, in today's fields (its embedding provenance rebuilt).

    Tag outputs before the provenance record held ``weights`` as one string
    (``vggish-sha1:…+pca+bfloat16``): the network and precision are read from
    it; ``+pca`` without the PCA parameters' id cannot be rebuilt.
    """
    if "model" not in old or "precision" in old or "weights" not in old:
        return old
    weights = str(old["weights"])
    if weights == params.FEATURE_SET:
        kind = "features"
    elif weights.startswith("melspec"):
        kind = "melspec"
    else:
        kind = "postprocessed" if "+pca" in weights.split("+")[1:] else "raw"
    rebuilt = of_legacy(
        weights=weights, kind=kind, pca=None, frontend=old.get("frontend") or {}, short_policy=old.get("short_policy")
    )
    return {**old, **rebuilt}


def settings_differences(old, new):
    """Every setting that differs between a resumable output's recorded settings and a rerun's, as readable lines.

    The rule :class:`tagger.resumable.ResumableOutput` compares with (``compare``): provenance fields by
    :func:`differences`, a head (``model``) by its content hash, every other setting exactly; ``old`` as an older
    tagger recorded it is read in today's fields first.

    Raises
    ------
    DataError
        ``old`` cannot be read in today's fields (an old output's ``+pca`` without the PCA parameters' id).
    """
    old = _upgrade_settings(old)
    fields = [k for k in FIELDS if k in old or k in new]
    out = differences(old, new, fields=fields, labels=("then", "now"))
    keys = sorted((set(old) | set(new)) - set(fields))

    def same(k):  # a model is the same when its content hash is
        if k == "model":
            return (old.get(k) or {}).get("hash") == (new.get(k) or {}).get("hash")
        return old.get(k) == new.get(k)

    return out + [
        f"{k}: {_describe_setting(old.get(k))} then, {_describe_setting(new.get(k))} now" for k in keys if not same(k)
    ]


#: the network and PCA parameters of AudioSet's released embeddings (what the shipped heads learned from).
#: The released features were made by Google's VGGish with its official weights and PCA parameters; the
#: weights' content hash cannot be computed on machines without them, so it is not invented: a head trained
#: on the released features accepts any VGGish weights (use the official ones) and requires the official PCA
#: parameters, whose content id is computed from the released ``vggish_pca_params.npz``.
RELEASED_WEIGHTS = "audioset-release-vggish"
RELEASED_PCA = "audioset-release-pca"
OFFICIAL_PCA_ID = "pca-sha1:8aa80535b8705c96"


def head_differences(trained, given):
    """What differs between the embeddings a head was trained on and those that would feed it now.

    Compared: the weights (unless the head learned from AudioSet's released
    features, see :data:`RELEASED_WEIGHTS`) and, for postprocessed heads, the
    PCA parameters (the released ones are the official file). Precision and
    hop are not: they change embeddings within a small measured bound, and a
    head serves either.

    Returns
    -------
    list of str
    """
    trained = dict(trained)
    fields = [] if trained.get("weights") == RELEASED_WEIGHTS else ["weights"]
    if trained.get("kind") and registry.kind(trained["kind"]).pca:
        fields.append("pca")
        if trained.get("pca") == RELEASED_PCA:
            trained["pca"] = OFFICIAL_PCA_ID
    return differences(trained, given, fields=fields, labels=("trained on", "given now"))
