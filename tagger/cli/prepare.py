"""``tagger prepare DATASET``: a dataset -> track index, vocabulary and embedding (or feature, or patch) cache."""

import argparse
import os
import sys

from ..datasets import audioset, folder, gtzan, mtt
from ..embedding import registry
from ..exceptions import ParameterError
from ..training import starter
from . import options, startup

__all__ = ["add_parser", "run"]

#: ``--frontend`` (the older spelling of ``--embedding melspec``) -> the kind cached and its frontend
#: (:class:`tagger.embedding.spectrogram.PatchExtractor`)
PATCH_FRONTENDS = {"melspec": ("melspec", "vggish"), "melspec-course": ("melspec", "course")}
#: ``--frontend``'s own values since the device frontend: where VGGish's log-mel is computed (``frontend_kind``)
FRONTEND_KINDS = ("reference", "device")


#: which options each adapter takes (the epilog of ``tagger prepare --help``)
ADAPTER_OPTIONS = """options by dataset (the embedding options --weights, --hop, --precision, --workers ... go with all):
  audioset  SOURCE = folder with bal_train/ and the class files; --vocabulary 527|music|genre10 (repeatable),
            --seed; writes index_<vocabulary>.csv, vocab_<vocabulary>.json and train_<vocabulary>.json
  gtzan     SOURCE = the genres/ folder, or a feature table (features_30_sec.csv); --splits, --split,
            --genres, --features, --frontend, --augment, --no-embed, --root
  mtt       SOURCE = the audio folder; --annotations (required), --vocabulary top50|all, --features,
            --frontend, --augment, --no-embed, --root
  folder    SOURCE = your audio folder; --labels (with --layout table), --layout, --group, --task,
            --valid, --test, --seed, --features, --frontend, --augment, --no-embed, --root
every dataset: OUT/index.csv (or index_<vocabulary>.csv), its vocabulary and train.json, the starter config
(head and settings by the rule of tagger.training.starter, from what the cache holds and the number of
training clips); `tagger train OUT` trains it."""


