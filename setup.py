"""tagger: music tagging by transfer learning from Google's VGGish."""

import re

from setuptools import find_packages, setup

# the version lives in tagger/version.py alone; read as text, so building never imports the package
with open("tagger/version.py", encoding="utf-8") as f:
    VERSION = re.search(r'__version__ = "([^"]+)"', f.read()).group(1)

with open("README.md", encoding="utf-8") as f:
    LONG_DESCRIPTION = f.read()

setup(
    # "tagger" and "preprocess" are taken on PyPI by unrelated projects: the distribution is vggish-tagger,
    # the one package it installs is `tagger` (the dataset adapters are tagger.datasets)
    name="vggish-tagger",
    version=VERSION,
    description="Music tagging with transfer learning from Google's VGGish",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["tagger", "tagger.*"]),
    package_data={"tagger": ["models/*/*"]},
    # one set that `pip check` accepts (TensorFlow 2.21 + Keras 3; tensorflow-hub needs tf-keras)
    install_requires=[
        "tensorflow==2.21.0",
        "keras==3.15.1",
        "tensorflow-hub==0.16.1",
        "tf-keras==2.21.0",
        "librosa==0.11.0",
        "soundfile==0.14.0",
        "soxr==0.5.0.post1",  # audiomentations 0.43 needs soxr < 1
        "pescador==3.0.0",
        "pandas==3.1.1",
        "numpy==2.4.6",
        "scikit-learn==1.9.1",
        "tqdm==4.70.1",
        "threadpoolctl==3.8.0",
        "tensorboard==2.21.0",
        "matplotlib==3.11.2",
        "optuna==5.0.0",  # tagger tune
        "audiomentations==0.43.1",  # tagger prepare --augment
        "safetensors==0.8.0",  # the plain weights file (`tagger weights export`), beside .npz
        "huggingface_hub==2.4.0",  # --model hf://OWNER/REPO (snapshot_download into its standard cache)
        # pinned to what apache-beam[gcp] needs, so that adding an extra changes no installed version
        # (unpinned, the base takes protobuf 7, pillow 13 and python-dateutil 4, which [beam] downgrades;
        # tests/test_project.py checks every extra)
        "protobuf==6.33.6",
        "pillow==12.3.0",
        "python-dateutil==2.9.0.post0",
    ],
    extras_require={
        # ruff: lint and format, checked by .ci/run (pyproject.toml); pytest-xdist: the suite on every core (-n 2);
        # coverage: .ci/coverage, the suite's coverage with the processes it starts
        "test": ["pytest==9.2.0", "pytest-xdist==3.8.0", "coverage==7.18.0", "ruff==0.17.6"],
        "cloud": [],
        # the Beam pipeline (tagger embed/tag --runner beam | DataflowRunner); imported only by that path
        "beam": ["apache-beam[gcp]==2.77.0"],
        # Keras 3's JAX backend (KERAS_BACKEND=jax): the CPU build here; on a GPU, install jax[cuda13] instead.
        # PyTorch is not pinned: its PyPI wheel is a multi-GB CUDA build; use the one your machine has
        "jax": ["jax==0.10.2"],
    },
    entry_points={"console_scripts": ["tagger = tagger.cli:console"]},
)
