"""The data-building command: one subcommand per family of packaged data files.

    python -m hneuron_utils.data.build triviaqa [--check]
    python -m hneuron_utils.data.build biomed [--check] [--shared DIR]
    python -m hneuron_utils.data.build medmc [--check] [--shared DIR]
    python -m hneuron_utils.data.build overcompliance [--check] [--shared DIR]

``--check`` rebuilds without writing and compares with the committed files byte for byte (exit status 1 on a
difference); ``medmc`` reads the committed biomedical stand-in, so build ``biomed`` first.
"""

from __future__ import annotations

import argparse

from hneuron_utils.data.build import biomed, medmc, overcompliance, triviaqa

BUILDERS = {"triviaqa": triviaqa, "biomed": biomed, "medmc": medmc, "overcompliance": overcompliance}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.data.build", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="builder", required=True, metavar="{" + ",".join(BUILDERS) + "}")
    for name, module in BUILDERS.items():
        doc = module.__doc__ or ""
        p = sub.add_parser(name, help=doc.split("\n")[0], description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return BUILDERS[args.builder].run(args)


if __name__ == "__main__":
    raise SystemExit(main())
