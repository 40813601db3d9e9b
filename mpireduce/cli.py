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
    "simulate": ("mpireduce.simulate.command", "write a simulated SFX, SPI or diffuse-scattering run (HDF5/CXI) with ground truth"),
    "train": ("mpireduce.classify.command", "train a classifier (hit/miss CNN, descriptor MLP, diffuse, SPI Siamese) on labelled runs"),
    "run": ("mpireduce.job", "reduce a run: detect, classify, gather and write (use under mpiexec)"),
    "inspect": ("mpireduce.inspect", "summarise a reduced output file"),
    "evaluate": ("mpireduce.evaluate", "confusion matrix and per-class scores of a classifier on a labelled run"),
    "convert": ("mpireduce.psana.convert", "convert a psana2 (xtc2) run to mpireduce's HDF5 run layout"),
}


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The top-level parser; only ``command``'s module is imported to add its arguments."""
    from . import __version__

    parser = argparse.ArgumentParser(prog="mpireduce", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mpireduce {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the ``mpireduce`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if a in SUBCOMMANDS), None)
    args = build_parser(command).parse_args(argv)
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
