"""Step 1, embedding: audio -> VGGish log-mel patches -> 128-d embeddings (or features, or patches) -> the cache.

``params`` (every constant), ``files`` (inputs, track ids, fingerprints),
``audio`` (decode and resample), ``frontend`` (log-mel patches, pure NumPy),
``augment`` (augmented copies), ``decode`` (the decode workers' jobs),
``pipeline`` (worker processes feeding the network in order), ``vggish``
(the network and its weights), ``postprocess`` (PCA whitening and 8-bit
quantisation), ``provenance`` (the record of what made an embedding),
``cache`` (one pickle per track, and the one cache policy), ``embed`` (the
:class:`Embedder` API and ``tagger embed``), ``spectrogram`` (log-mel patches
cached for the CNN heads), ``features`` (the 57 handcrafted GTZAN features),
``extractor`` (the one interface of the three extractors, and their factory).
Nothing here imports a later step.
"""
