"""Peak resident memory of the decode path for one file, without TensorFlow.

Run as a script: prints JSON {"main_mb", "worker_mb", "patches"}; the network
is replaced by a stand-in so only decoding, patching and batching are measured.
The main figure is VmHWM (this address space's peak, reset at exec); getrusage's
ru_maxrss is not used for it because Linux carries it over fork and exec from
the parent (pytest, with TensorFlow loaded).
"""

import json
import resource
import sys

import numpy as np


def peak_mb():
    """Peak resident memory of this process since exec, in MB (VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main():
    from tagger.embedding.pipeline import iter_embeddings
    from tagger.embedding.vggish.frontend import decode_messages

    n = {"patches": 0}

    def run(patches):
        n["patches"] += len(patches)
        return np.zeros((len(patches), 128), np.float32)

    options = dict(hop_seconds=0.96, short_policy="pad", chunk_patches=32)
    results = list(
        iter_embeddings([sys.argv[1]], run, target=decode_messages, target_options=options, row_shape=(128,), workers=1)
    )
    if not results[0].ok:
        raise SystemExit(results[0].error)
    print(
        json.dumps(
            {
                "main_mb": peak_mb(),
                "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                "patches": n["patches"],
            }
        )
    )


if __name__ == "__main__":
    main()
