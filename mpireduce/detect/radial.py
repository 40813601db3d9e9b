"""Radial background statistics with iterative sigma clipping (peakfinder8 step 1).

Pixels are binned by rounded distance from the beam centre. For ``iterations`` rounds,
each bin's mean and sigma (population standard deviation) are taken over its unmasked
pixels inside ``[mean - nsigma*sigma, mean + nsigma*sigma]`` of the previous round (the
first round takes all; bounds inclusive). The threshold per bin is
``max(adc_threshold, mean + nsigma*sigma)``; unmasked pixels strictly above it are the
*outliers* that grow into peaks. :func:`clipped_stats` is this definition written
plainly; :class:`RadialProfile` computes the same numbers faster:

* a sample of ``SAMPLES_PER_BIN`` pixels per bin places a *core band* around each bin's
  median; the core pixels, which every round keeps, are summed once and only the few
  *tail* pixels outside it are re-clipped each round;
* each round checks that its bounds hold the core pixels and the final threshold lies
  above them; failing bins are redone from all their pixels, so results are exact;
* the pass over all pixels walks a precomputed *layout* (each strip of rows sorted by
  bin), so per-bin sums are contiguous segment sums and temporaries stay in cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

from ..backend import Backend
from ..geometry import DetectorGeometry

Array = Any  # an xp array (numpy.ndarray or cupy.ndarray)

#: pixels per strip of the layout on the CPU (its temporaries fit in a core's cache)
STRIP_PIXELS = 1 << 18
#: pixels of each bin sampled to place its core band
SAMPLES_PER_BIN = 64
#: the core band reaches (nsigma - BAND_MARGIN) sampled sigmas (at least nsigma/2)
BAND_MARGIN = 1.5
#: clipping rounds on the sample (enough to drop a few peak pixels)
BAND_ROUNDS = 3
#: bins with fewer pixels get no core band (all their pixels are tail)
MIN_BAND_PIXELS = 16


@dataclass(frozen=True)
class RadialResult:
    """Clipped per-bin statistics of one frame, and its above-threshold pixels."""

    mean: Array  #: (nbins,) clipped mean per radius bin, float32
    sigma: Array  #: (nbins,) clipped standard deviation per radius bin, float32
    threshold: Array  #: (nbins,) max(adc_threshold, mean + nsigma*sigma), float32
    outliers: Array  #: sorted flat indices of unmasked pixels above their threshold


@dataclass(frozen=True)
class _Split:
    """One pass over the frame: the tail pixels, and the core's moments per bin."""

    index: Array  #: flat index of each tail pixel
    bins: Array  #: its radius bin
    values: Array  #: its value
    offset: Array  #: its value minus its bin's band centre (float64)
    core: tuple  #: (count, sum, sum of squares) of core offsets per bin, float64
    extent: Array  #: largest |offset| of a core pixel per bin (at most the band half-width)


def clipped_stats(xp, values: Array, bins: Array, nbins: int, iterations: int,
                  nsigma: float) -> Tuple[Array, Array]:
    """Plain iterative sigma clipping of ``values`` grouped by ``bins`` (the reference)."""
    mean, sigma = _mean_sigma(xp, *_moments(xp, bins, values, nbins))
    for _ in range(iterations - 1):
        keep = xp.abs(values - mean[bins]) <= nsigma * sigma[bins]
        mean, sigma = _mean_sigma(xp, *_moments(xp, bins[keep], values[keep], nbins))
    return mean, sigma


def _moments(xp, bins: Array, values: Array, nbins: int) -> tuple:
    """(count, sum, sum of squares) of ``values`` per bin, all in float64."""
    values = xp.asarray(values, dtype=xp.float64)
    count = xp.bincount(bins, minlength=nbins)[:nbins].astype(xp.float64)
    total = xp.bincount(bins, weights=values, minlength=nbins)[:nbins]
    return count, total, xp.bincount(bins, weights=values * values, minlength=nbins)[:nbins]


