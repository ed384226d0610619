"""``tagger weights export SOURCE OUT``: VGGish weights in any form -> a plain file every Keras backend loads."""

from ..embedding import registry
from . import startup

__all__ = ["add_parser", "run"]


def add_parser(sub):
    p = sub.add_parser("weights", help="VGGish weights: export them as a plain file that needs no TensorFlow")
    verbs = p.add_subparsers(dest="verb", required=True)
    export = verbs.add_parser(
        "export",
        help="a SavedModel folder, vggish_model.ckpt or TF Hub handle -> .npz or .safetensors (official names)",
    )
    export.add_argument("source", help="the weights as you have them (a TensorFlow form needs TensorFlow, once)")
    export.add_argument("out", help="the plain file to write (.npz or .safetensors)")
    export.set_defaults(func=run)


def run(args):
    startup.backend(args)
    identifier = registry.weights_reader().export_weights(args.source, args.out)
    print(f"wrote {args.out} ({identifier}; the same id as {args.source}, on every backend)")
    return 0
