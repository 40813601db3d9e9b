"""Run OM's peakfinder8 (GPL-3.0) as a benchmark peer; executed only by the omvenv python.

Never imported by mpireduce or by ``bench/detect.py``: that script starts this file as a
subprocess (``/tmp/omvenv/bin/python bench/om_peer.py JOB.json``). The job names .npy
files of frames, a mask and the pixel radii, the peakfinder8 parameters and how often to
repeat each frame for timing; the answer (JSON on stdout) holds the peaks of each frame
and the fastest time per frame. The whole frame is one panel (no per-panel rules), as in
mpireduce's peakfinder8 mode.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from om.algorithms._crystallography import peakfinder_8


def find(frame: np.ndarray, mask: np.ndarray, radius: np.ndarray, params: dict) -> tuple:
    """OM peakfinder8 on one frame: (fs, ss, intensity, npix) lists."""
    ss, fs = frame.shape
    # 0 / None / None / 0: full radial statistics over every pixel (OM's non-fast mode)
    out = peakfinder_8(params["max_num_peaks"], frame, mask, radius, 0, None, None, 0, fs, ss, 1, 1,
                       params["adc_threshold"], params["min_snr"], params["min_pixel_count"],
                       params["max_pixel_count"], params["local_bg_radius"])
    return out[0], out[1], out[2], out[4]


def main(path: str) -> int:
    """Read the job at ``path``; print the answer as JSON."""
    with open(path) as handle:
        job = json.load(handle)
    mask = np.ascontiguousarray(np.load(job["mask"]), dtype=np.int8)
    radius = np.ascontiguousarray(np.load(job["radius"]), dtype=np.float32)
    frames = [np.ascontiguousarray(np.load(name), dtype=np.float32) for name in job["frames"]]
    answers = []
    for frame in frames:
        best = float("inf")
        for _ in range(max(1, job.get("repeat", 1))):
            start = time.perf_counter()
            fs, ss, intensity, npix = find(frame, mask, radius, job["params"])
            best = min(best, time.perf_counter() - start)
        answers.append({"fs": list(map(float, fs)), "ss": list(map(float, ss)),
                        "intensity": list(map(float, intensity)), "npix": list(map(int, npix)),
                        "seconds": best})
    json.dump(answers, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
