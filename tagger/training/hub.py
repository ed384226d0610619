"""Heads on the Hugging Face Hub: ``--model hf://OWNER/REPO[@REVISION]``, fetched once, used offline thereafter.

:func:`fetch` looks in ``huggingface_hub``'s standard cache first (``$HF_HUB_CACHE``,
else ``~/.cache/huggingface/hub``) and downloads (:func:`huggingface_hub.snapshot_download`)
only what is not there, so a fetched head works without a network from then on, and
``HF_HUB_OFFLINE=1`` never reaches for one. A folder ``tagger export`` wrote is what a
repository holds (:data:`BUNDLE_FILES`). The head is loaded with Keras' ``safe_mode`` on,
as every bundle is (:func:`tagger.training.bundle.load_head`): no code travels with it.
"""

import os

from ..exceptions import DataError

__all__ = ["PREFIX", "BUNDLE_FILES", "is_hub", "parse", "fetch"]

PREFIX = "hf://"
#: what a head's repository holds and :func:`fetch` takes from it
BUNDLE_FILES = ("model.keras", "labels.json", "thresholds.json", "metrics.json", "bundle.json", "MODEL.md", "README.md")


def is_hub(model):
    """Whether ``model`` names a head on the Hub (``hf://...``)."""
    return isinstance(model, str) and model.startswith(PREFIX)


def parse(spec):
    """``hf://OWNER/REPO[@REVISION]`` -> ``(repo_id, revision)`` (revision None: the default branch)."""
    body = spec[len(PREFIX) :]
    repo_id, _, revision = body.partition("@")
    parts = repo_id.split("/")
    if len(parts) != 2 or not all(parts) or (revision == "" and "@" in body):
        raise DataError(f"{spec}: a Hub model is hf://OWNER/REPO or hf://OWNER/REPO@REVISION")
    return repo_id, revision or None


def fetch(spec):
    """The local folder of a Hub head: from the cache if it is there, else downloaded into it.

    Raises
    ------
    DataError
        A malformed name; a head that is neither cached nor reachable (offline, or no network); no such
        repository or revision; a repository that holds no ``model.keras``.
    """
    repo_id, revision = parse(spec)
    try:
        import huggingface_hub
        from huggingface_hub import errors
    except ImportError as exc:  # pinned in setup.py; a trimmed environment may lack it
        raise DataError(f"{spec}: Hub models need huggingface_hub (pip install huggingface_hub)") from exc
    common = dict(repo_id=repo_id, revision=revision, allow_patterns=list(BUNDLE_FILES), library_name="tagger")
    try:
        folder = huggingface_hub.snapshot_download(**common, local_files_only=True)
    except errors.LocalEntryNotFoundError:
        folder = None
    if folder is None:
        if huggingface_hub.constants.HF_HUB_OFFLINE:
            raise DataError(
                f"{spec}: not in the local Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE}) and"
                " HF_HUB_OFFLINE is set: fetch it once with the network on"
            )
        try:
            folder = huggingface_hub.snapshot_download(**common)
        except (errors.RepositoryNotFoundError, errors.RevisionNotFoundError) as exc:
            raise DataError(f"{spec}: no such repository or revision on the Hub ({type(exc).__name__})") from exc
        except (errors.LocalEntryNotFoundError, errors.HfHubHTTPError, OSError) as exc:
            raise DataError(
                f"{spec}: not in the local Hugging Face cache ({huggingface_hub.constants.HF_HUB_CACHE}) and the"
                f" Hub cannot be reached ({type(exc).__name__}: {exc})"
            ) from exc
    if not os.path.exists(os.path.join(folder, "model.keras")):
        raise DataError(
            f"{spec}: the repository holds no model.keras (a folder `tagger export` wrote is what it needs)"
        )
    return folder
