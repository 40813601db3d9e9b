"""Serial femtosecond crystallography frames: misses, hits, weak hits and multi-lattice hits.

Frame ``i`` of a run depends only on ``(seed, i)``: its kind, crystal orientation(s),
crystal strength and pulse energy come from ``default_rng([seed, i])``, its background
photons from ``default_rng([seed, i, 1])`` and its spot photons from ``[seed, i, 2]``, so
any subset of frames can be regenerated.
The detector (panels, mask, bad pixels) and the crystal's structure factors depend on
the seed alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
from scipy.special import erf

from ..compression import COMPRESSION_CHOICES as COMPRESSIONS
from ..errors import ConfigError
from . import artefacts
from .detector import DetectorLayout, default_pixel_size, make_detector_layout, parse_detector_size
from .lattice import (
    UNIT_CELLS,
    PartialityModel,
    excited_reflections,
    oriented_reciprocal_basis,
    project_to_detector,
    random_rotation,
    scattering_polarisation,
    wilson_intensities,
)

KIND_NAMES = ("miss", "hit", "weak", "multi")
MISS, HIT, WEAK, MULTI = range(4)
VISIBLE_SNR = 5.0  #: a spot is visible when S / sqrt(S + B) >= VISIBLE_SNR
MIN_TRUTH_PHOTONS = 1.0  #: spots with fewer expected photons are rendered but not listed
MIN_RENDER_PHOTONS = 0.2  #: fainter spots are left out of the image
PATCH_HALF = 3  #: spots are rendered on (2*PATCH_HALF + 1)^2 pixel patches
SPOT_FIELDS = {
    "fs": np.float32,
    "ss": np.float32,
    "photons": np.float32,
    "visible": bool,
    "d_A": np.float32,
    "lattice": np.int8,
}


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulated run (with ``seed``, every frame is reproducible)."""

    n_frames: int = 100
    hit_fraction: float = 0.1  #: fraction of frames with a crystal (hit, weak or multi)
    weak_fraction: float = 0.2  #: fraction of those crystal frames that are weak
    multi_fraction: float = 0.2  #: fraction of those crystal frames with 2-3 lattices
    detector: str = "1M"  #: 1M (1024x1024), 4M (2048x2048) or SSxFS
    pixel_size_m: Optional[float] = None  #: metres; None = 75 um, binned below 1024 px
    distance_m: float = 0.1
    wavelength_A: float = 1.0
    beam_center_fs: Optional[float] = None  #: pixels; None = near the frame centre
    beam_center_ss: Optional[float] = None
    background: float = 1.0  #: scale of air scatter + water ring
    spot_sigma_px: float = 0.75  #: rms width of the Gaussian spot profile
    crystal: str = "lysozyme"  #: a key of UNIT_CELLS
    b_factor: float = 25.0  #: Wilson B (Angstrom^2): intensity ~ exp(-B / (2 d^2))
    mosaicity_deg: float = 0.05
    bandwidth: float = 0.002  #: relative rms spread of the photon energy
    domain_size_um: float = 0.5
    seed: int = 0
    compression: str = "bitshuffle-lz4"  #: bitshuffle-lz4 | zstd | gzip | none
    dtype: str = "uint16"  #: stored pixel type: uint16 (counts saturate at 65535, like 16-bit detectors) | int32
    artefact_fraction: float = 0.0  #: fraction of misses with a non-crystal artefact (see .artefacts)

    def __post_init__(self) -> None:
        if self.pixel_size_m is None:
            object.__setattr__(self, "pixel_size_m", default_pixel_size(parse_detector_size(self.detector)))

    def validate(self) -> "SimulationConfig":
        """Return self, or raise ConfigError naming the bad value and the valid range."""
        parse_detector_size(self.detector)
        if self.n_frames < 1:
            raise ConfigError("n_frames must be >= 1")
        for name in ("hit_fraction", "weak_fraction", "multi_fraction", "artefact_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} = {getattr(self, name)} must be between 0 and 1")
        if self.weak_fraction + self.multi_fraction > 1.0:
            raise ConfigError("weak_fraction + multi_fraction must be <= 1 (they are fractions of the hits)")
        positive = ("pixel_size_m", "distance_m", "wavelength_A", "spot_sigma_px", "domain_size_um")
        for name in positive:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.background < 0 or self.b_factor < 0 or self.mosaicity_deg < 0 or self.bandwidth < 0:
            raise ConfigError("background, b_factor, mosaicity_deg and bandwidth must be >= 0")
        if self.crystal not in UNIT_CELLS:
            raise ConfigError(f"crystal {self.crystal!r} is not one of {', '.join(UNIT_CELLS)}")
        if self.compression not in COMPRESSIONS:
            raise ConfigError(f"compression {self.compression!r} is not one of {', '.join(COMPRESSIONS)}")
        if self.seed < 0:
            raise ConfigError("seed must be >= 0")
        if self.dtype not in ("uint16", "int32"):
            raise ConfigError(f"dtype {self.dtype!r} is not one of uint16, int32")
        return self

    @property
    def shape(self) -> Tuple[int, int]:
        """Frame shape (ss, fs)."""
        return parse_detector_size(self.detector)

    def partiality_model(self) -> PartialityModel:
        """The excitation-error width model of this crystal and beam."""
        return PartialityModel(self.domain_size_um * 1e4, np.radians(self.mosaicity_deg), self.bandwidth)

    def to_json(self) -> str:
        """The config as JSON text (round-trips through :meth:`from_json`).

        ``artefact_fraction`` is left out when 0, so runs without artefacts are written
        exactly as before the option existed.
        """
        fields = dataclasses.asdict(self)
        if not fields["artefact_fraction"]:
            del fields["artefact_fraction"]
        return json.dumps(fields, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SimulationConfig":
        """Rebuild a config written by :meth:`to_json`."""
        return cls(**json.loads(text))


@dataclass(frozen=True)
class RenderedFrame:
    """One simulated frame with its ground truth."""

    frame: np.ndarray  #: int32 photon counts, or float32 expected photons without noise
    kind: int  #: index into KIND_NAMES
    spots: Dict[str, np.ndarray]  #: SPOT_FIELDS plus ``hkl`` (n, 3) int16
    bases: np.ndarray  #: (n_lattices, 3, 3) lab-frame reciprocal bases, rows a*, b*, c*
    artefact: str = ""  #: non-crystal artefact on a miss (a name in artefacts.ARTEFACT_NAMES), "" for none


def simulate_frame(
    config: SimulationConfig, index: int, layout: Optional[DetectorLayout] = None, noise: bool = True
) -> Tuple[np.ndarray, int, Dict[str, np.ndarray]]:
    """Frame ``index`` of the run: ``(frame, kind, spots)`` (see :func:`render_frame`)."""
    rendered = render_frame(config, index, layout, noise)
    return rendered.frame, rendered.kind, rendered.spots


def render_frame(
    config: SimulationConfig, index: int, layout: Optional[DetectorLayout] = None, noise: bool = True
) -> RenderedFrame:
    """Render frame ``index``: Poisson counts (int32), or expected photons if not ``noise``.

    Spot ``visible`` means ``S / sqrt(S + B) >= 5``, with S the spot's expected photons and
    B the expected background photons in the 3x3 pixels around it; spots whose centre
    pixel is masked (gaps, beamstop, bad pixels) are never visible. Spots are listed when
    S >= MIN_TRUTH_PHOTONS; their fs/ss is where the diffracted ray meets the detector,
    which is the centroid of the rendered profile (pixel (0, 0) centre = 0.0).
    A fraction ``config.artefact_fraction`` of misses gets a non-crystal artefact (see
    :mod:`.artefacts`); it is drawn under the hot pixels and named in ``artefact``.
    """
    layout = layout or make_detector_layout(config.validate())
    rng = np.random.default_rng([config.seed, index])
    kind = choose_kind(config, rng)
    pulse = rng.uniform(0.8, 1.2)  # shot-to-shot pulse energy
    bg_scale = config.background * pulse
    spots, bases = _crystal_spots(config, layout, rng, kind, bg_scale)
    drawn = spots["photons"] >= MIN_RENDER_PHOTONS
    fs, ss, photons = spots["fs"][drawn], spots["ss"][drawn], spots["photons"][drawn]
    pixels, expected = _spot_patches(layout, fs, ss, photons, config.spot_sigma_px)
    if noise:
        frame = layout.photons.sample(bg_scale, np.random.default_rng([config.seed, index, 1]))
        _add_into(frame, pixels, np.random.default_rng([config.seed, index, 2]).poisson(expected))
    else:
        frame = layout.background * np.float32(bg_scale)
        _add_into(frame, pixels, expected)
    artefact = artefacts.add_artefact(frame, config, layout, index, noise, bg_scale) if kind == MISS else ""
    frame.reshape(-1)[layout.hot_index] = layout.hot_value
    listed = {name: values[spots["photons"] >= MIN_TRUTH_PHOTONS] for name, values in spots.items()}
    return RenderedFrame(frame, kind, listed, bases, artefact)


def choose_kind(config: SimulationConfig, rng: np.random.Generator) -> int:
    """Draw a frame kind: miss with 1 - hit_fraction, else weak / multi / hit."""
    if rng.random() >= config.hit_fraction:
        return MISS
    u = rng.random()
    if u < config.weak_fraction:
        return WEAK
    return MULTI if u < config.weak_fraction + config.multi_fraction else HIT


def visibility_threshold(background3: np.ndarray) -> np.ndarray:
    """Smallest expected spot photons S with S / sqrt(S + B) >= VISIBLE_SNR."""
    k2 = VISIBLE_SNR**2
    return (k2 + np.sqrt(k2 * k2 + 4.0 * k2 * np.asarray(background3, dtype=np.float64))) / 2.0


def _visible_targets(kind: int, rng: np.random.Generator) -> list:
    """How many spots each lattice of the frame shows above the visibility threshold."""
    if kind == MISS:
        return []
    if kind == WEAK:
        return [int(rng.integers(6, 16))]
    if kind == HIT:
        return [int(np.exp(rng.uniform(np.log(25), np.log(250))))]
    return [int(np.exp(rng.uniform(np.log(15), np.log(150)))) for _ in range(rng.integers(2, 4))]


def _crystal_spots(config, layout, rng, kind, bg_scale):
    """Spots and reciprocal bases of the frame's lattices, each lattice with its strength."""
    parts, bases = [], []
    for lattice, target in enumerate(_visible_targets(kind, rng)):
        spots, basis = _lattice_spots(config, layout, rng)
        threshold = visibility_threshold(layout.background3.reshape(-1)[spots.pop("pixel")] * bg_scale)
        eligible = spots["visible"]
        strength = _strength_for(target, spots["photons"][eligible], threshold[eligible])
        spots["photons"] = (spots["photons"] * strength).astype(np.float32)
        spots["visible"] = eligible & (spots["photons"] >= threshold)
        spots["lattice"] = np.full(spots["fs"].size, lattice, np.int8)
        parts.append(spots)
        bases.append(basis)
    if not parts:
        empty = {name: np.zeros(0, dtype) for name, dtype in SPOT_FIELDS.items()}
        return dict(empty, hkl=np.zeros((0, 3), np.int16)), np.zeros((0, 3, 3))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}, np.stack(bases)


