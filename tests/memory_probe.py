"""Peak resident memory of the decode path for one file, without TensorFlow.

Run as a script: prints JSON {"main_mb", "worker_mb", "patches"}; the network
is replaced by a stand-in so only decoding, patching and batching are measured.
"""

import json
import resource
import sys

import numpy as np


def main():
    from tagger.pipeline import iter_embeddings

    n = {"patches": 0}

    def run(patches):
        n["patches"] += len(patches)
        return np.zeros((len(patches), 128), np.float32)

    results = list(iter_embeddings([sys.argv[1]], run, batch_size=64, workers=1))
    if not results[0].ok:
        raise SystemExit(results[0].error)
    print(json.dumps({
        "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "patches": n["patches"],
    }))


if __name__ == "__main__":
    main()
