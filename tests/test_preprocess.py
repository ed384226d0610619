"""GTZAN and MagnaTagATune adapters, against the real files and split lists in ../shared."""

import csv
import gzip
import json

import numpy as np
import pandas as pd
import pytest

from tagger.datasets import gtzan, mtt
from tagger.embedding import cache
from tagger.embedding.embed import embed_files
from tagger.exceptions import DataError, ParameterError


def test_gtzan_filtered_split_and_cache(shared, embedder, tmp_path):
    splits = shared / "data/gtzan/splits/dnn-mgr"
    assignment = gtzan.read_splits(splits, "filtered")
    assert sum(v == "train" for v in assignment.values()) == 443
    assert sum(v == "valid" for v in assignment.values()) == 197
    assert sum(v == "test" for v in assignment.values()) == 290
    genres = shared / "data/gtzan/genres"
    # a track embedded earlier by `tagger embed` into the same cache, with the same root, is reused
    first = sorted(genres.glob("blues/*"))[0]
    embed_files([first], tmp_path / "cache", extractor=embedder, workers=0, root=genres, progress=False)
    entry = tmp_path / "cache" / f"blues/{first.name}.pkl"
    before = entry.stat()
    index = gtzan.prepare(genres, splits, tmp_path, extractor=embedder, workers=1, progress=False, root=genres)
    df = pd.read_csv(index)
    # track ids are the paths relative to root, as `tagger embed` makes them: <genre>/<file>
    stems = df["track_id"].map(lambda t: t.split("/")[1].rsplit(".", 1)[0])
    assert all(df["track_id"] == df["labels"] + "/" + df["track_id"].str.split("/").str[1])
    # the ten local tracks are the .00000 of each genre; the filtered split keeps those it lists
    assert set(stems) == {s for s in assignment if s.endswith(".00000")}
    assert all(df["split"] == stems.map(assignment))
    assert all(df["labels"] == stems.str.split(".").str[0])
    for track_id in df["track_id"]:
        assert cache.read_entry(tmp_path / "cache", track_id)["embedding"].shape[1] == 128
    after = entry.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not embedded again


def test_gtzan_stratified_and_subset(shared, tmp_path):
    index = gtzan.prepare(
        shared / "data/gtzan/genres",
        shared / "data/gtzan/splits/dnn-mgr",
        tmp_path,
        split="stratified",
        genres="gtzan8",
    )
    df = pd.read_csv(index)
    assert len(df) == 8 and not {"disco", "rock"} & set(df["labels"])
    assert json.loads((tmp_path / "vocab.json").read_text()) == gtzan.SUBSETS["gtzan8"]


@pytest.fixture(scope="module")
def mtt_annotations(shared, tmp_path_factory):
    """annotations_final.csv in the official format, rebuilt from the real jukemir metadata."""
    with gzip.open(shared / "data/mtt/metadata/jukemir/magnatagatune.json.gz") as f:
        meta = json.load(f)
    clips = [m for m in meta.values() if m.get("split") is not None]
    tags = sorted({t for m in clips for t in m["y_all"]})
    path = tmp_path_factory.mktemp("mtt") / "annotations_final.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL)
        w.writerow(["clip_id", *tags, "mp3_path"])
        for m in clips:
            have = set(m["y_all"])
            w.writerow([m["extra"]["clip_id"], *[int(t in have) for t in tags], m["extra"]["mp3_path"]])
    return path, clips


def test_mtt_vocabulary_and_splits_match_the_reference(shared, mtt_annotations, tmp_path):
    path, clips = mtt_annotations
    assert path.read_text().splitlines()[0].startswith('"clip_id"\t"')
    index = pd.read_csv(mtt.prepare(path, shared / "data/mtt/audio", tmp_path), dtype={"track_id": str})
    vocab = json.loads((tmp_path / "vocab.json").read_text())
    reference = np.load(shared / "data/mtt/splits/minzwon_sota_split_mtat/tags.npy", allow_pickle=True)
    assert set(vocab) == set(reference.tolist()) and len(vocab) == 50
    # split by folder equals the jukemir split of each clip
    by_clip = {m["extra"]["clip_id"]: m["split"] for m in clips}
    assert all(index["split"] == index["clip_id"].astype(str).map(by_clip))
    # valid and test membership equal Won et al.'s lists (clips with at least one top-50 tag)
    for part in ("valid", "test"):
        listed = np.load(shared / f"data/mtt/splits/minzwon_sota_split_mtat/{part}.npy", allow_pickle=True)
        ours = set(index.loc[index["split"] == part, "mp3_path"])
        assert ours == {str(x).split("\t")[1] for x in listed}
    assert (index["split"] == "train").sum() == 15247


