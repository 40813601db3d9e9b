"""``mpireduce simulate OUT.h5``: write a simulated SFX (or ``--experiment spi|diffuse``) run and its truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import OutputError
from . import experiments
from .lattice import UNIT_CELLS
from .runfile import simulate_run, truth_path
from .sfx import COMPRESSIONS, KIND_NAMES, SimulationConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``mpireduce simulate`` (defaults are those of SimulationConfig)."""
    d = SimulationConfig()
    add = parser.add_argument
    add("output", metavar="OUT.h5", help="run file to write; the truth goes to OUT.truth.h5")
    add("--frames", type=int, default=d.n_frames, metavar="N", help="number of frames (default %(default)s)")
    add(
        "--hit-fraction",
        type=float,
        default=d.hit_fraction,
        metavar="F",
        help="fraction of frames with a crystal (default %(default)s)",
    )
    add(
        "--weak-fraction",
        type=float,
        default=d.weak_fraction,
        metavar="F",
        help="fraction of the crystal frames that are weak, 6-15 visible spots (default %(default)s)",
    )
    add(
        "--multi-fraction",
        type=float,
        default=d.multi_fraction,
        metavar="F",
        help="fraction of the crystal frames with 2-3 lattices (default %(default)s)",
    )
    add(
        "--artefact-fraction",
        type=float,
        default=d.artefact_fraction,
        metavar="F",
        help="fraction of the misses with a non-crystal artefact: ice/salt ring, jet streak, cosmic ray "
        "or parasitic scatter, named in the truth's /artefact (default %(default)s)",
    )
    add("--detector", default=d.detector, help="1M, 4M or SSxFS such as 256x256 (default %(default)s)")
    add("--seed", type=int, default=d.seed, help="random seed (default %(default)s)")
    add("--wavelength", type=float, default=d.wavelength_A, help="Angstrom (default %(default)s)")
    add("--distance", type=float, default=d.distance_m, metavar="M", help="metres (default %(default)s)")
    add(
        "--pixel-size",
        type=float,
        metavar="M",
        help="metres (default 75e-6; frames under 1024 px get binned pixels that cover the same angles)",
    )
    add("--beam-center", type=float, nargs=2, metavar=("FS", "SS"), help="pixels (default: near the centre)")
    add(
        "--background",
        type=float,
        default=d.background,
        metavar="X",
        help="scale of the air scatter and water ring (default %(default)s)",
    )
    add("--spot-sigma", type=float, default=d.spot_sigma_px, metavar="PX", help="rms spot size (%(default)s)")
    add("--crystal", choices=sorted(UNIT_CELLS), default=d.crystal, help="unit cell (default %(default)s)")
    add("--compression", choices=COMPRESSIONS, default=d.compression, help="(default %(default)s)")
    add("--dtype", choices=("uint16", "int32"), default=d.dtype, help="stored pixel type (default %(default)s)")
    add("--overwrite", action="store_true", help="replace OUT.h5 and its truth file if they exist")
    experiments.add_arguments(add)


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    """The validated SimulationConfig the command-line options describe."""
    beam_fs, beam_ss = args.beam_center if args.beam_center else (None, None)
    return SimulationConfig(
        n_frames=args.frames,
        hit_fraction=args.hit_fraction,
        weak_fraction=args.weak_fraction,
        multi_fraction=args.multi_fraction,
        artefact_fraction=args.artefact_fraction,
        detector=args.detector,
        pixel_size_m=args.pixel_size,
        distance_m=args.distance,
        wavelength_A=args.wavelength,
        beam_center_fs=beam_fs,
        beam_center_ss=beam_ss,
        background=args.background,
        spot_sigma_px=args.spot_sigma,
        crystal=args.crystal,
        seed=args.seed,
        compression=args.compression,
        dtype=args.dtype,
    ).validate()


def main(args: argparse.Namespace) -> int:
    """Run ``mpireduce simulate``; print a one-line summary."""
    config = config_from_args(args) if getattr(args, "experiment", "sfx") != "spi" else None
    output = Path(args.output)
    existing = [p for p in (output, truth_path(output)) if p.exists()]
    if existing and not args.overwrite:
        names = " and ".join(str(p) for p in existing)
        verb = "exists" if len(existing) == 1 else "exist"
        raise OutputError(f"{names} already {verb}; pass --overwrite to replace, or choose another OUT path")
    if not output.parent.is_dir():
        raise OutputError(f"folder {output.parent} does not exist; create it first")
    if getattr(args, "experiment", "sfx") != "sfx":
        print(experiments.simulate(args, config, output))
        return 0
    summary = simulate_run(output, config)
    counts = " ".join(f"{name}={summary['counts'][name]}" for name in KIND_NAMES)
    if config.artefact_fraction > 0:
        counts += " (artefacts: " + " ".join(f"{k}={v}" for k, v in summary["artefacts"].items()) + ")"
    print(
        f"wrote {output} ({config.n_frames} frames {config.detector}: {counts}) and {summary['truth_path']} "
        f"in {summary['seconds']:.1f} s, {summary['frames_per_s']:.1f} frames/s"
    )
    return 0
