"""Bragg-peak detection with peakfinder8 semantics, written once against ``xp``/``ndi``.

Independent implementation of Barty et al., J. Appl. Cryst. 47, 1118 (2014):

1. Radial sigma clipping gives a threshold per radius bin (:mod:`.radial`); unmasked
   pixels strictly above it, inside ``min_res <= r <= max_res``, are seeds.
2. Seeds form 8-connected components (3x3 structure); components with
   ``min_pixel_count <= npix <= max_pixel_count`` and a pixel off the frame's 1-pixel
   border (peakfinder8 seeds no border pixel) are candidates. Few seeds are labelled
   sparsely (:func:`label_sparse`), many with ``ndi.label``; both number alike.
3. Local background per candidate: the pixels of peakfinder8's window around its rounded
   centroid (:func:`ring_offsets`: offsets ``-2R <= d < 2R`` within ``2R``, ``R =
   local_bg_radius``) that are unmasked, on the frame and strictly *below* their radial
   threshold (a pixel equal to it is neither seed nor background). ``bg_mean``/``bg_sigma``
   are their mean and population sigma, ``bg_max`` the brightest. With fewer than
   ``MIN_BACKGROUND_PIXELS`` the radial mean/sigma of the candidate's pixels are used.
4. ``intensity = sum(I) - npix * bg_mean``; ``snr = intensity / bg_sigma`` (peakfinder8's
   definition); the centroid is weighted by ``I - bg_mean``. A candidate is a peak when
   ``snr >= min_snr``, ``intensity > 0`` and its brightest pixel is at least ``bg_max``.
5. Peaks are sorted by intensity (descending) and cut to ``max_num_peaks``.

Coordinates follow Cheetah/CXI: ``fs`` column, ``ss`` row, pixel (0, 0) centred at 0.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import Backend
from ..config import DetectConfig
from ..errors import InputError
from ..geometry import DetectorGeometry
from .peaks import PeakTable
from .radial import RadialProfile, RadialResult
from .radial_counts import CountProfile, is_integer_frame

Array = Any  # an xp array

#: fewer local-background pixels than this: fall back to the radial statistics
MIN_BACKGROUND_PIXELS = 4
#: smallest noise used in the SNR denominator (a perfectly flat background)
NOISE_FLOOR = 1.0e-6
#: above this fraction of the frame in seeds, ``ndi.label`` beats sparse labelling
DENSE_FRACTION = 0.02


@dataclass(frozen=True)
class Candidates:
    """Pixels of the size-filtered components (``comp`` numbers them 0..count-1)."""
    pixels: Array  #: flat indices
    comp: Array  #: component id of each pixel
    count: int


class Peakfinder8:
    """peakfinder8-style detector for one geometry; ``find`` takes one frame."""
    name = "peakfinder8"

    def __init__(self, config: DetectConfig, geometry: DetectorGeometry, backend: Backend) -> None:
        xp = backend.xp
        self.config = config
        self.backend = backend
        self.shape = tuple(geometry.shape)
        self.radial = RadialProfile(geometry, backend, nsigma=config.min_snr,
                                    adc_threshold=config.adc_threshold,
                                    iterations=config.radial_iterations)
        self.counts = CountProfile(self.radial, backend.name)  # integer frames, same results
        radius = xp.asarray(geometry.radius_px()).ravel()
        good = xp.asarray(geometry.mask).astype(bool).ravel()
        self.search = good & (radius >= config.min_res) & (radius <= config.max_res)
        self.window_ss, self.window_fs = ring_offsets(xp, config.local_bg_radius)

    def find(self, frame) -> PeakTable:
        """Peaks of one frame (any numeric dtype, shape ``geometry.shape``)."""
        if tuple(frame.shape) != self.shape:
            raise InputError(f"frame shape {tuple(frame.shape)} does not match the geometry "
                             f"{self.shape}; check the mask/geometry used to build the detector")
        xp = self.backend.xp
        flat = xp.asarray(frame).ravel()
        if is_integer_frame(xp, flat):  # kept as integers; pixel values are read as float32
            stats = self.counts.analyse(flat)
        else:
            flat = flat.astype(xp.float32, copy=False)
            stats = self.radial.analyse(flat)
        seeds = stats.outliers[self.search[stats.outliers]]
        cand = self._components(seeds)
        if cand.count == 0:
            return PeakTable.empty()
        return self._measure(flat, stats, cand)

    def _components(self, seeds: Array) -> Candidates:
        """8-connected components of the (sorted) seed pixels, filtered by pixel count."""
        xp, cfg = self.backend.xp, self.config
        label, count = label_components(self.backend, seeds, self.shape)
        npix = xp.bincount(label, minlength=count)
        (height, width), (ss, fs) = self.shape, xp.divmod(seeds, self.shape[1])
        inner = (ss > 0) & (ss < height - 1) & (fs > 0) & (fs < width - 1)  # can seed
        ok = xp.zeros(count, dtype=bool)
        ok[label[inner]] = True
        ok &= (npix >= cfg.min_pixel_count) & (npix <= cfg.max_pixel_count)
        keep = ok[label]
        new_id = xp.cumsum(ok) - 1
        return Candidates(seeds[keep], new_id[label[keep]], int(ok.sum()))

    def _measure(self, flat: Array, stats: RadialResult, cand: Candidates) -> PeakTable:
        """Local background, integration, selection and sorting of the candidates."""
        xp = self.backend.xp
        ss, fs = xp.divmod(cand.pixels, self.shape[1])
        values = as_float32(xp, flat[cand.pixels]).astype(xp.float64)
        bins = self.radial.bins[cand.pixels]

        def total(weights=None):
            return xp.bincount(cand.comp, weights=weights, minlength=cand.count)

        npix = total()
        lift = values - stats.mean[bins]  # > 0: every seed is above its bin's mean
        bg_mean, bg_sigma, bg_max = self._local_background(
            flat, stats, total(lift * ss) / total(lift), total(lift * fs) / total(lift))
        fallback = xp.isnan(bg_mean)  # too few local pixels: use the radial statistics
        bg_mean = xp.where(fallback, total(stats.mean[bins]) / npix, bg_mean)
        bg_sigma = xp.where(fallback, total(stats.sigma[bins]) / npix, bg_sigma)

        intensity = total(values) - npix * bg_mean
        weight = xp.where(intensity > 0, intensity, 1.0)  # the others are dropped below
        centre_fs = (total(values * fs) - bg_mean * total(fs)) / weight
        centre_ss = (total(values * ss) - bg_mean * total(ss)) / weight
        snr = intensity / xp.maximum(bg_sigma, NOISE_FLOOR)
        peak_max = self.backend.ndi.maximum(values, labels=cand.comp, index=xp.arange(cand.count))
        peak_max = xp.asarray(peak_max, dtype=xp.float64)
        keep = xp.flatnonzero((snr >= self.config.min_snr) & (intensity > 0) & (peak_max >= bg_max))
        order = keep[xp.argsort(-intensity[keep], kind="stable")][: self.config.max_num_peaks]
        return self._table(centre_fs[order], centre_ss[order], intensity[order], npix[order],
                           (peak_max - bg_mean)[order], snr[order])

    def _local_background(self, flat: Array, stats: RadialResult, rough_ss: Array, rough_fs: Array):
        """(mean, sigma, max) of the background window around each centroid; NaN when too few."""
        xp = self.backend.xp
        # masked pixels sit in the dump bin, whose threshold -inf rejects every value
        threshold = xp.concatenate([stats.threshold, xp.full(1, -xp.inf, stats.threshold.dtype)])
        mean, sigma, bg_max, count = disk_background(
            xp, flat, self.shape, (self.window_ss, self.window_fs), threshold, self.radial.bins,
            rough_ss, rough_fs, strict=True)
        few = count < MIN_BACKGROUND_PIXELS
        return xp.where(few, xp.nan, mean), sigma, xp.where(few, -xp.inf, bg_max)

    def _table(self, fs, ss, intensity, npix, max_value, snr) -> PeakTable:
        """Host PeakTable: float32 columns, int32 npix."""
        host = self.backend.to_host
        f32 = self.backend.xp.float32
        return PeakTable(host(fs.astype(f32)), host(ss.astype(f32)), host(intensity.astype(f32)),
                         host(npix.astype(self.backend.xp.int32)), host(max_value.astype(f32)),
                         host(snr.astype(f32)))


def disk_background(xp, flat: Array, shape: tuple, window: tuple, limit: Array, bins: Array,
                    centre_ss: Array, centre_fs: Array, strict: bool = False):
    """Background statistics on a window around each (rounded) centre.

    ``window`` is (d_ss, d_fs) from :func:`disk_offsets` or :func:`ring_offsets`; a pixel
    counts when it is on the frame and its value is at most ``limit[bins[pixel]]`` (below
    it if ``strict``; -inf excludes it). Returns float64 (mean, sigma, max, count) per centre.
    """
    rows = xp.rint(centre_ss).astype(xp.int64)[:, None] + window[0][None, :]
    cols = xp.rint(centre_fs).astype(xp.int64)[:, None] + window[1][None, :]
    inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
    index = xp.where(inside, rows * shape[1] + cols, 0)
    values = as_float32(xp, flat[index]).astype(xp.float64)
    bound = limit[bins[index]]
    usable = inside & ((values < bound) if strict else (values <= bound))
    count = usable.sum(axis=1)
    n = xp.maximum(count, 1)
    mean = xp.where(usable, values, 0.0).sum(axis=1) / n
    var = xp.where(usable, (values - mean[:, None]) ** 2, 0.0).sum(axis=1) / n
    bg_max = xp.where(usable, values, -xp.inf).max(axis=1)
    return mean, xp.sqrt(var), bg_max, count


def as_float32(xp, values: Array) -> Array:
    """Integer pixel values as float32, the precision every detector step reads them in."""
    return values.astype(xp.float32) if is_integer_frame(xp, values) else values


def disk_offsets(xp, radius: int):
    """(d_ss, d_fs) int64 offsets of the square window clipped to a disk of ``radius``."""
    span = xp.arange(-radius, radius + 1, dtype=xp.int64)
    d_ss, d_fs = xp.meshgrid(span, span, indexing="ij")
    inside = d_ss * d_ss + d_fs * d_fs <= radius * radius
    return d_ss[inside], d_fs[inside]


def ring_offsets(xp, radius: int):
    """(d_ss, d_fs) int64 offsets of peakfinder8's background window: -2r <= d < 2r, |d| <= 2r."""
    span = xp.arange(-2 * radius, 2 * radius, dtype=xp.int64)
    d_ss, d_fs = xp.meshgrid(span, span, indexing="ij")
    inside = d_ss * d_ss + d_fs * d_fs <= 4 * radius * radius
    return d_ss[inside], d_fs[inside]


