"""Pages made from the code at build time (mkdocs-gen-files): the CLI reference from the argument parser and the
models page from the shipped heads' model cards, so neither can go stale."""

import argparse
import os
import pathlib
import re
import sys

import mkdocs_gen_files

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["COLUMNS"] = "80"  # argparse wraps help at the terminal's width: one width for every build (the page's)


def _commands(parser, prefix):
    """(name, parser) of a parser and of each of its subcommands, depth first, in the order they were added."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, f"{prefix} {name}")


def cli_page():
    from tagger.cli import build_parser

    out = [
        "# Command-line reference",
        "",
        "Every `tagger` command's `--help`, generated from `tagger.cli.build_parser()` when the site is built.",
        "",
    ]
    for name, parser in _commands(build_parser(), "tagger"):
        out += [f"## `{name}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    return "\n".join(out)


def models_page():
    from tagger.training import bundle

    out = [
        "# Shipped models",
        "",
        "Generated from each shipped head's model card (`tagger/models/<name>/MODEL.md`) when the site is built;",
        "`tagger models` prints the same summaries.",
        "",
        "| model | summary |",
        "| --- | --- |",
    ]
    for name, summary in bundle.shipped_summaries().items():
        out.append(f"| [`{name}`](#{name}) | {summary} |")
    out.append("")
    for name in bundle.shipped():
        card = (ROOT / "tagger" / "models" / name / "MODEL.md").read_text()
        card = re.sub(r"\A---\n.*?\n---\n", "", card, flags=re.S).strip()  # the Hub's YAML header
        card = re.sub(r"^# .*$", f"## {name}", card, count=1, flags=re.M)
        out += [card, ""]
    return "\n".join(out)


with mkdocs_gen_files.open("reference/cli.md", "w") as f:
    f.write(cli_page())
with mkdocs_gen_files.open("reference/models.md", "w") as f:
    f.write(models_page())
