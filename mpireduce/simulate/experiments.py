"""``mpireduce simulate --experiment spi|diffuse``: the runs the seed classifiers are trained on.

* ``spi`` (:mod:`.spi`): coherent diffraction of 30-100 nm particles of several shapes in
  random orientations; ``no_hit``, ``single``, ``multi`` (2-3 touching particles) and
  ``unintended`` (droplets, rods, aggregates); photon noise, beamstop and detector gap.
* ``diffuse`` (:mod:`.diffuse`): SFX crystal hits, a ``--diffuse-fraction`` of them with
  diffuse halos/streaks between the Bragg spots.

Both write a CXI run and a ``NAME.truth.h5`` sidecar with the labels.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..errors import ConfigError
from .particles import SHAPES

EXPERIMENTS = ("sfx", "spi", "diffuse")


def add_arguments(add) -> None:
    """The options only SPI or diffuse runs use (``add`` is the parser's add_argument)."""
    add("--experiment", choices=EXPERIMENTS, default="sfx",
        help="sfx: crystal hits and misses; spi: single-particle imaging with four classes; "
             "diffuse: crystal hits with and without diffuse scattering (default %(default)s)")
    add("--shapes", metavar="A,B", help=f"spi: particle shapes, comma-separated, from {','.join(sorted(SHAPES))} "
                                        "(default: all)")
    add("--kind-weights", type=float, nargs=4, metavar=("NO_HIT", "SINGLE", "MULTI", "UNINTENDED"),
        help="spi: relative frequency of the four classes (default 0.4 0.3 0.15 0.15)")
    add("--diffuse-fraction", type=float, default=0.5, metavar="F",
        help="diffuse: fraction of frames with diffuse scattering (default %(default)s)")


def spi_config(args: argparse.Namespace):
    """The validated :class:`~.spi.SpiConfig` of the command-line options.

    ``--detector`` is the side of the square detector in (binned) pixels, ``128`` or
    ``128x128``; SFX's default (1M) means the SPI default (128).
    """
    from .sfx import SimulationConfig
    from .spi import SpiConfig

    changes = {"n_frames": args.frames, "seed": args.seed, "compression": args.compression}
    if args.detector != SimulationConfig().detector:
        changes["detector_px"] = _square_side(args.detector)
    if args.shapes:
        changes["shapes"] = tuple(s.strip() for s in args.shapes.split(",") if s.strip())
    if args.kind_weights:
        changes["kind_weights"] = tuple(args.kind_weights)
    if args.wavelength != SimulationConfig().wavelength_A:
        changes["wavelength_A"] = args.wavelength
    return dataclasses.replace(SpiConfig(), **changes).validate()


def _square_side(text: str) -> int:
    parts = text.lower().split("x")
    try:
        sides = {int(p) for p in parts}
    except ValueError:
        sides = set()
    if len(sides) != 1 or len(parts) > 2:
        raise ConfigError(f"--detector {text!r}: an SPI detector is square, give its side such as 128 or 128x128")
    return sides.pop()


def simulate(args: argparse.Namespace, sfx_config, output: Path) -> str:
    """Write the ``--experiment`` run to ``output``; the one-line summary to print."""
    if args.experiment == "spi":
        from .spi import SPI_KIND_NAMES, simulate_spi_run

        config = spi_config(args)
        summary = simulate_spi_run(output, config)
        names = SPI_KIND_NAMES
        size = f"{config.detector_px}x{config.detector_px}"
    else:
        from .diffuse import DIFFUSE_KIND_NAMES, simulate_diffuse_run

        if not 0.0 <= args.diffuse_fraction <= 1.0:
            raise ConfigError(f"--diffuse-fraction {args.diffuse_fraction} must be between 0 and 1")
        summary = simulate_diffuse_run(output, sfx_config, diffuse_fraction=args.diffuse_fraction)
        names, size = DIFFUSE_KIND_NAMES, sfx_config.detector
    counts = " ".join(f"{name}={summary['counts'].get(name, 0)}" for name in names)
    return (f"wrote {output} ({args.experiment}, {args.frames} frames {size}: {counts}) and {summary['truth_path']} "
            f"in {summary['seconds']:.1f} s, {summary['frames_per_s']:.1f} frames/s")
