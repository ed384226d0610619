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
    package_data={"tagger": ["models/*/*", "py.typed"]},  # py.typed: the public API carries type hints (PEP 561)
    # Compatible ranges, not pins: tagger installs beside other packages. Each lower bound is the oldest version
    # tested (.ci/install_checks.sh installs the lowest allowed set with uv's --resolution lowest-direct and runs
    # the unit tier there); an upper bound only where a break is known or expected, with the reason. The exact set
    # CI runs is the lock, .ci/constraints.txt (made by .ci/lock.sh).
    install_requires=[
        "tensorflow>=2.21,<3",  # TensorFlow 3 is a new major (and tf-keras follows TensorFlow's minor)
        "keras>=3.15,<4",  # the shipped heads were saved by Keras 3.15 (3.12 cannot read them); Keras 4: a new major
        "tensorflow-hub>=0.16.1",  # --weights hub handles (imports only with tf-keras)
        "setuptools>=65,<81",  # tensorflow_hub 0.16 imports pkg_resources, which setuptools 81 removed
        "tf-keras>=2.21",
        "librosa>=0.10.2",  # 0.10's zero-padded centred frames, as musicnn's frontend is tested on
        "soundfile>=0.12.1",
        "soxr>=0.4",  # the first soxr built for NumPy 2
        "pescador>=3.0,<4",  # TrackMux builds on pescador 3's Streamer and buffer_stream
        "pandas>=2.2.2",  # the first pandas 2.2 built for NumPy 2
        "numpy>=2.0",
        "scikit-learn>=1.5",
        "tqdm>=4.66",
        "threadpoolctl>=3.7",  # before 3.7 it runs ldconfig (find_library) whenever scikit-learn is imported
        "tensorboard>=2.21",
        "matplotlib>=3.9",  # the first matplotlib built for NumPy 2
        "pyarrow>=16",  # tagger features writes Parquet
        "optuna>=4.0",  # tagger tune
        "audiomentations>=0.43,<1",  # tagger prepare --augment (0.x: its transforms' arguments still change)
        "safetensors>=0.4.3",  # the plain weights file (`tagger weights export`), beside .npz
        "huggingface_hub>=0.30",  # --model hf://OWNER/REPO (snapshot_download into its standard cache)
    ],
    extras_require={
        # ruff: lint and format, checked by .ci/run (pyproject.toml); pytest-xdist: the suite on every core (-n 2);
        # coverage: .ci/coverage, the suite's coverage with the processes it starts; mypy: the public modules' hints.
        # ruff and mypy from the versions CI checks with (another release formats or infers differently)
        "test": ["pytest>=9.0", "pytest-xdist>=3.8", "coverage>=7.10", "ruff>=0.17.6", "mypy>=2.4"],
        # the documentation site (mkdocs.yml, docs/): MkDocs Material, the API pages from the docstrings
        "docs": ["mkdocs>=1.6.1,<2", "mkdocs-material>=9.8", "mkdocstrings[python]>=1.0", "mkdocs-gen-files>=0.6"],
        "cloud": [],
        # the Beam pipeline (tagger embed/tag --runner beam | DataflowRunner); imported only by that path
        "beam": ["apache-beam[gcp]>=2.77"],  # the version the Beam tests run
        # Keras 3's JAX backend (KERAS_BACKEND=jax): the CPU build here; on a GPU, install jax[cuda13] instead.
        # PyTorch is not listed: its PyPI wheel is a multi-GB CUDA build; use the one your machine has
        "jax": ["jax>=0.10.2"],  # the version the JAX lane runs
    },
    entry_points={"console_scripts": ["tagger = tagger.cli:console"]},
)
