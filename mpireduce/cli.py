"""The ``mpireduce`` command: one launcher, subcommands imported lazily.

Each subcommand module exposes ``add_arguments(parser)`` and ``main(args) -> int``.
Errors mpireduce raises on purpose print as one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

from .errors import MpiReduceError

SUBCOMMANDS = {
    "simulate": ("mpireduce.simulate.command", "write a simulated SFX run (HDF5/CXI) with ground truth"),
    "train": ("mpireduce.classify.command", "train a CNN hit/miss classifier on a simulated run"),
    "run": ("mpireduce.job", "reduce a run: detect, classify, gather and write (use under mpiexec)"),
    "inspect": ("mpireduce.inspect", "summarise a reduced output file"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per subcommand."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="mpireduce", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mpireduce {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``mpireduce`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except MpiReduceError as exc:
        print(f"mpireduce {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