def _lattice_spots(config, layout, rng):
    """One randomly oriented lattice: spot positions and photons at unit crystal strength.

    ``visible`` holds only whether the centre pixel is good; ``pixel`` is its flat index.
    """
    cell = UNIT_CELLS[config.crystal]
    basis = oriented_reciprocal_basis(cell, random_rotation(rng))
    refl = excited_reflections(cell, basis, config.wavelength_A, layout.d_min_A, config.partiality_model())
    fs, ss, forward = project_to_detector(
        refl.s1, layout.distance_m, layout.pixel_size_m, layout.beam_center_fs, layout.beam_center_ss
    )
    n_ss, n_fs = layout.shape
    on = forward & (fs > -0.5) & (fs < n_fs - 0.5) & (ss > -0.5) & (ss < n_ss - 0.5)
    pixel = np.rint(ss[on]).astype(np.int64) * n_fs + np.rint(fs[on]).astype(np.int64)
    falloff = np.exp(-config.b_factor / (2.0 * refl.d_A[on] ** 2))
    photons = wilson_intensities(refl.hkl[on], config.seed) * falloff * refl.partiality[on]
    photons *= scattering_polarisation(refl.s1[on])
    spots = {
        "fs": fs[on].astype(np.float32),
        "ss": ss[on].astype(np.float32),
        "photons": photons,
        "visible": layout.mask.reshape(-1)[pixel] == 1,
        "d_A": refl.d_A[on].astype(np.float32),
        "hkl": refl.hkl[on].astype(np.int16),
        "pixel": pixel,
    }
    return spots, basis