def _mean_sigma(xp, count: Array, total: Array, total_sq: Array, shift=0.0) -> Tuple[Array, Array]:
    """Float32 mean and population sigma from moments of ``values - shift`` (0 if empty).

    The mean is rounded to float32 once, after adding ``shift`` back, so it matches
    clipping without a shift bit for bit (and ties at a bound agree).
    """
    n = xp.maximum(count, 1.0)
    mean = total / n
    var = xp.maximum(total_sq / n - mean * mean, 0.0)
    return (mean + shift).astype(xp.float32), xp.sqrt(var).astype(xp.float32)


def _run_starts(xp, keys: Array) -> Array:
    """Where each run of equal values in ``keys`` begins."""
    boundary = xp.ones(keys.size, dtype=bool)
    boundary[1:] = keys[1:] != keys[:-1]
    return xp.flatnonzero(boundary)


def _segment_sums(xp, values: Array, starts: Array) -> Array:
    """Sums of the contiguous segments of ``values`` beginning at ``starts``."""
    if hasattr(xp.add, "reduceat"):
        return xp.add.reduceat(values, starts).astype(xp.float64)
    running = xp.concatenate([xp.zeros(1), xp.cumsum(values, dtype=xp.float64)])
    return xp.diff(running[xp.append(starts, values.size)])