def label_components(backend: Backend, seeds: Array, shape: tuple):
    """8-connected components of the sorted flat indices ``seeds`` on a frame of ``shape``.

    Returns (component 0..n-1 of each seed, n): sparse labelling for few seeds, ``ndi.label``
    over the frame when seeds exceed ``DENSE_FRACTION`` of it (same numbering).
    """
    xp = backend.xp
    size = shape[0] * shape[1]
    if seeds.size <= DENSE_FRACTION * size:
        return label_sparse(xp, seeds, shape[1])
    image = xp.zeros(size, dtype=bool)
    image[seeds] = True
    labels, count = backend.ndi.label(image.reshape(shape), structure=xp.ones((3, 3), dtype=bool))
    return labels.ravel()[seeds] - 1, int(count)


def label_sparse(xp, pixels: Array, width: int):
    """8-connected components of the pixels at sorted flat indices ``pixels``.

    Returns (component 0..n-1 of each pixel, n), numbered like ``ndi.label`` (in order of
    each component's first pixel). Work is O(P log P) in the P pixels, independent of the
    frame size: neighbours are found by binary search, components by hooking roots
    onto smaller roots and pointer jumping until no edge joins two roots.
    """
    count = int(pixels.size)
    if count == 0:
        return xp.zeros(0, dtype=xp.int64), 0
    fs = pixels % width
    forward = ((1, fs < width - 1), (width - 1, fs > 0), (width, True), (width + 1, fs < width - 1))
    first, second = [], []
    for step, valid in forward:  # right, down-left, down, down-right
        target = pixels + step
        j = xp.minimum(xp.searchsorted(pixels, target), count - 1)
        hit = (pixels[j] == target) & valid
        first.append(xp.flatnonzero(hit))
        second.append(j[hit])
    a, b = xp.concatenate(first), xp.concatenate(second)
    root = xp.arange(count)
    while True:
        ra, rb = root[a], root[b]
        differ = ra != rb
        if not bool(differ.any()):
            break
        root[xp.maximum(ra, rb)[differ]] = xp.minimum(ra, rb)[differ]  # roots hook lower
        root = _compress(xp, root)
    is_root = root == xp.arange(count)
    return (xp.cumsum(is_root) - 1)[root], int(is_root.sum())


def _compress(xp, root: Array) -> Array:
    """Pointer jumping: make every entry point straight at its tree's root."""
    while True:
        up = root[root]
        if bool((up == root).all()):
            return root
        root = up
