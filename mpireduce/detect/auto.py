"""Parameter-free ("auto") Bragg-peak detection: thresholds from each frame's own statistics.

No per-experiment tuning (seed 000): every constant below is a significance, not a level
in detector units, so one config serves photon-counting and integrating detectors, any
background strength, wavelength or distance.

1. Background model per radius bin (rounded radius, as in peakfinder8), from a fixed
   subsample of the unmasked pixels: ``CLIP_ROUNDS`` rounds of clipping at
   ``CLIP_Z`` noise around the mean give a *level* and a *variance*. Noise is never
   below one count for integer-valued frames (so clipping keeps the 1s and 2s of a
   nearly empty photon-counting frame), and the variance used for thresholds is at
   least the level (Poisson) for them.
2. Seeds: the excess ``I - level`` summed over 3x3 pixels (a matched filter for a spot
   of about a pixel; masked pixels add nothing) above ``SEED_Z`` box-sum noise plus, for
   counts, the Cornish-Fisher skew term ``(z^2 - 1)/6`` of a Poisson quantile, which
   keeps nearly-empty frames free of false seeds. ``SEED_Z`` is chosen so that frames of
   pure noise give well under one false peak per Mpx.
3. Seeds form 8-connected components; around each, a disk of radius ``BG_RADIUS``
   (pixels not above their bin's ``level + BG_Z * noise``) gives the local background
   mean, variance and maximum, as in peakfinder8.
4. A component is a peak when, against its local background, its integrated excess is
   ``PEAK_Z`` times its noise, the excess without its brightest pixel is still significant
   (a hot pixel is not a peak), its brightest pixel outshines the local background, at
   least ``min_pixel_count`` pixels are one noise above background (``npix``) and at
   most ``max_pixel_count`` are above half the peak's maximum (a spot's core, whatever
   its brightness; rings and streaks are wider). Peaks are sorted by intensity and cut to
   ``max_num_peaks``; the other peakfinder8 parameters are not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backend import Backend
from ..config import DetectConfig
from ..errors import InputError
from ..geometry import DetectorGeometry
from .peakfinder8 import disk_background, disk_offsets, label_components
from .peaks import PeakTable

Array = Any  # an xp array

CLIP_Z = 3.0  #: clipping bound of the background statistics, in noise units
CLIP_ROUNDS = 4
SAMPLE_STEP = 8  #: every SAMPLE_STEP-th pixel of a bin enters the statistics ...
SMALL_BIN = 512  #: ... except in bins with fewer pixels, which enter whole
SEED_Z = 5.5  #: significance of a 3x3 box-sum excess that seeds a peak
BG_RADIUS = 4  #: local-background disk radius (pixels)
BG_Z = 3.0  #: local-background pixels are at most level + BG_Z * noise
MIN_BG_PIXELS = 8  #: fewer local-background pixels: use the radial model
PEAK_Z = 5.0  #: significance of the integrated excess over the local background
REST_Z = 3.0  #: significance of that excess without the brightest pixel
REST_FRACTION = 0.05  #: ... which must also be this fraction of the brightest pixel's excess
BOX = 3  #: side of the seed filter (a 3x3 box sum)


@dataclass(frozen=True)
class Background:
    """Per-bin background of one frame; the last entry is the dump bin of masked pixels."""

    level: Array  #: (nbins + 1,) float32 robust mean
    variance: Array  #: (nbins + 1,) float32 noise variance used for thresholds
    counts: bool  #: integer-valued frame (photon or ADU counts)


class AutoDetector:
    """Parameter-free detector for one geometry; ``find`` takes one frame."""

    name = "auto"

    def __init__(self, config: DetectConfig, geometry: DetectorGeometry, backend: Backend) -> None:
        xp = backend.xp
        self.config, self.backend = config, backend
        self.shape = tuple(geometry.shape)
        good = np.asarray(geometry.mask).ravel() != 0
        rbin = np.rint(geometry.radius_px()).astype(np.int64).ravel()
        self.nbins = int(rbin.max()) + 1
        bins = np.where(good, rbin, self.nbins).astype(np.int32)
        self.bins = xp.asarray(bins)  #: radius bin per pixel; masked pixels: nbins
        self.good = xp.asarray(good)
        self.sample = xp.asarray(_stratified_sample(bins, self.nbins))
        self.sample_bins = self.bins[self.sample]
        self.window = disk_offsets(xp, BG_RADIUS)

    def find(self, frame) -> PeakTable:
        """Peaks of one frame (any numeric dtype, shape ``geometry.shape``)."""
        if tuple(frame.shape) != self.shape:
            raise InputError(f"frame shape {tuple(frame.shape)} does not match the geometry "
                             f"{self.shape}; check the mask/geometry used to build the detector")
        xp = self.backend.xp
        counts = np.issubdtype(np.dtype(frame.dtype), np.integer)
        flat = xp.asarray(frame, dtype=xp.float32).ravel()
        model = self.background(flat, counts)
        seeds = self._seeds(flat, model)
        label, count = label_components(self.backend, seeds, self.shape)
        if count == 0:
            return PeakTable.empty()
        return self._measure(flat, model, seeds, label, count)

    def background(self, flat: Array, counts: bool) -> Background:
        """Robust per-bin level and variance from the subsample (see module docstring)."""
        xp = self.backend.xp
        values = flat[self.sample]
        counts = counts or bool(xp.all(values == xp.rint(values)))
        bins, size = self.sample_bins, self.nbins + 1
        level, variance = _moments(xp, bins, values, None, size)
        for _ in range(CLIP_ROUNDS - 1):
            spread = xp.maximum(variance, 1.0) if counts else variance
            keep = xp.abs(values - level[bins]) <= CLIP_Z * xp.sqrt(spread)[bins]
            level, variance = _moments(xp, bins, values, keep, size)
        if counts:
            variance = xp.maximum(variance, level)
        level[-1], variance[-1] = 0.0, 0.0
        return Background(level.astype(xp.float32), variance.astype(xp.float32), counts)

    def _seeds(self, flat: Array, model: Background) -> Array:
        """Sorted flat indices whose 3x3 excess over the level is significant."""
        xp = self.backend.xp
        excess = xp.where(self.good, flat - model.level[self.bins], xp.float32(0))
        box = _box_sum(xp, excess.reshape(self.shape))
        box_var = (BOX * BOX) * model.variance
        limit = SEED_Z * xp.sqrt(box_var)
        if model.counts:  # Poisson quantile: skew term, scaled by the variance-to-level gain
            gain = xp.clip(model.variance / xp.maximum(model.level, 1e-3), 1.0, 1e3)
            limit = xp.minimum(limit + (SEED_Z ** 2 - 1.0) / 6.0 * gain, 2.0 * limit + 1.0)
        limit = xp.where(box_var > 0, limit, xp.inf).astype(xp.float32)
        return xp.flatnonzero(box.ravel() > limit[self.bins])

    def _measure(self, flat: Array, model: Background, seeds: Array, label: Array,
                 count: int) -> PeakTable:
        """Local background, integration and the acceptance rules for each component."""
        xp = self.backend.xp
        ss, fs = xp.divmod(seeds, self.shape[1])
        values = flat[seeds].astype(xp.float64)

        def total(weights=None):
            return xp.bincount(label, weights=weights, minlength=count)

        lift = xp.maximum(values - model.level[self.bins[seeds]], 0.0) + 1e-9
        bg_mean, bg_var, bg_max = self._local_background(flat, model, seeds, label, count,
                                                         total(lift * ss) / total(lift),
                                                         total(lift * fs) / total(lift))
        noise = xp.sqrt(bg_var)
        npix = total()
        signal = values - bg_mean[label]
        intensity = total(signal)
        peak_max = self.backend.ndi.maximum(values, labels=label, index=xp.arange(count))
        peak_max = xp.asarray(peak_max, dtype=xp.float64)
        rest = intensity - (peak_max - bg_mean)
        bright = total((signal > noise[label]).astype(xp.float64))
        core = total((signal > 0.5 * (peak_max - bg_mean)[label]).astype(xp.float64))
        snr = intensity / xp.maximum(noise * xp.sqrt(npix), 1e-6)
        cfg = self.config
        keep = ((snr >= PEAK_Z) & self._rest_significant(rest, peak_max - bg_mean, bg_var, npix, model)
                & (peak_max > bg_max) & (bright >= cfg.min_pixel_count) & (core <= cfg.max_pixel_count))
        keep = xp.flatnonzero(keep)
        order = keep[xp.argsort(-intensity[keep], kind="stable")][: cfg.max_num_peaks]
        positive = xp.maximum(signal, 0.0)
        weight = xp.maximum(total(positive), 1e-9)
        centre_fs, centre_ss = total(positive * fs) / weight, total(positive * ss) / weight
        return _table(self.backend, centre_fs[order], centre_ss[order], intensity[order],
                      bright[order], (peak_max - bg_mean)[order], snr[order])

    def _rest_significant(self, rest: Array, top: Array, variance: Array, npix: Array,
                          model: Background) -> Array:
        """True where the excess without the brightest pixel is itself a signal.

        It must be ``REST_Z`` times the noise of ``npix - 1`` pixels (plus the Poisson skew
        term for counts) and ``REST_FRACTION`` of the brightest pixel's excess: a hot pixel
        beside background that happens to fluctuate up is still a hot pixel.
        """
        xp = self.backend.xp
        noise = xp.sqrt(variance * xp.maximum(npix - 1, 1))
        skew = (REST_Z ** 2 - 1.0) / 6.0 if model.counts else 0.0
        return (rest >= REST_Z * noise + skew) & (rest >= REST_FRACTION * top)

    def _local_background(self, flat: Array, model: Background, seeds: Array, label: Array,
                          count: int, rough_ss: Array, rough_fs: Array):
        """(mean, variance, max) of the disk around each component, radial model if too few."""
        xp = self.backend.xp
        limit = model.level + BG_Z * xp.sqrt(xp.maximum(model.variance, 1.0 if model.counts else 0.0))
        limit[-1] = -xp.inf  # masked pixels
        outside = flat.copy()
        outside[seeds] = xp.inf  # pixels of any component are not background
        mean, sigma, bg_max, n = disk_background(xp, outside, self.shape, self.window, limit,
                                                 self.bins, rough_ss, rough_fs)
        seed_bins = self.bins[seeds]
        radial_mean = xp.bincount(label, weights=model.level[seed_bins], minlength=count) \
            / xp.bincount(label, minlength=count)
        radial_var = xp.bincount(label, weights=model.variance[seed_bins], minlength=count) \
            / xp.bincount(label, minlength=count)
        few = n < MIN_BG_PIXELS
        mean = xp.where(few, radial_mean, mean)
        floor = xp.maximum(mean, 0.0) if model.counts else 0.0  # Poisson: variance >= mean
        variance = xp.maximum(xp.maximum(sigma * sigma, radial_var), floor)
        return mean, variance, xp.where(few, -xp.inf, bg_max)


def _moments(xp, bins: Array, values: Array, keep, size: int):
    """Mean and population variance per bin of the ``keep`` values (0 for empty bins), float64."""
    weight = xp.ones(values.shape) if keep is None else keep.astype(xp.float64)
    values = values.astype(xp.float64) * weight
    n = xp.maximum(xp.bincount(bins, weights=weight, minlength=size)[:size], 1.0)
    mean = xp.bincount(bins, weights=values, minlength=size)[:size] / n
    square = xp.bincount(bins, weights=values * values, minlength=size)[:size] / n
    return mean, xp.maximum(square - mean * mean, 0.0)


def _box_sum(xp, image: Array) -> Array:
    """Sum over the 3x3 pixels around every pixel (zero outside the frame)."""
    padded = xp.pad(image, 1)
    rows = padded[:, :-2] + padded[:, 1:-1]
    rows += padded[:, 2:]
    box = rows[:-2] + rows[1:-1]
    box += rows[2:]
    return box


def _stratified_sample(bins: np.ndarray, nbins: int) -> np.ndarray:
    """Sorted flat indices: every SAMPLE_STEP-th unmasked pixel of each bin (all of small bins)."""
    good = np.flatnonzero(bins < nbins)
    order = good[np.argsort(bins[good], kind="stable")]
    sizes = np.bincount(bins[order], minlength=nbins)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rank = np.arange(order.size) - np.repeat(starts, sizes)
    small = sizes[bins[order]] < SMALL_BIN
    return np.sort(order[(rank % SAMPLE_STEP == 0) | small])


def _table(backend: Backend, fs, ss, intensity, npix, max_value, snr) -> PeakTable:
    """Host PeakTable: float32 columns, int32 npix."""
    xp, host = backend.xp, backend.to_host
    return PeakTable(host(fs.astype(xp.float32)), host(ss.astype(xp.float32)),
                     host(intensity.astype(xp.float32)), host(npix.astype(xp.int32)),
                     host(max_value.astype(xp.float32)), host(snr.astype(xp.float32)))
