"""Step 1, embedding: audio -> a model's values (VGGish's 128-d embeddings by default, or features, or patches) -> the cache.

Each model is a folder or module of its own that declares its spec to the
registry: ``vggish/`` (``params``, ``frontend``, ``network``,
``postprocess``, ``extractor``), ``features`` (the 57 handcrafted GTZAN
features), ``spectrogram`` (log-mel patches cached for the CNN heads).
Everything else reads the specs and knows no model: ``registry`` (models and
the kinds of values they cache), ``params`` (the constants of no network:
precision, the whole-file limit, the features' and course patches'
settings), ``files`` (inputs, track ids, fingerprints), ``audio`` (decode
and resample), ``augment`` (augmented copies), ``decode`` (the decode
workers' loop), ``pipeline`` (worker processes feeding a network in order),
``provenance`` (the record of what made an embedding), ``cache`` (one pickle
per track, and the one cache policy), ``embed`` (``embed_files`` and the
precision rule), ``extractor`` (the one interface of every model's
extractor, and their factory). Nothing here imports a later step.
"""
