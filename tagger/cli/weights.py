"""``tagger weights export SOURCE OUT [--embedding MODEL]``: a model's weights in any form -> a plain file every Keras
backend loads (VGGish's by default; musicnn's networks with ``--embedding musicnn-mtt`` ...)."""

from . import options, startup

__all__ = ["add_parser", "run"]


def add_parser(sub):
    p = sub.add_parser("weights", help="a model's weights: export them as a plain file that needs no TensorFlow")
    verbs = p.add_subparsers(dest="verb", required=True)
    export = verbs.add_parser(
        "export",
        help="VGGish: a SavedModel folder, vggish_model.ckpt or TF Hub handle; musicnn's networks: a checkpoint"
        " folder, or their installed package ('-' with --embedding) -> .npz or .safetensors (the variables' names)",
    )
    export.add_argument("source", help="the weights as you have them (a TensorFlow form needs TensorFlow, once)")
    export.add_argument("out", help="the plain file to write (.npz or .safetensors)")
    options.add_embedding_choice(export, what="export the weights of (its model's)")
    export.set_defaults(func=run)


def run(args):
    startup.backend(args)
    source = None if args.source == "-" else args.source  # '-': the model's default source
    identifier = startup.weights_reader(args).export_weights(source, args.out)
    print(f"wrote {args.out} ({identifier}; the same id as {args.source}, on every backend)")
    return 0
