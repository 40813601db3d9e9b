"""Simulated psana-layout runs, from mpireduce's SFX simulator.

The run has an area detector ``jungfrau`` whose segments are the simulator's panels
(raw ADU = pedestal + photons / gain, so ``calib`` recovers photons and differs from
``raw``), present in most but not all events, plus a scalar (EPICS-like) detector
``ebeam_energy`` (photon energy in eV), also missing in a few events.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import numpy as np

from ..simulate import SimulationConfig, make_detector_layout, simulate_frame
from ..simulate.detector import GAP_PX, DetectorLayout
from ..simulate.runfile import HC_EV_A, psana_timestamps
from .layout import PathLike
from .writer import RunWriter

CONSTANTS_STREAM = 0xCA11B  #: rng stream tag of the per-run pedestals and gains
PEDESTAL_ADU, PEDESTAL_SPREAD = 1000.0, 40.0
ADU_PER_PHOTON, ADU_PER_PHOTON_SPREAD = 10.0, 0.5
READ_NOISE_ADU = 2.0


def segment_origins(layout: DetectorLayout) -> List[Tuple[int, int]]:
    """(ss, fs) of the first pixel of every panel of the simulated frame, row-major."""
    origins = []
    margins = [
        (n_px - n * size - (n - 1) * GAP_PX) // 2
        for n_px, n, size in zip(layout.shape, layout.panel_grid, layout.panel_shape)
    ]
    for i in range(layout.panel_grid[0]):
        for j in range(layout.panel_grid[1]):
            origins.append((margins[0] + i * (layout.panel_shape[0] + GAP_PX),
                            margins[1] + j * (layout.panel_shape[1] + GAP_PX)))
    return origins


def split_segments(frame: np.ndarray, origins, panel_shape) -> np.ndarray:
    """Cut a full frame into its (segments, ss, fs) stack."""
    ss, fs = panel_shape
    return np.stack([frame[s0 : s0 + ss, f0 : f0 + fs] for s0, f0 in origins])


def write_psana_run(
    folder: PathLike,
    exp: str = "xpptut15",
    runnum: int = 14,
    n_events: int = 40,
    detector: str = "132x132",
    hit_fraction: float = 0.3,
    missing_fraction: float = 0.15,
    n_steps: int = 1,
    seed: int = 0,
    compression: str = "bitshuffle-lz4",
) -> Path:
    """Write ``{folder}/{exp}-r{runnum:04d}.h5`` and return its path.

    ``detector`` is the simulator's frame size (``132x132`` gives 4 segments of 64x64);
    a fraction ``missing_fraction`` of events lacks ``jungfrau`` (and half as many lack
    ``ebeam_energy``); events are split into ``n_steps`` equal scan steps.
    """
    config = SimulationConfig(n_frames=n_events, hit_fraction=hit_fraction, detector=detector, seed=seed).validate()
    layout = make_detector_layout(config)
    origins = segment_origins(layout)
    pedestals, gain = _constants(seed, (len(origins), *layout.panel_shape))
    mask = split_segments(layout.mask, origins, layout.panel_shape)
    writer = RunWriter(folder, exp, runnum, compression=compression, dettypes={"jungfrau": "jungfrau"})
    rng = np.random.default_rng([seed, runnum, 0xE7E7])
    timestamps = psana_timestamps(seed + 1000 * runnum, n_events)
    for i in range(n_events):
        frame, _, _ = simulate_frame(config, i, layout)
        raw = _to_adu(split_segments(frame, origins, layout.panel_shape), pedestals, gain, rng)
        energy = HC_EV_A / config.wavelength_A + rng.normal(0.0, 5.0)
        values = {
            "jungfrau": None if rng.random() < missing_fraction else raw,
            "ebeam_energy": None if rng.random() < missing_fraction / 2 else energy,
        }
        writer.add_event(int(timestamps[i]), values, step=i * n_steps // n_events)
    writer.set_constants("jungfrau", pedestals=pedestals, gain=gain, mask=mask)
    writer.set_geometry("jungfrau", origins, layout.shape)
    return writer.close()


def _constants(seed: int, shape) -> Tuple[np.ndarray, np.ndarray]:
    """Per-pixel pedestals (ADU) and gains (photons per ADU) of the run."""
    rng = np.random.default_rng([seed, CONSTANTS_STREAM])
    pedestals = rng.normal(PEDESTAL_ADU, PEDESTAL_SPREAD, size=shape).astype(np.float32)
    adu_per_photon = rng.normal(ADU_PER_PHOTON, ADU_PER_PHOTON_SPREAD, size=shape)
    return pedestals, (1.0 / adu_per_photon).astype(np.float32)


def _to_adu(photons: np.ndarray, pedestals: np.ndarray, gain: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Raw uint16 ADU readings of photon counts (with read noise, saturating)."""
    adu = pedestals + photons / gain + rng.normal(0.0, READ_NOISE_ADU, size=photons.shape)
    return np.clip(np.rint(adu), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def simulate_run(folder: PathLike, exp: str = "xpptut15", runnum: int = 14, **options) -> Path:
    """Alias of :func:`write_psana_run` (the name the package exports)."""
    return write_psana_run(folder, exp, runnum, **options)


__all__ = ["simulate_run", "write_psana_run", "segment_origins", "split_segments"]
