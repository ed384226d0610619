"""Step 1, embedding: audio -> VGGish log-mel patches -> 128-d embeddings -> the cache.

``params`` (every constant), ``files`` (inputs, track ids, fingerprints),
``audio`` (decode and resample), ``frontend`` (log-mel patches, pure NumPy),
``augment`` (augmented copies), ``decode`` (the decode workers' jobs),
``pipeline`` (worker processes feeding the network in order), ``vggish``
(the network and its weights), ``postprocess`` (PCA whitening and 8-bit
quantisation), ``cache`` (one pickle per track), ``embed`` (the
:class:`Embedder` API and ``tagger embed``), ``spectrogram`` (log-mel patches
cached for the CNN heads). Nothing here imports training or tagging.
"""