def test_mtt_fixture_and_real_clip(shared, embedder, tmp_path):
    clip = "e/joram-moments_of_clarity-08-solipsism-59-88.mp3"
    ann = tmp_path / "annotations_final.csv"
    rows = [
        ("1", "1", "0", "1", clip),
        ("2", "0", "0", "0", "0/missing.mp3"),
        ("3", "1", "1", "0", "c/also_missing.mp3"),
    ]
    with open(ann, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_ALL)
        w.writerow(["clip_id", "techno", "guitar", "no singer", "mp3_path"])
        w.writerows(rows)
    out = tmp_path / "out"
    audio = shared / "data/mtt/audio"
    df = pd.read_csv(
        mtt.prepare(ann, audio, out, which="all", extractor=embedder, workers=0, root=audio),
        dtype={"track_id": str, "clip_id": str},
    )
    assert list(df["clip_id"]) == ["1", "3"]  # clip 2 has no tag
    assert list(df["track_id"]) == [clip, "c/also_missing.mp3"]  # the audio path relative to root
    assert list(df["split"]) == ["test", "valid"] and df["labels"].iloc[0] == "techno|no singer"
    assert cache.read_entry(out / "cache", clip)["embedding"].shape == (30, 128)
    with pytest.raises(DataError, match="have no audio"):
        mtt.prepare(ann, shared / "data/mtt/audio", tmp_path / "strict", require_audio=True)


def test_mtt_bad_annotations(tmp_path):
    bad = tmp_path / "a.csv"
    bad.write_text('"id"\t"x"\n"1"\t"0"\n')
    with pytest.raises(DataError, match="clip_id"):
        mtt.prepare(bad, tmp_path, tmp_path / "o")


def test_audioset_adapter_on_a_few_of_the_released_records(shared, tmp_path):
    """The AudioSet adapter on 60 of the 4,070 released record files (the whole set trains in the slow lane)."""
    import shutil

    from tagger.datasets import audioset

    source = tmp_path / "audioset"
    (source / "bal_train").mkdir(parents=True)
    for name in ("class_labels_indices.csv", "ontology.json"):
        shutil.copy(shared / "data/audioset" / name, source / name)
    for record in sorted((shared / "data/audioset/bal_train").glob("*.tfrecord"))[:60]:
        shutil.copy(record, source / "bal_train" / record.name)
    segments = audioset.read_records(source / "bal_train")
    written = audioset.prepare(source, tmp_path / "out", vocabularies=["527", "music"], progress=False)
    index = pd.read_csv(written["527"])
    assert len(index) == len(segments) > 100 and set(index["split"]) == {"train", "valid"}
    assert index.groupby("video_id")["split"].nunique().max() == 1  # split by video
    entry = cache.read_entry(tmp_path / "out/cache", index["track_id"].iloc[0])
    assert entry["kind"] == "postprocessed" and entry["embedding"].dtype == np.uint8
    assert entry["embedding"].shape[1] == 128 and len(list((tmp_path / "out/cache").rglob("*.pkl"))) == len(index)
    music = pd.read_csv(written["music"])
    vocabulary = json.loads((tmp_path / "out/vocab_music.json").read_text())
    assert 0 < len(music) < len(index) and len(vocabulary) == 150 and "Music" in vocabulary


def test_gtzan_split_lists_read_on_tiny_lists(tmp_path):
    """The unit tier's GTZAN test: the three lists of a split, blank lines and folders ignored; what is refused."""
    for part, names in {"train": ["blues/blues.00001.wav", ""], "valid": ["rock.00002.au"], "test": []}.items():
        (tmp_path / f"{part}_filtered.txt").write_text("\n".join(names) + "\n")
    assert gtzan.read_splits(tmp_path, "filtered") == {"blues.00001": "train", "rock.00002": "valid"}
    with pytest.raises(DataError, match=r"train_stratified.txt: GTZAN split list missing"):
        gtzan.read_splits(tmp_path, "stratified")
    with pytest.raises(ParameterError, match="split='nope' must be one of"):
        gtzan.read_splits(tmp_path, "nope")


def test_audioset_music_subtree_and_track_ids_on_a_tiny_ontology(tmp_path):
    """The unit tier's AudioSet test: the Music subtree (a class reached twice counted once), ids, provenance."""
    from tagger.datasets import audioset

    music = audioset.MUSIC_MID
    nodes = [
        {"id": music, "child_ids": ["/m/rock", "/m/genre"]},
        {"id": "/m/genre", "child_ids": ["/m/rock", "/m/jazz"]},
        {"id": "/m/rock", "child_ids": []},
        {"id": "/m/jazz", "child_ids": []},
        {"id": "/m/speech", "child_ids": []},
    ]
    (tmp_path / "ontology.json").write_text(json.dumps(nodes))
    names = {music: "Music", "/m/rock": "Rock", "/m/jazz": "Jazz", "/m/speech": "Speech"}  # /m/genre has no data
    assert audioset.music_subtree(tmp_path / "ontology.json", names) == ["Music", "Jazz", "Rock"]  # in id order
    assert audioset.track_id({"video_id": "abc", "start": 30.0}) == "abc_30000"
    record = audioset.released_provenance()
    assert record["kind"] == "postprocessed" and record["pca"] == audioset.PCA_ID
