"""``tagger models`` (the shipped heads, a line each) and ``tagger export`` (a run -> a Hub-ready bundle with its card)."""

from ..embedding import registry
from ..exceptions import DataError
from ..training import bundle
from . import options, startup

__all__ = ["add_parsers", "run_models", "run_export"]


def add_parsers(sub):
    p = sub.add_parser(
        "models", help="list the shipped heads (a one-line summary of each card) and the embedding models"
    )
    p.set_defaults(func=run_models)

    p = sub.add_parser(
        "export",
        help="a run folder -> a bundle folder with its model card (MODEL.md, README.md), ready for the Hugging Face Hub",
    )
    p.add_argument("run", metavar="RUN", help="a run folder of tagger train")
    p.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="the bundle folder to write (whole or not at all; an existing one only with --overwrite)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle folder")
    p.add_argument("--name", default=None, help="the model's name on its card (default: the run's config name)")
    p.add_argument(
        "--license", default=None, help="the licence of the head, set by whoever owns its training data and labels"
    )
    p.set_defaults(func=run_export)


def run_models(args):
    summaries = bundle.shipped_summaries()
    width = max(map(len, summaries), default=0)
    for name, summary in summaries.items():
        print(f"{name:{width}s}  {summary}")
    print("also: a run or bundle folder, or hf://OWNER/REPO[@REVISION] (a bundle tagger export wrote, on the Hub)")
    print("\nembedding models (what a cache holds; tagger.embedding.registry):")
    for name in registry.models():
        spec = registry.model(name)
        kinds = ", ".join(f"{k.name} {k.shape_text()} {k.dtype}" for k in spec.kinds)
        weights = f"weights: {', '.join(spec.weights)}" if spec.weights else "no weights"
        print(f"  {name}: {kinds}; {spec.sample_rate} Hz; {weights}{_found(spec)}; licence: {spec.licence}")
    return options.EXIT_OK


def _found(spec):
    """Where a model's default weights are, or that they are not there (checked on disk; nothing is read)."""
    if not spec.weights_reader:
        return ""
    try:
        source, form = registry.weights_reader(spec.name).check_source(None)
    except DataError:
        return " (not found here)"
    return f" (found: {source})" if form != "hub" else f" (from {source} on first use)"


def run_export(args):
    startup.backend(args)  # the head is loaded (and saved without its optimizer): Keras, start-up lines hidden
    card = bundle.export_run(args.run, args.out, name=args.name, license=args.license, overwrite=args.overwrite)
    print(f"exported {args.run} -> {args.out}: {card['summary']}")
    print(f"share it: hf upload OWNER/REPO {args.out}; use it: tagger tag CLIPS --model hf://OWNER/REPO")
    return options.EXIT_OK
