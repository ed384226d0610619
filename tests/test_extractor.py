"""The one interface of the three extractors (VGGish, log-mel patches, handcrafted features) and their factory."""

import numpy as np
import pytest

from tagger.embedding import extractor, params, provenance, registry
from tagger.embedding.features import FeatureExtractor
from tagger.embedding.spectrogram import PatchExtractor
from tagger.embedding.vggish import params as vggish_params
from tagger.exceptions import ParameterError

MEMBERS = ("kind", "frontend", "network_id", "pca_id", "postprocessor", "dtype", "short_policy")


@pytest.fixture(scope="module")
def every_extractor(ckpt_path, pca_params):
    return {
        "raw": extractor.make("raw", weights=ckpt_path, batch_size=8),
        "postprocessed": extractor.make("postprocessed", weights=ckpt_path, pca_params=pca_params, batch_size=8),
        "melspec": extractor.make("melspec", frontend="vggish"),
        "melspec-course": extractor.make("melspec", frontend="course"),
        "features": extractor.make("features"),
    }


def test_every_extractor_satisfies_the_protocol(every_extractor):
    for name, made in every_extractor.items():
        assert isinstance(made, extractor.Extractor), name
        assert made.kind in registry.kinds() and made.kind == name.split("-")[0], name
        for member in MEMBERS:
            assert hasattr(made, member), (name, member)
        provenance.of_extractor(made)  # the record every cache entry, bundle and output is compared on


def test_an_object_missing_a_member_is_not_an_extractor():
    class Almost:
        kind, frontend, network_id, pca_id, postprocessor, dtype = "raw", {}, "x", None, None, "float32"

        def embed(self, y, sr): ...

        def finalize(self, values): ...

        def iter_files(self, paths, *, workers=None, raw=False): ...

    assert not isinstance(Almost(), extractor.Extractor)  # no short_policy, no settle
    Almost.short_policy = "pad"
    assert not isinstance(Almost(), extractor.Extractor)  # no settle: a run could not fix its precision first
    Almost.settle = lambda self, paths: None
    assert isinstance(Almost(), extractor.Extractor)


def test_each_extractor_embeds_a_waveform_in_its_kind(every_extractor):
    y = 0.1 * np.sin(np.arange(3 * 16000) * 0.05).astype(np.float32)
    shapes = {"raw": (3, 128), "postprocessed": (3, 128), "melspec": (3, 96, 64), "features": (1, 57)}
    for name, made in every_extractor.items():
        values, times = made.embed(y, 16000)
        if name in shapes:
            assert values.shape == shapes[name] and len(times) == len(values), name
    assert every_extractor["postprocessed"].embed(y, 16000)[0].dtype == np.uint8


def test_a_heads_bundle_json_makes_the_extractor_it_was_trained_with(ckpt_path):
    hop = vggish_params.frontend_params(hop_seconds=0.48)
    patches = extractor.for_head({"embedding": "melspec", "frontend": hop}, weights=ckpt_path, batch_size=4)
    assert isinstance(patches, PatchExtractor) and patches.hop_seconds == pytest.approx(0.48)
    course = extractor.for_head({"embedding": "melspec", "frontend": params.course_params()})
    assert course.course
    assert isinstance(extractor.for_head({"embedding": "features"}, weights=ckpt_path), FeatureExtractor)
    raw = extractor.for_head({"embedding": "raw"}, weights=ckpt_path, batch_size=4)
    assert raw.kind == "raw" and raw.batch_size == 4
    with pytest.raises(ParameterError, match="kind='mfcc'"):
        extractor.make("mfcc")
