"""Peak detection side by side: our peakfinder8 and auto modes, and OM's peakfinder8.

Usage: ``python bench/detect.py [--frames 40] [--repeat 3] [--om-python /tmp/omvenv/bin/python]``

1. Simulated 1M and 4M runs with truth (hits, weak hits, multi-lattice hits and misses):
   precision/recall/F1 of matched peaks (``mpireduce.scoring``, 2 px) on the crystal frames,
   and peaks per miss frame, for our peakfinder8 mode, our auto mode, OM's peakfinder8 at
   the same parameters, and the best of a small grid of tuned peakfinder8 parameters.
2. The real frames in /work/shared/data/real: peak counts, and agreement (F1 of matching)
   between our peakfinder8 and OM's at the same parameters; auto-mode counts.
3. Speed on one core, same frames: frames/s of each detector and the ratios to OM.

OM runs in its own venv through ``bench/om_peer.py`` (GPL: never imported here). Without
that venv the OM columns are skipped; create it with
``python3 -m venv /tmp/omvenv && /tmp/omvenv/bin/pip install ondamonitor==23.8.3 numpy``.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from mpireduce.backend import get_backend  # noqa: E402
from mpireduce.config import DetectConfig  # noqa: E402
from mpireduce.detect import make_detector  # noqa: E402
from mpireduce.geometry import DetectorGeometry  # noqa: E402
from mpireduce.scoring import PeakScore, match_pairs, score_peaks  # noqa: E402
from mpireduce.simulate import SimulationConfig, make_detector_layout, simulate_frame  # noqa: E402

HERE = Path(__file__).resolve().parent
REAL = Path("/work/shared/data/real")
#: the team's job parameters for photon-counting simulated data
PF8 = DetectConfig(backend="numpy", adc_threshold=2.0, min_snr=5.0, min_pixel_count=2,
                   max_pixel_count=40, local_bg_radius=3)
AUTO = DetectConfig(backend="numpy", mode="auto")
GRID = [(adc, snr) for adc in (0.0, 2.0, 4.0, 8.0) for snr in (4.0, 5.0, 6.0, 8.0)]
SIMULATED = {  # name: simulation settings (seed, detector, physics differ between the two)
    "1M": dict(detector="1M", seed=21, background=1.0),
    "4M": dict(detector="4M", seed=22, background=2.0, distance_m=0.15, wavelength_A=1.3),
}
REAL_PARAMS = {"lcls_rayonix_kapton_hit": 50.0, "dls_i03_pilatus6m_rotation": 20.0,
               "simtbx_nanobragg_sim": 20.0}  # adc_threshold; min_snr 5 everywhere


class OMPeer:
    """OM's peakfinder8 in a subprocess of its own venv (frames pass as .npy files)."""

    def __init__(self, python: str) -> None:
        self.python = python
        self.available = Path(python).exists()

    def run(self, frames, geometry: DetectorGeometry, config: DetectConfig, repeat: int = 1) -> list:
        """Per frame: dict with fs, ss (numpy arrays) and seconds (fastest of ``repeat``)."""
        params = {k: getattr(config, k) for k in ("max_num_peaks", "adc_threshold", "min_snr",
                                                  "min_pixel_count", "max_pixel_count", "local_bg_radius")}
        with tempfile.TemporaryDirectory() as tmp:
            names = []
            for i, frame in enumerate(frames):
                names.append(f"{tmp}/frame{i}.npy")
                np.save(names[-1], np.asarray(frame, np.float32))
            np.save(f"{tmp}/mask.npy", geometry.mask.astype(np.int8))
            np.save(f"{tmp}/radius.npy", geometry.radius_px())
            job = {"frames": names, "mask": f"{tmp}/mask.npy", "radius": f"{tmp}/radius.npy",
                   "params": params, "repeat": repeat}
            Path(f"{tmp}/job.json").write_text(json.dumps(job))
            env = dict(os.environ, OMP_NUM_THREADS="1")
            out = subprocess.run([self.python, str(HERE / "om_peer.py"), f"{tmp}/job.json"],
                                 capture_output=True, text=True, check=True, env=env)
        answers = json.loads(out.stdout)
        return [{"fs": np.array(a["fs"]), "ss": np.array(a["ss"]), "seconds": a["seconds"]} for a in answers]


def run_ours(detector, frames, repeat: int = 1) -> list:
    """Per frame: dict with fs, ss and seconds (fastest of ``repeat``)."""
    detector.find(frames[0])  # warm-up
    results = []
    for frame in frames:
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            table = detector.find(frame)
            best = min(best, time.perf_counter() - start)
        results.append({"fs": table.fs, "ss": table.ss, "seconds": best})
    return results


def score(results: list, truth: list) -> tuple:
    """(PeakScore over crystal frames, mean peaks per miss frame)."""
    total, miss_peaks, misses = PeakScore(), 0, 0
    for found, (kind, spots) in zip(results, truth):
        if kind == 0:
            miss_peaks, misses = miss_peaks + len(found["fs"]), misses + 1
            continue
        total += score_peaks(found["fs"], found["ss"], spots["fs"], spots["ss"], spots["visible"])
    return total, miss_peaks / max(misses, 1)


def simulated_set(name: str, frames: int):
    """(geometry, frames, truth [(kind, spots)]) of a simulated run: 70% crystal frames."""
    config = SimulationConfig(n_frames=frames, hit_fraction=0.7, weak_fraction=0.3,
                              **SIMULATED[name]).validate()
    layout = make_detector_layout(config)
    rendered = [simulate_frame(config, i, layout) for i in range(frames)]
    return layout.geometry(), [r[0] for r in rendered], [(r[1], r[2]) for r in rendered]