class RadialProfile:
    """Radius bins and pixel layout of one geometry; ``analyse`` takes one frame."""

    def __init__(self, geometry: DetectorGeometry, backend: Backend, *, nsigma: float,
                 adc_threshold: float, iterations: int) -> None:
        xp = self.xp = backend.xp
        self.nsigma, self.adc_threshold = float(nsigma), float(adc_threshold)
        self.iterations = max(int(iterations), 1)
        rbin = xp.rint(xp.asarray(geometry.radius_px())).astype(xp.int64).ravel()
        good = xp.asarray(geometry.mask).ravel() != 0
        self.nbins = int(rbin.max()) + 1
        #: radius bin of every pixel (flat); masked pixels hold the extra bin ``nbins``
        self.bins = xp.where(good, rbin, self.nbins).astype(xp.int32)
        self.counts = xp.bincount(rbin[good], minlength=self.nbins).astype(xp.float64)
        rows = geometry.shape[0] if backend.name == "cupy" else max(1, STRIP_PIXELS // geometry.shape[1])
        self._build_layout(rbin, good, rows * geometry.shape[1])
        #: flat indices of the unmasked pixels grouped by bin; bin b is [edges[b], edges[b+1])
        self.bin_pixels = self.layout[xp.argsort(self.bins[self.layout], kind="stable")].astype(xp.int32)
        self.bin_edges = [0, *xp.cumsum(self.counts).astype(xp.int64).tolist()]
        #: (nbins, SAMPLES_PER_BIN) flat indices spread evenly over each bin's pixels
        self.sample = self.bin_pixels[self._sample_slots()] if self.bin_pixels.size else None
        self.banded = self.counts >= MIN_BAND_PIXELS

    def _build_layout(self, rbin: Array, good: Array, strip_pixels: int) -> None:
        """Unmasked pixels ordered by (strip, bin); a segment is one bin within a strip."""
        xp = self.xp
        strip = xp.arange(rbin.size, dtype=xp.int64) // strip_pixels
        key = (strip * self.nbins + rbin)[good]
        order = xp.argsort(key, kind="stable")
        self.layout = xp.flatnonzero(good)[order]  #: flat index of each layout slot
        key = key[order]
        starts = _run_starts(xp, key)
        self.segment_bins = key[starts] % self.nbins
        self.segment_sizes = xp.diff(xp.append(starts, key.size))
        self.slot_segment = None  #: segment of each slot, where repeat takes no array (cupy)
        if xp.__name__ != "numpy":
            marks = xp.zeros(key.size, dtype=xp.int64)
            marks[starts[1:]] = 1
            self.slot_segment = xp.cumsum(marks)
        first = xp.flatnonzero(xp.diff(key[starts] // self.nbins)) + 1  # each strip's first
        seg_edges = [0, *first.tolist(), int(starts.size)]
        slot_edges = [*starts.tolist(), int(key.size)]
        #: per strip: (first slot, end slot, first segment, end segment, segment starts in strip)
        self.strips = [(slot_edges[lo], slot_edges[hi], lo, hi, starts[lo:hi] - slot_edges[lo])
                       for lo, hi in zip(seg_edges[:-1], seg_edges[1:]) if lo < hi]

    def _sample_slots(self) -> Array:
        """Positions in ``bin_pixels`` of ``SAMPLES_PER_BIN`` evenly spaced pixels per bin."""
        xp = self.xp
        first = xp.asarray(self.bin_edges[:-1], dtype=xp.int64)
        step = xp.arange(SAMPLES_PER_BIN, dtype=xp.int64)
        within = (step[None, :] * self.counts.astype(xp.int64)[:, None]) // SAMPLES_PER_BIN
        return xp.minimum(first[:, None] + within, max(int(self.bin_pixels.size) - 1, 0))

    def analyse(self, flat: Array) -> RadialResult:
        """Clipped statistics and outliers of a flattened float32 frame."""
        xp = self.xp
        if self.layout.size == 0:  # everything masked
            zero = xp.zeros(self.nbins, dtype=xp.float32)
            return RadialResult(zero, zero, self._threshold(zero, zero), self.layout)
        centre, width = self._estimate_band(flat)
        split = self._split(flat, centre, width)
        mean, sigma, failed = self._clip(split, centre, width)
        parts = [split]
        if bool(failed.any()):  # bins are independent: redo just those, from all their pixels
            parts = [self._drop_bins(split, failed), self._all_pixels(flat, failed, centre)]
            redone_mean, redone_sigma, _ = self._clip(parts[1], centre, xp.full_like(width, -1.0))
            mean, sigma = xp.where(failed, redone_mean, mean), xp.where(failed, redone_sigma, sigma)
        threshold = self._threshold(mean, sigma)
        # the tails hold every pixel above its threshold
        outliers = [part.index[part.values > threshold[part.bins]] for part in parts]
        return RadialResult(mean, sigma, threshold, xp.sort(xp.concatenate(outliers)))

    def _estimate_band(self, flat: Array) -> Tuple[Array, Array]:
        """Per-bin (centre, half-width) of the core band; width -1 (no band) for small bins.

        The half-width comes from the clipped sigma of the bin's sample; the centre is
        the sample's median, a pixel value, so offsets from it are exact in float32 for
        most core pixels (and all of them for integer counts). A band that is too wide
        only costs a repair in ``analyse``, never accuracy.
        """
        xp = self.xp
        sample = xp.sort(flat[self.sample], axis=1)  # (nbins, SAMPLES_PER_BIN)
        keep = xp.ones(sample.shape, dtype=bool)
        for _ in range(min(self.iterations, BAND_ROUNDS)):
            count = xp.maximum(keep.sum(axis=1), 1)
            mean = xp.where(keep, sample, 0.0).sum(axis=1) / count
            deviation = sample - mean[:, None]
            sigma = xp.sqrt(xp.where(keep, deviation * deviation, 0.0).sum(axis=1) / count)
            keep = xp.abs(deviation) <= self.nsigma * sigma[:, None]
        width = max(self.nsigma - BAND_MARGIN, 0.5 * self.nsigma) * sigma
        centre = xp.where(self.counts > 0, sample[:, SAMPLES_PER_BIN // 2], 0.0)  # empty: 0
        return centre.astype(xp.float32), xp.where(self.banded, width, -1.0).astype(xp.float32)

    def _split(self, flat: Array, centre: Array, width: Array) -> _Split:
        """Walk the layout strip by strip: collect the tail, sum the core's offsets."""
        xp = self.xp
        centre_seg, width_seg = centre[self.segment_bins], width[self.segment_bins]
        # largest |offset| of a core pixel per bin; without reduceat, the band bounds it
        extent = xp.zeros_like(width) if hasattr(xp.maximum, "reduceat") else xp.maximum(width, 0)
        parts = [self._walk_strip(flat, strip, centre_seg, width_seg, extent) for strip in self.strips]
        index = xp.concatenate([tail for tail, _, _ in parts])
        bins = self.bins[index]
        core = (self.counts - xp.bincount(bins, minlength=self.nbins),
                *[xp.bincount(self.segment_bins, weights=xp.concatenate([p[i] for p in parts]),
                              minlength=self.nbins) for i in (1, 2)])
        return self._tail_split(flat, index, bins, centre, core, extent)

    def _walk_strip(self, flat: Array, strip: tuple, centre_seg: Array, width_seg: Array,
                    extent: Array) -> tuple:
        """(tail flat indices, core offset sums, core squared sums per segment) of a strip.

        Also raises ``extent`` to the strip's largest core |offset| per bin, in place.
        """
        xp = self.xp
        slot_lo, slot_hi, seg_lo, seg_hi, starts = strip
        index = self.layout[slot_lo:slot_hi]
        offset = xp.take(flat, index)
        offset -= self._expand(centre_seg, strip)
        scratch = xp.abs(offset)
        tail = xp.flatnonzero(scratch > self._expand(width_seg, strip))
        offset[tail] = 0.0  # leaves the core offsets
        if hasattr(xp.maximum, "reduceat"):
            scratch[tail] = 0.0
            bins = self.segment_bins[seg_lo:seg_hi]  # each bin once per strip
            extent[bins] = xp.maximum(extent[bins], xp.maximum.reduceat(scratch, starts))
        first = _segment_sums(xp, offset, starts)
        return index[tail], first, _segment_sums(xp, xp.multiply(offset, offset, out=scratch), starts)

    def _expand(self, per_segment: Array, strip: tuple) -> Array:
        """One value per layout slot of ``strip`` from one value per segment."""
        slot_lo, slot_hi, seg_lo, seg_hi, _ = strip
        if self.slot_segment is None:
            return self.xp.repeat(per_segment[seg_lo:seg_hi], self.segment_sizes[seg_lo:seg_hi])
        return per_segment[self.slot_segment[slot_lo:slot_hi]]

    def _tail_split(self, flat: Array, index: Array, bins: Array, centre: Array, core: tuple,
                    extent: Array) -> _Split:
        """A :class:`_Split` of these tail pixels; their offsets are exact (float64)."""
        values = flat[index]
        offset = values.astype(self.xp.float64) - centre.astype(self.xp.float64)[bins]
        return _Split(index, bins, values, offset, core, extent)

    def _all_pixels(self, flat: Array, bins: Array, centre: Array) -> _Split:
        """A split of every pixel of the selected ``bins`` (boolean per bin), without a core."""
        xp = self.xp
        edges, chosen = self.bin_edges, xp.flatnonzero(bins).tolist()
        index = xp.concatenate([self.bin_pixels[edges[b]:edges[b + 1]] for b in chosen])
        no_core = (xp.zeros(self.nbins),) * 3
        return self._tail_split(flat, index, self.bins[index], centre, no_core, xp.zeros(self.nbins))

    @staticmethod
    def _drop_bins(split: _Split, bins: Array) -> _Split:
        """``split`` without the tail pixels of the selected ``bins`` (boolean per bin)."""
        stay = ~bins[split.bins]
        return _Split(split.index[stay], split.bins[stay], split.values[stay], split.offset[stay],
                      split.core, split.extent)

    def _clip(self, split: _Split, centre: Array, width: Array):
        """Clip rounds over core + tail; flag bins whose bounds cut into their core pixels."""
        xp = self.xp
        keep = xp.ones(split.index.shape, dtype=bool)
        failed = xp.zeros(self.nbins, dtype=bool)
        for round_ in range(self.iterations):
            kept = _moments(xp, split.bins[keep], split.offset[keep], self.nbins)
            moments = [c + k for c, k in zip(split.core, kept)]
            mean, sigma = _mean_sigma(xp, *moments, shift=centre.astype(xp.float64))
            mean_offset = mean - centre
            reach = self.nsigma * sigma
            # the core's float32 sums are exact enough while the centre is within 2 sigma
            failed |= xp.abs(mean_offset) > 2.0 * sigma
            if round_ + 1 < self.iterations:  # the core must sit inside the next bounds
                failed |= xp.abs(mean_offset) + split.extent > reach
                keep = xp.abs(split.values - mean[split.bins]) <= reach[split.bins]
        failed |= self._threshold(mean, sigma) < centre + split.extent
        return mean, sigma, failed & (width >= 0)

    def _threshold(self, mean: Array, sigma: Array) -> Array:
        xp = self.xp
        return xp.maximum(mean + self.nsigma * sigma, xp.float32(self.adc_threshold))