def _strength_for(target: int, photons: np.ndarray, threshold: np.ndarray) -> float:
    """Crystal strength that makes exactly ``target`` spots (or all there are) visible.

    Photons scale with crystal volume, so a frame's strength is a free factor; choosing it
    from the wanted number of visible spots gives each kind its spot count while the
    relative intensities stay physical (Wilson statistics, B factor, partiality).
    """
    usable = photons > 0
    needed = np.sort(threshold[usable] / photons[usable])
    if needed.size == 0:
        return 1.0
    return float(needed[min(target, needed.size) - 1]) * (1.0 + 1e-6)


def _spot_patches(layout: DetectorLayout, fs, ss, photons, sigma):
    """Expected photons of Gaussian spots integrated over pixels: (flat index, float32 values).

    The profile is separable, so each patch is an outer product of erf differences along
    ss and fs, normalised to the spot's photons; gaps, dead pixels and the beamstop
    shadow scale it by their transmission and pixels outside the frame are dropped.
    """
    offsets = np.arange(-PATCH_HALF, PATCH_HALF + 1)
    weights, pixels = [], []
    for centre in (ss, fs):
        nearest = np.rint(centre).astype(np.int64)
        edges = (nearest[:, None] + offsets[None, :] - centre[:, None]).astype(np.float32)
        bounds = np.concatenate([edges - 0.5, edges[:, -1:] + 0.5], axis=1)
        cdf = erf(bounds / np.float32(sigma * np.sqrt(2.0)))
        w = np.diff(cdf, axis=1)
        weights.append(w / w.sum(axis=1, keepdims=True))
        pixels.append(nearest[:, None] + offsets[None, :])
    values = photons[:, None, None] * weights[0][:, :, None] * weights[1][:, None, :]
    ss_pix, fs_pix = np.broadcast_arrays(pixels[0][:, :, None], pixels[1][:, None, :])
    n_ss, n_fs = layout.shape
    inside = (ss_pix >= 0) & (ss_pix < n_ss) & (fs_pix >= 0) & (fs_pix < n_fs)
    flat = ss_pix[inside] * n_fs + fs_pix[inside]
    return flat, (values[inside] * layout.transmission.reshape(-1)[flat]).astype(np.float32)


def _add_into(frame: np.ndarray, flat: np.ndarray, values: np.ndarray) -> None:
    """``frame.flat[flat] += values`` with repeated indices summed."""
    np.add.at(frame.reshape(-1), flat, values.astype(frame.dtype))