def line(label: str, result: tuple) -> str:
    s, per_miss = result
    return (f"  {label:<34} P={s.precision:.3f} R={s.recall:.3f} F1={s.f1:.3f} "
            f"(found {s.found}, visible {s.visible}); {per_miss:.2f} peaks/miss frame")


def section_simulated(sets: dict, om: OMPeer) -> None:
    print("== 1. simulated frames with truth (crystal frames scored; 2 px matching)")
    print(f"   peakfinder8 parameters: adc_threshold={PF8.adc_threshold} min_snr={PF8.min_snr} "
          f"pixels {PF8.min_pixel_count}-{PF8.max_pixel_count} local_bg_radius={PF8.local_bg_radius}")
    backend = get_backend("numpy")
    for name, (geometry, frames, truth) in sets.items():
        kinds = np.bincount([k for k, _ in truth], minlength=4)
        print(f"-- {name} {geometry.shape} {SIMULATED[name]}: {len(frames)} frames "
              f"(miss {kinds[0]}, hit {kinds[1]}, weak {kinds[2]}, multi {kinds[3]})")
        ours = score(run_ours(make_detector(PF8, geometry, backend), frames), truth)
        print(line("ours peakfinder8", ours))
        print(line("ours auto (no parameters)", score(run_ours(make_detector(AUTO, geometry, backend), frames), truth)))
        if om.available:
            print(line("OM peakfinder8 (same parameters)", score(om.run(frames, geometry, PF8), truth)))
        best = max(((adc, snr, score(run_ours(make_detector(dataclasses.replace(
            PF8, adc_threshold=adc, min_snr=snr), geometry, backend), frames), truth)) for adc, snr in GRID),
            key=lambda item: item[2][0].f1)
        print(line(f"best tuned pf8 (adc {best[0]:g}, snr {best[1]:g})", best[2]))


def read_real(path: Path):
    """(geometry, frame) of a real frame file."""
    import h5py

    with h5py.File(path, "r") as handle:
        frame = handle["/entry_1/data_1/data"][0]
        mask = handle["/entry_1/data_1/mask"][()].astype(np.int8)
        det = handle["/entry_1/instrument_1/detector_1"]
        centre = float(det["beam_center_fs_px"][()]), float(det["beam_center_ss_px"][()])
    return DetectorGeometry(frame.shape, centre[0], centre[1], mask), frame


def agreement(a: dict, b: dict) -> float:
    """F1 of one-to-one matching (2 px) between two peak lists."""
    pairs = len(match_pairs(np.c_[a["fs"], a["ss"]], np.c_[b["fs"], b["ss"]], 2.0))
    return 2.0 * pairs / max(len(a["fs"]) + len(b["fs"]), 1)


def section_real(om: OMPeer) -> None:
    print("== 2. real frames (/work/shared/data/real): peak counts; F1 = agreement ours vs OM")
    backend = get_backend("numpy")
    for stem, adc in REAL_PARAMS.items():
        geometry, frame = read_real(REAL / f"{stem}.h5")
        config = dataclasses.replace(PF8, adc_threshold=adc, max_pixel_count=40)
        ours = run_ours(make_detector(config, geometry, backend), [frame])[0]
        auto = run_ours(make_detector(AUTO, geometry, backend), [frame])[0]
        text = f"  {stem} {frame.shape} adc {adc:g} snr {config.min_snr:g}: ours pf8 {len(ours['fs'])}"
        if om.available:
            theirs = om.run([frame], geometry, config)[0]
            text += f", OM pf8 {len(theirs['fs'])}, agreement F1 {agreement(ours, theirs):.3f}"
        print(text + f"; auto {len(auto['fs'])}")


def section_speed(sets: dict, om: OMPeer, frames: int, repeat: int) -> None:
    print(f"== 3. speed, one core, same simulated frames ({frames} per size, fastest of {repeat} "
          "runs each, median over frames)")
    backend = get_backend("numpy")
    for name, (geometry, stack, _) in sets.items():
        stack = stack[:frames]
        rate = {}
        for label, config in (("ours pf8", PF8), ("ours auto", AUTO)):
            times = [r["seconds"] for r in run_ours(make_detector(config, geometry, backend), stack, repeat)]
            rate[label] = 1.0 / float(np.median(times))
        if om.available:
            rate["OM pf8"] = 1.0 / float(np.median([r["seconds"] for r in om.run(stack, geometry, PF8, repeat)]))
        text = ", ".join(f"{k} {v:.1f} frames/s ({1e3 / v:.1f} ms)" for k, v in rate.items())
        print(f"  {name} ({geometry.shape[0] * geometry.shape[1] / 1e6:.1f} Mpx): {text}")
        if om.available:
            print(f"     ratio ours pf8 / OM = {rate['ours pf8'] / rate['OM pf8']:.2f}x, "
                  f"ours auto / OM = {rate['ours auto'] / rate['OM pf8']:.2f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40, help="simulated frames per size")
    parser.add_argument("--speed-frames", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="timing runs per frame")
    parser.add_argument("--om-python", default="/tmp/omvenv/bin/python")
    args = parser.parse_args(argv)
    om = OMPeer(args.om_python)
    if not om.available:
        print(f"OM columns skipped: {args.om_python} not found. Create it with: python3 -m venv "
              "/tmp/omvenv && /tmp/omvenv/bin/pip install ondamonitor==23.8.3 numpy")
    sets = {name: simulated_set(name, args.frames) for name in SIMULATED}
    section_simulated(sets, om)
    section_real(om)
    section_speed(sets, om, args.speed_frames, args.repeat)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
