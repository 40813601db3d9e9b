"""``mpireduce convert``: a psana2 (xtc2) run to the HDF5 layout of :mod:`mpireduce.psana.layout`.

Needs the real psana (LCLS-II, ``pip install psana==4.3.4``), imported only when the
command runs. Area detectors (``det.raw.raw`` gives an array of 2+ dimensions) are stored
raw, with pedestals/gain/mask when ``--calib`` loads them; EPICS variables
and scan variables (``run.epicsinfo``, ``run.scaninfo``) with numeric values become scalar
detectors. Other detector kinds (waveforms...) are
skipped with a log line. Geometry is not converted (images stack segments along ss).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

from ..errors import InputError
from .install import real_psana_available
from .writer import RunWriter

LOG = logging.getLogger("mpireduce.psana.convert")
INSTALL_HINT = ("apt-get install -y libkrb5-dev; pip install --no-deps psana==4.3.4 && "
                "pip install amityping pyzmq requests pymongo kafka-python psutil prometheus-client "
                "lcls-krtc matplotlib scipy mpi4py")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``mpireduce convert``."""
    parser.add_argument("files", nargs="*", help="xtc2 files of one run (or use --exp/--run/--dir)")
    parser.add_argument("-o", "--output-dir", required=True, help="folder for {exp}-r{run:04d}.h5")
    parser.add_argument("--exp", help="experiment name (default: the run's own)")
    parser.add_argument("--run", type=int, help="run number (with --exp and --dir)")
    parser.add_argument("--dir", help="xtc2 folder of the experiment (with --exp and --run)")
    parser.add_argument("--max-events", type=int, default=0, help="stop after N events (0 = all)")
    parser.add_argument("--detectors", help="comma-separated detector names to keep (default: all)")
    parser.add_argument("--calib", action="store_true", help="load and store calibration constants")


def import_real_psana():
    """The real psana module, or InputError saying how to install it."""
    if not real_psana_available():
        raise InputError(f"`mpireduce convert` reads xtc2 with the real psana, which is not importable "
                         f"in {sys.executable}: install it ({INSTALL_HINT})")
    shim = sys.modules.get("psana")
    if shim is not None and getattr(shim, "__name__", "") == "mpireduce.psana":
        del sys.modules["psana"]
    return importlib.import_module("psana")


def open_source(psana, args: argparse.Namespace):
    """The psana2 DataSource the arguments name."""
    options = {"max_events": args.max_events}
    if not args.calib:
        options["skip_calib_load"] = "all"
    if args.files:
        missing = [f for f in args.files if not Path(f).is_file()]
        if missing:
            raise InputError(f"xtc2 file {missing[0]} does not exist")
        return psana.DataSource(files=args.files if len(args.files) > 1 else args.files[0], **options)
    if not (args.exp and args.run is not None):
        raise InputError("give xtc2 files, or --exp, --run (and --dir) of the run to convert")
    if args.dir:
        options["dir"] = args.dir
    return psana.DataSource(exp=args.exp, run=args.run, **options)


def select_detectors(run, wanted: List[str]) -> Tuple[Dict[str, object], Dict[str, object]]:
    """(area detectors, EPICS and scan-variable detectors) of a run, by name."""
    area, epics = {}, {}
    for (name, interface), methods in sorted(run.detinfo.items()):
        if interface == "raw" and "raw" in methods and (not wanted or name in wanted):
            area[name] = run.Detector(name)
    scalars = {**(getattr(run, "epicsinfo", None) or {}), **(getattr(run, "scaninfo", None) or {})}
    for alias, _ in sorted(scalars):
        if not wanted or alias in wanted:
            epics[alias] = run.Detector(alias)
    return area, epics


def _area_value(name: str, det, evt, skipped: set):
    """Raw data of an area detector in ``evt`` (None when absent or not an image)."""
    value = det.raw.raw(evt)
    if value is None:
        return None
    value = np.asarray(value)
    if value.ndim < 2:
        if name not in skipped:
            LOG.info("skipping detector %s: raw data has %d dimension(s), not an image", name, value.ndim)
            skipped.add(name)
        return None
    return value


def _epics_value(det, evt):
    """An EPICS variable as float in ``evt`` (None when absent or not numeric)."""
    value = det(evt)
    try:
        return None if value is None else float(np.asarray(value).reshape(-1)[0])
    except (TypeError, ValueError, IndexError):
        return None


def convert_run(run, args: argparse.Namespace) -> Path:
    """Write one psana2 run; returns the output path."""
    wanted = [n.strip() for n in (args.detectors or "").split(",") if n.strip()]
    area, epics = select_detectors(run, wanted)
    writer = RunWriter(args.output_dir, args.exp or run.expt, run.runnum,
                       dettypes={n: getattr(d, "_dettype", n) for n, d in area.items()})
    skipped: set = set()
    for evt in run.events():
        values = {name: _area_value(name, det, evt, skipped) for name, det in area.items()}
        values.update({name: _epics_value(det, evt) for name, det in epics.items()})
        writer.add_event(int(evt.timestamp), values)
    if args.calib:
        for name, det in area.items():
            _store_constants(writer, name, det)
    return writer.close()


def _store_constants(writer: RunWriter, name: str, det) -> None:
    """Pedestals, gain and mask of an area detector, where psana has them."""
    constants = {}
    for key, method in (("pedestals", "_pedestals"), ("gain", "_gain"), ("mask", "_mask")):
        try:
            constants[key] = getattr(det.raw, method)()
        except Exception as exc:  # psana raises many kinds when constants are absent
            LOG.info("%s: no %s (%s)", name, key, exc)
    if any(v is not None for v in constants.values()):
        writer.set_constants(name, **constants)


def main(args: argparse.Namespace) -> int:
    """Convert every run of the source; prints one line per written file."""
    psana = import_real_psana()
    ds = open_source(psana, args)
    for run in ds.runs():
        path = convert_run(run, args)
        print(f"wrote {path}")
    return 0