def add_parser(sub):
    p = sub.add_parser(
        "prepare",
        help="dataset -> track index + embedding cache + a starter config (then: tagger train OUT)",
        description="A dataset -> its track index, vocabulary, embedding (or feature, or patch) cache and a starter"
        " config beside the index, which `tagger train OUT` trains.",
        epilog=ADAPTER_OPTIONS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dataset", choices=("audioset", "gtzan", "mtt", "folder"))
    p.add_argument(
        "source",
        help="audioset: folder with bal_train/ and the class files; gtzan: the genres/ folder; mtt: the"
        " audio folder; folder: your audio folder",
    )
    p.add_argument("--out", required=True, help="output folder (index, vocabulary, cache/)")
    p.add_argument(
        "--vocabulary",
        action="append",
        help="audioset: 527, music, genre10 (repeatable; default all); mtt: top50 or all",
    )
    p.add_argument("--annotations", help="mtt: annotations_final.csv")
    p.add_argument("--splits", help="gtzan: folder of the split lists (default: ../splits/dnn-mgr beside genres/)")
    p.add_argument("--split", choices=("filtered", "stratified"), help="gtzan split (default filtered)")
    p.add_argument("--genres", choices=("all", "gtzan8"), default="all", help="gtzan genre subset")
    p.add_argument("--seed", type=int, default=0, help="audioset, folder: seed of the split and folds")
    p.add_argument("--labels", help="folder: labels table, path,labels with |-joined tags (and a --group column)")
    p.add_argument(
        "--layout",
        choices=("table", "genre"),
        default="table",
        help="folder: labels from --labels (table), or from AUDIO/<genre>/<clip> folders (genre)",
    )
    p.add_argument(
        "--group",
        default=None,
        metavar="COLUMN",
        help="folder: a labels-table column (artist, album) whose groups never straddle the split or the folds",
    )
    p.add_argument(
        "--task",
        choices=("auto", "multilabel", "singlelabel"),
        default="auto",
        help="folder: multi- or single-label (auto: multi-label when a clip has several labels)",
    )
    p.add_argument("--valid", type=float, default=0.15, help="folder: share of groups (or clips) for validation")
    p.add_argument("--test", type=float, default=0.15, help="folder: share of groups (or clips) for testing")
    options.add_root_option(p)
    p.add_argument("--no-embed", action="store_true", help="gtzan/mtt: write the index only")
    options.add_embedding_choice(p)
    options.add_embedding_alias(
        p,
        "--features",
        "features",
        "cache the 57 handcrafted features of each track instead of VGGish embeddings (--embedding features;"
        " gtzan also takes a feature table such as features_30_sec.csv as its source)",
    )
    p.add_argument(
        "--frontend",
        choices=(*FRONTEND_KINDS, "vggish", *PATCH_FRONTENDS),
        default=None,
        help="where VGGish's log-mel is computed, as for embed and tag: reference (NumPy in the decode workers, the"
        " default) or device (keras.ops with the network). Older spellings of --embedding, kept: vggish (VGGish"
        " embeddings, the default); melspec: the 96 x 64 log-mel patches (float16, 381 KB per 30 s clip) for the"
        " CNN heads and fine-tuning (--embedding melspec); melspec-course: the course projects' 128 x 128 patches"
        " (22,050 Hz, FFT 1024, hop 512, 128 mels; 360 KB per 30 s clip)",
    )
    p.add_argument(
        "--augment",
        type=int,
        default=0,
        metavar="N",
        help="gtzan/mtt: also cache N augmented copies of every training track (noise, shift, speed, pitch,"
        " pitch+speed, gain, percussive; p = 0.25 each)",
    )
    options.add_embedding_options(p)
    p.set_defaults(func=run)


def run(args):
    # --frontend reference|device says where VGGish's log-mel is computed (as embed's and tag's); its other values
    # are older spellings of --embedding
    args.frontend_kind = args.frontend if args.frontend in FRONTEND_KINDS else None
    startup.backend(args)
    if args.dataset == "audioset":
        return _audioset(args)
    if args.dataset == "gtzan" and os.path.isfile(args.source):  # a feature table, e.g. features_30_sec.csv
        return _gtzan_table(args)
    extractor = _extractor(args)
    if args.dataset == "folder":
        return _folder(args, extractor)
    return _indexed(args, extractor)


def _kind(args):
    """What the cache holds, by the options: ``--embedding`` (or ``--features``), or ``--frontend``'s patches, else
    the default kind (VGGish's ``raw``; postprocessed ones get the same starter config)."""
    if args.frontend in PATCH_FRONTENDS:
        kind, _ = PATCH_FRONTENDS[args.frontend]
        if args.embedding not in (None, kind):
            raise ParameterError(
                f"--frontend {args.frontend} caches {kind}, and --embedding/--features asks for {args.embedding}:"
                " two different inputs, choose one"
            )
        return kind
    kind = registry.stored_kind(args.embedding)
    if args.frontend == "device" and "frontend_kind" not in registry.model(registry.kind(kind).model).options:
        raise ParameterError(
            f"--frontend device computes VGGish's log-mel with its network; {kind} has no such frontend: leave out"
            " --frontend, or cache VGGish embeddings"
        )
    return kind


def _extractor(args):
    """What the cache is filled with: embeddings (default), features, log-mel patches, or nothing (--no-embed)."""
    kind = _kind(args)
    if args.no_embed:
        return None
    if args.frontend in PATCH_FRONTENDS:
        return options.extractor_from(args, kind, frontend=PATCH_FRONTENDS[args.frontend][1])
    return options.extractor_from(args, kind)


def _starter(args, index, task, *, kind=None):
    """Write the starter config beside the index (what the cache holds, its ``kind``, decides the head)."""
    kind = kind or _kind(args)
    return starter.write_starter(
        args.out, index=index, vocabulary=os.path.join(args.out, "vocab.json"), task=task, kind=kind
    )


def _starter_note(written, target=None):
    """The end of a prepare line: the starter config and the command that trains it (``target``: folder or config)."""
    config, new = written
    if config is None:
        return "; no starter config (no clip in the training split)"
    kept = "" if new else ", kept as it was (delete it to have it written afresh)"
    return f"; starter config {config}{kept} (then: tagger train {target or config})"


def _audioset(args):
    written = audioset.prepare(
        args.source,
        args.out,
        vocabularies=args.vocabulary or audioset.VOCABULARIES,
        seed=args.seed,
        progress=options.progress(args),
    )
    for vocab, path in written.items():
        config = starter.write_starter(
            args.out,
            index=path,
            vocabulary=os.path.join(args.out, f"vocab_{vocab}.json"),
            task="singlelabel" if vocab == "genre10" else "multilabel",
            file_name=f"train_{vocab}.json",
        )
        print(f"{vocab}: {path}{_starter_note(config)}")
    return options.EXIT_OK


def _default_splits(genres_dir):
    """The dnn-mgr split lists beside a GTZAN ``genres/`` folder."""
    return os.path.join(os.path.dirname(os.path.abspath(genres_dir.rstrip("/"))), "splits", "dnn-mgr")


def _gtzan_table(args):
    splits = args.splits or _default_splits(os.path.dirname(os.path.abspath(args.source)))
    path = gtzan.prepare_table(args.source, splits, args.out, split=args.split or "filtered", genres=args.genres)
    config = _starter(args, path, "singlelabel", kind="features")
    print(f"track index: {path}{_starter_note(config, args.out)}")
    return options.EXIT_OK


def _folder(args, extractor):
    done = folder.prepare(
        args.source,
        args.out,
        labels=args.labels,
        layout=args.layout,
        group=args.group,
        task=args.task,
        valid=args.valid,
        test=args.test,
        seed=args.seed,
        root=args.root,
        extractor=extractor,
        workers=args.workers,
        progress=options.progress(args),
        augment=args.augment,
    )
    config = _starter(args, done["index"], done["task"])
    print(
        f"track index: {done['index']} ({done['n_clips']} clips, {done['task']}, {len(done['vocabulary'])} labels;"
        f" embedded {done['embedded']}, reused {done['skipped']} from the cache)" + _starter_note(config, args.out)
    )
    options.left_out(
        ("without a label (left out)", done["unlabelled"]),
        ("labelled but not found", done["missing"]),
        ("that could not be decoded (left out; see the cache's errors.tsv)", [p for p, _ in done["failed"]]),
    )
    if done["fold_note"]:
        print(done["fold_note"], file=sys.stderr)
    return options.EXIT_SOME_FAILED if done["failed"] else options.EXIT_OK


def _indexed(args, extractor):
    """GTZAN and MagnaTagATune from audio: the index of the official lists, and the cache of their clips."""
    shared = dict(
        extractor=extractor, workers=args.workers, root=args.root, progress=options.progress(args), summary=True
    )
    if args.dataset == "gtzan":
        splits = args.splits or _default_splits(args.source)
        path, counts = gtzan.prepare(
            args.source,
            splits,
            args.out,
            split=args.split or "filtered",
            genres=args.genres,
            augment=args.augment,
            **shared,
        )
        missing = "of the split lists without audio"
    else:
        if not args.annotations:
            raise ParameterError("tagger prepare mtt needs --annotations annotations_final.csv")
        which = (args.vocabulary or ["top50"])[0]
        path, counts = mtt.prepare(args.annotations, args.source, args.out, which=which, augment=args.augment, **shared)
        missing = "without audio (indexed, not embedded)"
    task = "singlelabel" if args.dataset == "gtzan" else "multilabel"
    config = _starter(args, path, task)
    print(
        f"track index: {path} ({counts['indexed']} clips indexed; embedded {counts['embedded']}, reused"
        f" {counts['reused']} from the cache, failed {len(counts['failed'])}; {len(counts['missing'])} without audio)"
        + _starter_note(config, args.out)
    )
    options.left_out(
        (missing, counts["missing"]),
        ("that could not be decoded (see the cache's errors.tsv)", [p for p, _ in counts["failed"]]),
    )
    if counts.get("fold_note"):
        print(counts["fold_note"], file=sys.stderr)
    return options.EXIT_SOME_FAILED if counts["failed"] else options.EXIT_OK
