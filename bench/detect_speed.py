"""Milliseconds per frame of the peakfinder8-mode detector on synthetic 1M/4M frames.

Usage: ``python bench/detect_speed.py [--sizes 1024 2048] [--frames 40] [--spots 50]
[--simulated]``. Runs on one thread (OMP/BLAS thread counts are pinned to 1 before numpy
loads). Frames: Poisson background with a radial fall-off plus Gaussian spots, or with
``--simulated`` hit frames of ``mpireduce.simulate`` (photon counts, panel gaps, beamstop).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402
from typing import List, Optional  # noqa: E402

import numpy as np  # noqa: E402

from mpireduce.backend import get_backend  # noqa: E402
from mpireduce.config import DetectConfig  # noqa: E402
from mpireduce.detect import make_detector  # noqa: E402
from mpireduce.geometry import DetectorGeometry  # noqa: E402


def synthetic_frames(size: int, count: int, spots: int, seed: int = 0):
    """A geometry and ``count`` int32 frames of ``size`` x ``size`` pixels."""
    rng = np.random.default_rng(seed)
    mask = np.ones((size, size), np.int8)
    mask[:, size // 2 - 2: size // 2 + 2] = 0  # a panel gap
    geometry = DetectorGeometry((size, size), size / 2 - 0.5, size / 2 + 0.5, mask)
    background = 20.0 + 200.0 * np.exp(-geometry.radius_px() / (0.3 * size))
    frames = []
    yy, xx = np.mgrid[-6:7, -6:7]
    for _ in range(count):
        expected = background.copy()
        for x, y, total in zip(rng.uniform(10, size - 10, spots), rng.uniform(10, size - 10, spots),
                               rng.uniform(1000, 20000, spots)):
            ix, iy = int(x), int(y)
            g = np.exp(-((xx + ix - x) ** 2 + (yy + iy - y) ** 2) / 2.0)
            expected[iy - 6: iy + 7, ix - 6: ix + 7] += total * g / g.sum()
        frames.append(rng.poisson(expected).astype(np.int32))
    return geometry, frames


def simulated_frames(size: int, count: int):
    """A geometry and ``count`` hit frames from the team's SFX simulator."""
    from mpireduce.simulate import SimulationConfig, make_detector_layout, simulate_frame

    config = SimulationConfig(hit_fraction=1.0, detector=f"{size}x{size}", seed=1).validate()
    layout = make_detector_layout(config)
    return layout.geometry(), [simulate_frame(config, i, layout)[0] for i in range(count)]


def time_detector(size: int, frames: int, spots: int, backend_name: str, simulated: bool) -> tuple:
    """(median ms per frame, fastest ms per frame, mean peaks per frame) for one size."""
    if simulated:  # photon counts: an ADC threshold of 2 photons keeps noise pairs out
        geometry, stack = simulated_frames(size, min(frames, 4))
        config = DetectConfig(backend=backend_name, adc_threshold=2.0)
    else:
        geometry, stack = synthetic_frames(size, min(frames, 4), spots)
        config = DetectConfig(backend=backend_name)
    detector = make_detector(config, geometry, get_backend(backend_name))
    detector.find(stack[0])  # warm-up
    times, found = [], []
    for i in range(frames):
        start = time.perf_counter()
        found.append(len(detector.find(stack[i % len(stack)])))
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times)), 1e3 * min(times), float(np.mean(found))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--spots", type=int, default=50)
    parser.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    parser.add_argument("--simulated", action="store_true", help="frames from mpireduce.simulate")
    args = parser.parse_args(argv)
    source = "simulated SFX hits" if args.simulated else f"{args.spots} synthetic spots"
    for size in args.sizes:
        median, fastest, peaks = time_detector(size, args.frames, args.spots, args.backend, args.simulated)
        print(f"{size}x{size} ({size * size / 1e6:.1f} Mpx), {args.backend}: {median:.1f} ms/frame "
              f"median, {fastest:.1f} fastest; {peaks:.1f} peaks/frame ({source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
