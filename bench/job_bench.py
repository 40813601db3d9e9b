"""Whole-job benchmark: frames/s per rank, detection alone, overhead, and 2-rank speed-up.

Peers, all measured in this one run on the same frames:
  * detection alone: the job's own detector called in a loop on frames already in memory,
    one thread (the yardstick for the job's overhead: I/O + classify + gather + write);
  * the job on 1 rank vs the job on 2 ranks (speed-up).

Usage: python bench/job_bench.py [--frames 160] [--detector 1M] [--model demo/hitfinder.pt]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", OMP_NUM_THREADS="1")


def mpireduce(*args, np_ranks=None):
    cmd = [sys.executable, "-m", "mpireduce", *map(str, args)]
    if np_ranks:
        cmd = [str(Path(sys.executable).parent / "mpiexec"), "-n", str(np_ranks), *cmd]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}")
    return time.perf_counter() - t0


def prepare(frames: int, detector: str, model: str | None) -> tuple:
    OUT.mkdir(parents=True, exist_ok=True)
    run = OUT / f"run_{detector}_{frames}.h5"
    if not run.exists():
        mpireduce("simulate", run, "--frames", frames, "--hit-fraction", 0.05, "--detector", detector, "--seed", 303)
    if model is None:
        model = OUT / f"hitfinder_{detector}.pt"
        if not model.exists():
            train = OUT / f"train_{detector}.h5"
            if not train.exists():
                mpireduce("simulate", train, "--frames", 200, "--hit-fraction", 0.4, "--detector", detector,
                          "--seed", 404)
            mpireduce("train", train, "-o", model, "--labels", "truth")
    return run, Path(model).resolve()


def write_job(run: Path, model: Path, out: Path, mode: str, prefetch: bool) -> Path:
    job = yaml.safe_load((ROOT / "jobs" / "demo.yaml").read_text())
    job["detect"]["mode"] = mode
    job.setdefault("run", {})["prefetch"] = prefetch
    job["source"]["files"] = [str(run)]
    job["classify"]["model"] = str(model)
    job["detect"]["backend"] = "numpy"
    job["output"]["path"] = str(out)
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(job))
    return path


def detection_alone(job: Path) -> float:
    """Frames/s of the detector alone, one thread, frames already in memory."""
    from mpireduce.backend import get_backend
    from mpireduce.config import load_config
    from mpireduce.detect import make_detector
    from mpireduce.instrument import load_geometry
    from mpireduce.sources import open_source

    config = load_config(job)
    index = open_source(config)
    geometry = load_geometry(config, index)
    detector = make_detector(config.detect, geometry, get_backend("numpy"))
    with h5py.File(index.files[0].path, "r") as f:
        frames = f[index.dataset][: min(index.n_events, 80)]
    detector.find(frames[0])
    t0 = time.perf_counter()
    for frame in frames:
        detector.find(frame)
    return len(frames) / (time.perf_counter() - t0)


def job_stats(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        stats = dict(f["mpireduce/statistics"].attrs)
        stats["per_rank"] = json.loads(f["mpireduce/statistics/per_rank"][()])
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=160)
    parser.add_argument("--detector", default="1M")
    parser.add_argument("--mode", default="peakfinder8", choices=("peakfinder8", "auto"), help="detect.mode")
    parser.add_argument("--no-prefetch", action="store_true", help="run.prefetch: false (no read-ahead thread)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved repeats; best of each is reported")
    parser.add_argument("--model", default=None, help="model file (default: train one for the bench)")
    args = parser.parse_args()
    run, model = prepare(args.frames, args.detector, args.model)
    results, detect_fps = {}, 0.0
    for _ in range(args.repeat):  # interleaved repeats, best of each: the machine is shared and noisy
        for n in (1, 2):
            out = OUT / f"reduced_np{n}.cxi"
            job = write_job(run, model, out, args.mode, not args.no_prefetch)
            wall = mpireduce("run", job, "--overwrite", np_ranks=n)
            stats = job_stats(out)
            if n not in results or stats["frames_per_second"] > results[n][0]["frames_per_second"]:
                results[n] = (stats, wall)
        detect_fps = max(detect_fps, detection_alone(OUT / "reduced_np1.yaml"))
    s1, wall1 = results[1]
    s2, wall2 = results[2]
    r1 = s1["per_rank"][0]
    in_job_overhead = r1["seconds_wall"] / r1["seconds_detect"] - 1.0
    print(f"benchmark: {args.frames} frames of {args.detector}, 5% hits, detect.mode {args.mode}, "
          f"prefetch {'off' if args.no_prefetch else 'on'}, "
          f"model {model.name}, OMP_NUM_THREADS=1, "
          f"best of {args.repeat}")
    print(f"  detection alone (peer: same detector, frames in memory, 1 thread): {detect_fps:.2f} frames/s")
    for n, stats in ((1, s1), (2, s2)):
        for r in stats["per_rank"]:
            print(f"  whole job, {n} rank(s): rank {r['rank']} {r['frames_per_second']:.2f} frames/s: "
                  f"wall {r['seconds_wall']:.2f} s = read {r['seconds_read']:.2f} + detect {r['seconds_detect']:.2f} "
                  f"+ classify {r['seconds_classify']:.2f} + gather/write/other "
                  f"{r['seconds_wall'] - r['seconds_read'] - r['seconds_detect'] - r['seconds_classify']:.2f} s")
    print(f"  overhead of I/O+classify+gather+write, 1 rank: {100 * in_job_overhead:.1f}% of the job's own detection "
          f"time; {100 * (detect_fps / s1['frames_per_second'] - 1):.1f}% against detection alone (target <= 30%)")
    print(f"  speed-up 2 ranks / 1 rank: {s2['frames_per_second'] / s1['frames_per_second']:.2f}x on processing time, "
          f"{wall1 / wall2:.2f}x on command wall time incl. start-up ({wall1:.1f} s vs {wall2:.1f} s; target >= 1.7x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
