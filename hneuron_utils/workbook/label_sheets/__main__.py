"""The reference-label sheet command: one subcommand per sheet, each with the options of its module.

    python -m hneuron_utils.workbook.label_sheets <nonexist|overcompliance|monitor|finetune|introspection> --help
"""

from __future__ import annotations

import argparse

from hneuron_utils.workbook.label_sheets import finetune, introspection, monitor, nonexist, overcompliance

SHEETS = {"nonexist": nonexist, "overcompliance": overcompliance, "monitor": monitor, "finetune": finetune,
          "introspection": introspection}


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m hneuron_utils.workbook.label_sheets",
                                 description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="sheet", required=True, metavar="{" + ",".join(SHEETS) + "}")
    for name, module in SHEETS.items():
        doc = module.__doc__ or ""
        p = sub.add_parser(name, help=doc.split("\n")[0], description=doc,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return SHEETS[args.sheet].run(args)


if __name__ == "__main__":
    raise SystemExit(main())
