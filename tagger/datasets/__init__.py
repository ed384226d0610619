"""Step 3, datasets: each adapter turns one dataset into a track index, a vocabulary and an embedding cache.

``tagger prepare DATASET`` calls them (:mod:`tagger.cli`); the scripts in the repository's ``preprocess/``
folder are the same commands run from a checkout. Modules: :mod:`.audioset`, :mod:`.gtzan`, :mod:`.mtt`,
:mod:`.folder` (your own clips) and :mod:`.common` (seeded splits and folds shared by them).
"""
