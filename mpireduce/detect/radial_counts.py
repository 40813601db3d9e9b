"""Radial clipping of integer frames through per-bin value histograms (exact).

Detectors and the simulator give integer frames (photon counts, ADU). The clipping rule
of :mod:`.radial` tests a pixel only through its value, so one pass over the frame can
summarise every radius bin by a histogram of its values, and every clipping round then
runs on the small (nbins x slots) histogram instead of the pixels:

* a *window* of consecutive integer values ``lo .. lo + slots - 2`` is chosen per frame
  from a sample of its pixels (their low end and a high quantile); frames too spread out
  for a window of ``MAX_SLOTS`` go to :class:`.radial.RadialProfile` as float32;
* one ``bincount`` over ``bin * slots + slot`` counts the window values per bin; the last
  slot collects the *outside* pixels (below or above the window), which are few and kept
  individually, as are the *candidates*: pixels above ``adc_threshold``, which every
  threshold is at least, and so hold the outliers. When most pixels share one value
  (photon counting: zero), only the other pixels are counted and that value's count per
  bin is what remains of the bin's pixels;
* cumulative count, sum and sum of squares along each bin's value axis give the moments
  of any interval of window values in O(1); a round's bounds select such an interval
  (found with the same float32 test as :func:`.radial.clipped_stats`), the outside pixels
  are tested one by one, and their moments are added;
* pixels above threshold are those of the candidates, found in order.

Sums of integers are exact in float64 (below 2**53), so the statistics equal plain
clipping's bit for bit. Values are taken as float32, as the float path sees them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Tuple

from .radial import RadialProfile, RadialResult, _mean_sigma, _moments

Array = Any  # an xp array

#: pixels per chunk of the histogram pass on the CPU (its temporaries stay in cache)
CHUNK_PIXELS = 1 << 17
#: pixels sampled (evenly spaced) to choose the window
SAMPLE_PIXELS = 1 << 16
#: the window holds the sampled values up to this quantile (the rest are outside pixels)
WINDOW_QUANTILE = 0.999
#: above this share of one value in the sample, only the other pixels are counted
SPARSE_SHARE = 0.5
#: fewest and most slots of a window (the last slot is the outside slot)
MIN_SLOTS, MAX_SLOTS = 8, 256
#: slot counts are rounded up to a multiple of this, so one run keeps one window size
SLOT_STEP = 8
#: interleaved copies of the histogram (neighbouring pixels, often of one bin and value,
#: then increment different counters, which bincount does faster)
WAYS = 4


@dataclass(frozen=True)
class _Window:
    """The integer values counted per bin: ``lo .. lo + slots - 2`` (and an outside slot)."""

    lo: int
    slots: int
    common: int  #: slot of the value not counted pixel by pixel (-1: all are counted)
    lowest: int  #: first slot of the candidates (slots - 1: outside pixels only)
    values: Array  #: (slots - 1,) float32 value of each window slot


@dataclass(frozen=True)
class _Counts:
    """One frame summarised: cumulative moments per bin, and the candidate pixels."""

    cumulative: Array  #: (3, nbins, slots) cumulative count, sum, sum of squares per bin
    index: Array  #: flat index of each unmasked candidate pixel
    bins: Array  #: its radius bin
    level: Array  #: its value (float32)
    outside: Array  #: whether its value lies outside the window (not in the histogram)


def is_integer_frame(xp, flat: Array) -> bool:
    """True for the integer dtypes that :class:`CountProfile` takes."""
    return xp.issubdtype(flat.dtype, xp.integer)


class CountProfile:
    """Exact radial statistics of integer frames, for the bins of a :class:`RadialProfile`."""

    def __init__(self, profile: RadialProfile, backend_name: str = "numpy") -> None:
        self.profile, self.xp = profile, profile.xp
        size = int(profile.bins.size)
        self.chunk = size if backend_name == "cupy" else CHUNK_PIXELS
        self.stride = max(1, size // SAMPLE_PIXELS) | 1  # odd: the sample is not a column grid
        self._keys = (0, None)  #: (slots, histogram key base of every pixel), for the next frame

    def analyse(self, flat: Array) -> RadialResult:
        """Clipped statistics and outliers of a flattened integer frame."""
        window = self._window(flat)
        if window is None or self.profile.layout.size == 0:
            return self.profile.analyse(flat.astype(self.xp.float32))
        counts = self._histogram(flat, window)
        mean, sigma = self._clip(counts, window.values)
        threshold = self.profile._threshold(mean, sigma)
        return RadialResult(mean, sigma, threshold, self._outliers(counts, threshold))

    def _window(self, flat: Array):
        """The :class:`_Window` of this frame, from a sample; None when values spread too far."""
        xp = self.xp
        sample = flat[::self.stride].astype(xp.int64)
        lo = int(sample.min())
        share = xp.bincount(xp.minimum(sample - lo, MAX_SLOTS), minlength=MAX_SLOTS + 1)
        top = int(xp.searchsorted(xp.cumsum(share), WINDOW_QUANTILE * sample.size))
        slots = max(MIN_SLOTS, -(-(top + 2) // SLOT_STEP) * SLOT_STEP)  # lo..lo+top, outside
        if slots > min(MAX_SLOTS, 2 ** (8 * flat.dtype.itemsize - 1)):  # must fit the dtype
            return None
        values = (lo + xp.arange(slots - 1, dtype=xp.int64)).astype(xp.float32)
        lowest = int((values <= xp.float32(self.profile.adc_threshold)).sum())
        common = int(share[:slots - 1].argmax())
        sparse = float(share[common]) >= SPARSE_SHARE * sample.size and common < lowest
        return _Window(lo, slots, common if sparse else -1, lowest, values)

    def _key_base(self, slots: int) -> Array:
        """Per pixel (int32), where its bin's row starts in the (WAYS, nbins+1, slots) histogram."""
        if self._keys[0] != slots:
            xp, bins = self.xp, self.profile.bins
            way = xp.arange(bins.size, dtype=xp.int64) % WAYS
            self._keys = (slots, ((way * (self.profile.nbins + 1) + bins) * slots).astype(xp.int32))
        return self._keys[1]

    def _histogram(self, flat: Array, window: _Window) -> _Counts:
        """Count window values per bin, chunk by chunk; collect the candidate pixels."""
        xp, nbins, slots = self.xp, self.profile.nbins, window.slots
        base, size, chunk = self._key_base(slots), int(flat.size), self.chunk
        lo, common = (xp.asarray(window.lo + max(s, 0), dtype=flat.dtype) for s in (0, window.common))
        unsigned, signed = (xp.dtype(f"{kind}{flat.dtype.itemsize}") for kind in "ui")
        hist = xp.zeros(WAYS * (nbins + 1) * slots, dtype=xp.int64)
        found = []
        for start in range(0, size, chunk):
            part, keys, where = flat[start:start + chunk], base[start:start + chunk], None
            if window.common >= 0:  # count only the pixels of other values
                where = xp.flatnonzero(part != common)
                part, keys = xp.take(part, where), xp.take(keys, where)
            slot = (part - lo).view(unsigned)  # wraps: values below lo become huge
            xp.minimum(slot, slots - 1, out=slot)  # outside values: the last slot
            hist += xp.bincount(keys + slot.view(signed), minlength=hist.size)
            picked = xp.flatnonzero(slot >= window.lowest)
            found.append((picked if where is None else where[picked]) + start)
        rows = hist.reshape(WAYS, nbins + 1, slots).sum(axis=0)[:nbins]
        if window.common >= 0:  # the uncounted pixels: the rest of each bin
            rows[:, window.common] += self.profile.counts.astype(xp.int64) - rows.sum(axis=1)
        return self._candidates(flat, xp.concatenate(found), window, self._cumulate(rows, window.values))

    def _candidates(self, flat: Array, index: Array, window: _Window, cumulative: Array) -> _Counts:
        """:class:`_Counts` of the candidate pixels at ``index`` (masked ones dropped)."""
        bins = self.profile.bins[index]
        index, bins = index[bins < self.profile.nbins], bins[bins < self.profile.nbins]
        level = flat[index]
        outside = (level < window.lo) | (level > window.lo + window.slots - 2)
        return _Counts(cumulative, index, bins, level.astype(self.xp.float32), outside)

    def _cumulate(self, rows: Array, values: Array) -> Array:
        """Cumulative count, sum and sum of squares along each bin's window values."""
        xp = self.xp
        counts, weight = rows[:, :-1].astype(xp.float64), values.astype(xp.float64)
        cumulative = xp.zeros((3,) + rows.shape, dtype=xp.float64)
        for power in range(3):
            cumulative[power, :, 1:] = xp.cumsum(counts * weight ** power, axis=1)
        return cumulative

    def _clip(self, counts: _Counts, values: Array) -> Tuple[Array, Array]:
        """The clipping rounds of :func:`.radial.clipped_stats` on the histogram."""
        xp, profile = self.xp, self.profile
        bins, level = counts.bins[counts.outside], counts.level[counts.outside]
        first = xp.zeros(profile.nbins, dtype=xp.int64)
        end = xp.full(profile.nbins, values.size, dtype=xp.int64)
        keep = xp.ones(bins.size, dtype=bool)
        for round_ in range(profile.iterations):
            window = self._interval_moments(counts.cumulative, first, end)
            kept = _moments(xp, bins[keep], level[keep], profile.nbins)
            mean, sigma = _mean_sigma(xp, *[window[i] + kept[i] for i in range(3)])
            if round_ + 1 < profile.iterations:
                reach = profile.nsigma * sigma
                first, end = self._kept_slots(values, mean, reach)
                keep = xp.abs(level - mean[bins]) <= reach[bins]
        return mean, sigma

    def _interval_moments(self, cumulative: Array, first: Array, end: Array) -> Array:
        """(3, nbins) count, sum and sum of squares of window slots first..end-1 per bin."""
        rows = self.xp.arange(self.profile.nbins)
        return cumulative[:, rows, self.xp.maximum(end, first)] - cumulative[:, rows, first]

    @staticmethod
    def _kept_slots(values: Array, mean: Array, reach: Array) -> Tuple[Array, Array]:
        """Per bin, the window slots first..end-1 that pass ``|value - mean| <= reach``.

        The test is clipped_stats' own float32 test; it is monotone in the value, so the
        passing slots are one interval, found by counting the slots below and within it.
        """
        offset = values[None, :] - mean[:, None]  # float32, as per pixel
        first = (offset < -reach[:, None]).sum(axis=1)
        return first, (offset <= reach[:, None]).sum(axis=1)

    @staticmethod
    def _outliers(counts: _Counts, threshold: Array) -> Array:
        """Sorted flat indices of unmasked pixels above their bin's threshold.

        Every threshold is at least ``adc_threshold``, so the candidates hold them all.
        """
        return counts.index[counts.level > threshold[counts.bins]]
