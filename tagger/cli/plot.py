"""``tagger plot taggram X.npz`` and ``tagger plot run RUN``: PNG pictures of a clip's tags over time and of a training run."""

from ..tagging import plots
from . import options

__all__ = ["add_parser", "run"]


def add_parser(sub):
    p = sub.add_parser("plot", help="PNG pictures: a clip's taggram (tagger tag --taggram) or a run's training history")
    kinds = p.add_subparsers(dest="what", required=True)
    t = kinds.add_parser("taggram", help="top tags over time of one clip, from the .npz tagger tag --taggram wrote")
    t.add_argument("target", metavar="X.npz")
    t.add_argument("--top", type=options.positive_int, default=10, help="tags shown (default 10)")
    t.add_argument("--out", default=None, help="the PNG (default X.png)")
    r = kinds.add_parser("run", help="loss and validation score per epoch, learning rate, the best epoch marked")
    r.add_argument("target", metavar="RUN")
    r.add_argument("--out", default=None, help="the PNG (default RUN/history.png)")
    p.set_defaults(func=run)


def run(args):
    if args.what == "taggram":
        out = args.out or args.target.removesuffix(".npz") + ".png"
        plots.plot_taggram(args.target, out, top=args.top)
    else:
        out = args.out or f"{args.target.rstrip('/')}/history.png"
        plots.plot_run(args.target, out)
    print(f"wrote {out}")
    return options.EXIT_OK
