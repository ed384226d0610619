"""Step 2, training: heads on cached embeddings (or features, or patches) into run folders.

``config`` (validated experiment configs), ``dataset`` (track indexes,
vocabularies, splits and folds), ``streams`` (pescador streams of patch
windows), ``layers`` and ``heads`` (the head registry; saved heads load with :func:`bundle.load_head`),
``finetune`` (a trainable VGGish trunk), ``runs`` (run-folder I/O), ``train``
(the training loop, nested cross-validation), ``metrics``, ``evaluate``,
``baseline`` (logistic regression), ``tune`` (Optuna), ``bundle`` (shipped
and exported heads). Imports the embedding step (the cache), never tagging.
"""
