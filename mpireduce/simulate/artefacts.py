"""Non-crystal artefacts on simulated misses: what a peak finder reports that is not a crystal.

Real misses are not empty frames. A fraction ``artefact_fraction`` of the misses of a run
gets one artefact, drawn from the stream ``default_rng([seed, i, ARTEFACT_STREAM])`` of
frame ``i`` (photon noise from ``[seed, i, ARTEFACT_STREAM, 1]``), so frame ``i`` still
depends on ``(seed, i)`` only and frames without an artefact are unchanged. The kinds:

``ice_ring``
    Powder diffraction of ice or salt crystallites in the buffer: a few to a hundred and
    fifty sharp grains on one narrow ring, all around the beam, at a d-spacing of a real
    powder line (hexagonal / cubic ice, NaCl, ammonium sulfate, KH2PO4, gypsum) that lies
    on the detector, sometimes over a faint continuous ring.
``jet_streak``
    Scattering from the liquid jet's surface: a line through (or a few pixels beside) the
    beam centre, perpendicular to the jet, broken into speckles, on both sides of the
    beam (two opposite azimuthal sectors), brighter towards the centre.
``cosmic``
    Cosmic-ray muons and radioactive decays in the sensor: one to three zingers (one or
    two bright pixels) or short tracks of a few pixels. They are not X-rays, so the
    beamstop does not shadow them (gaps and dead pixels still read nothing).
``parasitic``
    Scattering from a slit or aperture edge: a few bright, slightly blurred spots at very
    low resolution just outside the beamstop, often lined up along a slit blade (the
    +-fs or +-ss direction).

Strengths are set in units of the visibility threshold of the frame's background at the
artefact (the same ``S / sqrt(S + B) >= 5`` that defines visible Bragg spots), so an
artefact looks alike on any detector, wavelength and background level.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

import numpy as np

from . import sfx
from .detector import BEAMSTOP_RADIUS_M, DetectorLayout

ARTEFACT_NAMES = ("ice_ring", "jet_streak", "cosmic", "parasitic")
ARTEFACT_STREAM = 3  #: third entry of the rng seed of the artefact draws of a frame

#: Strong powder lines (Angstrom) of ice and salts seen in SFX buffers.
POWDER_LINES_A = {
    "hexagonal ice": (3.90, 3.67, 3.44, 2.67, 2.25),
    "cubic ice": (3.67, 2.25, 1.92),
    "NaCl": (3.26, 2.82, 1.99),
    "ammonium sulfate": (4.39, 4.33, 3.05),
    "KH2PO4": (5.06, 3.72, 2.96),
    "gypsum": (7.56, 4.27, 3.06),
}

Pixels = Tuple[np.ndarray, np.ndarray]  #: flat pixel indices and their values (may repeat; summed)


def add_artefact(frame: np.ndarray, config, layout: DetectorLayout, index: int, noise: bool,
                 bg_scale: float) -> str:
    """Maybe draw an artefact on miss ``index`` (in place); return its name, ``""`` for none.

    ``frame`` is the rendered miss (int32 counts if ``noise``, else float32 expected
    photons) and ``bg_scale`` its background scale (background x pulse energy).
    """
    if config.artefact_fraction <= 0.0:
        return ""
    rng = np.random.default_rng([config.seed, index, ARTEFACT_STREAM])
    if rng.random() >= config.artefact_fraction:
        return ""
    name = ARTEFACT_NAMES[int(rng.integers(len(ARTEFACT_NAMES)))]
    if name == "cosmic":  # charge deposited in the sensor, not photons: no Poisson draw
        flat, values = cosmic_deposits(layout, rng)
    else:
        flat, values = RENDERERS[name](layout, rng, bg_scale)
        if noise:
            values = np.random.default_rng([config.seed, index, ARTEFACT_STREAM, 1]).poisson(values)
    sfx._add_into(frame, flat, values if noise else values.astype(np.float32))
    return name


def ice_ring(layout: DetectorLayout, rng: np.random.Generator, bg_scale: float) -> Pixels:
    """Grains of one powder line: 8-150 sharp spots on one ring, uniform in azimuth.

    Half the time a faint continuous ring (unresolved powder) lies under the grains.
    """
    radius = _ring_radius(layout, rng)
    n = int(np.exp(rng.uniform(np.log(8), np.log(150))))
    azimuth = rng.uniform(-np.pi, np.pi, n)
    r = radius + rng.normal(0.0, rng.uniform(0.2, 1.0), n)  # ring width: strain and crystallite size
    fs, ss = layout.beam_center_fs + r * np.cos(azimuth), layout.beam_center_ss + r * np.sin(azimuth)
    strength = np.exp(rng.uniform(np.log(1.0), np.log(8.0)))
    photons = strength * rng.exponential(1.0, n) * _threshold(layout, fs, ss, bg_scale)
    parts = [_spots(layout, fs, ss, photons, rng.uniform(0.6, 1.2))]
    if rng.random() < 0.5:
        r_px = _radius_map(layout)
        profile = np.exp(-0.5 * ((r_px - radius) / rng.uniform(0.7, 1.5)) ** 2)
        parts.append(_smooth(layout, profile, rng.uniform(0.2, 1.0) * bg_scale * layout.background))
    return _join(parts)


def jet_streak(layout: DetectorLayout, rng: np.random.Generator, bg_scale: float) -> Pixels:
    """Speckles along a line through (or beside) the beam, on both sides, fading outwards.

    Half the time the speckles sit on a faint continuous line (the unbroken streak).
    """
    direction = rng.uniform(0.0, np.pi)
    along = np.array([np.cos(direction), np.sin(direction)])
    across = np.array([-along[1], along[0]])
    offset = rng.uniform(-6.0, 6.0)  # px: the streak misses the beam centre by a little
    r_min = 1.3 * _beamstop_px(layout)
    r_max = max(r_min * 2.0, rng.uniform(0.3, 0.9) * _edge_px(layout))
    strength, fade = np.exp(rng.uniform(np.log(1.5), np.log(10.0))), rng.uniform(0.0, 1.0)
    parts = []
    for side, share in ((1.0, 1.0), (-1.0, rng.uniform(0.3, 1.0))):  # one side is often weaker
        n = int(np.exp(rng.uniform(np.log(4), np.log(45))))
        t = side * r_min * (r_max / r_min) ** rng.random(n)  # denser near the beam
        jitter = offset + rng.normal(0.0, 0.5, n)
        fs = layout.beam_center_fs + t * along[0] + jitter * across[0]
        ss = layout.beam_center_ss + t * along[1] + jitter * across[1]
        photons = share * strength * (r_min / np.abs(t)) ** fade * rng.exponential(1.0, n)
        parts.append(_spots(layout, fs, ss, photons * _threshold(layout, fs, ss, bg_scale), 1.0))
    if rng.random() < 0.5:
        ss_px, fs_px = np.indices(layout.shape, dtype=np.float64)
        dx, dy = fs_px - layout.beam_center_fs, ss_px - layout.beam_center_ss
        distance = dx * across[0] + dy * across[1] - offset
        profile = np.exp(-0.5 * distance**2) * np.minimum(1.0, r_min / np.maximum(np.hypot(dx, dy), 1.0)) ** fade
        parts.append(_smooth(layout, profile, rng.uniform(0.3, 1.5) * bg_scale * layout.background))
    return _join(parts)


def parasitic(layout: DetectorLayout, rng: np.random.Generator, bg_scale: float) -> Pixels:
    """3-20 blurred bright spots just outside the beamstop, often along a slit blade."""
    n = int(rng.integers(3, 21))
    r = _beamstop_px(layout) * rng.uniform(1.3, 6.0, n)
    if rng.random() < 0.6:  # flare along one slit blade: +-fs or +-ss, both sides
        axis = rng.integers(2) * np.pi / 2
        azimuth = axis + rng.integers(2, size=n) * np.pi + rng.normal(0.0, 0.08, n)
    else:
        azimuth = rng.uniform(-np.pi, np.pi, n)
    fs, ss = layout.beam_center_fs + r * np.cos(azimuth), layout.beam_center_ss + r * np.sin(azimuth)
    strength = np.exp(rng.uniform(np.log(2.0), np.log(30.0)))
    photons = strength * rng.exponential(1.0, n) * _threshold(layout, fs, ss, bg_scale)
    return _spots(layout, fs, ss, photons, rng.uniform(0.9, 1.8))


def cosmic_deposits(layout: DetectorLayout, rng: np.random.Generator) -> Pixels:
    """1-3 zingers or short tracks: (flat pixel index, int64 deposit in photon equivalents).

    A zinger is one pixel (sometimes with a neighbour sharing charge) of 20-3000 photon
    equivalents; a track is a straight run of 3-15 pixels of 5-100 each (Landau-like
    spread), a muon crossing the sensor at a slant.
    """
    n_ss, n_fs = layout.shape
    flat, values = [], []
    for _ in range(int(rng.integers(1, 4))):
        ss0, fs0 = rng.uniform(0, n_ss), rng.uniform(0, n_fs)
        if rng.random() < 0.5:
            length, energy = int(rng.integers(1, 3)), np.exp(rng.uniform(np.log(20), np.log(3000)))
        else:
            length, energy = int(rng.integers(3, 16)), np.exp(rng.uniform(np.log(5), np.log(100)))
        angle = rng.uniform(0, 2 * np.pi)
        step = np.arange(length)
        ss = np.rint(ss0 + step * np.sin(angle)).astype(np.int64)
        fs = np.rint(fs0 + step * np.cos(angle)).astype(np.int64)
        inside = (ss >= 0) & (ss < n_ss) & (fs >= 0) & (fs < n_fs)
        flat.append(ss[inside] * n_fs + fs[inside])
        values.append(energy * rng.lognormal(0.0, 0.4, int(inside.sum())))
    flat = np.concatenate(flat)
    sensor = layout.transmission.reshape(-1)[flat] > 0  # gaps and dead pixels see nothing
    return flat[sensor], np.rint(np.concatenate(values)[sensor]).astype(np.int64)


RENDERERS: Dict[str, Callable[[DetectorLayout, np.random.Generator, float], Pixels]] = {
    "ice_ring": ice_ring, "jet_streak": jet_streak, "parasitic": parasitic}


def _spots(layout: DetectorLayout, fs, ss, photons, sigma: float) -> Pixels:
    """Gaussian spots on the detector (pixel-integrated, shadowed by gaps and beamstop)."""
    n_ss, n_fs = layout.shape
    on = (fs > -0.5) & (fs < n_fs - 0.5) & (ss > -0.5) & (ss < n_ss - 0.5)
    f32 = [np.asarray(a[on], np.float32) for a in (fs, ss, photons)]
    flat, values = sfx._spot_patches(layout, *f32, float(sigma))
    return flat, values.astype(np.float64)


def _smooth(layout: DetectorLayout, profile: np.ndarray, level: np.ndarray) -> Pixels:
    """``profile * level`` where the profile is not negligible, shadowed by gaps and beamstop."""
    flat = np.flatnonzero(profile.reshape(-1) > 1e-3)
    values = profile.reshape(-1)[flat] * np.asarray(level, np.float64).reshape(-1)[flat]
    return flat, values * layout.transmission.reshape(-1)[flat]


def _join(parts) -> Pixels:
    """Concatenate (flat, values) pairs."""
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _radius_map(layout: DetectorLayout) -> np.ndarray:
    """Distance of every pixel from the beam centre (px)."""
    ss, fs = np.indices(layout.shape, dtype=np.float64)
    return np.hypot(fs - layout.beam_center_fs, ss - layout.beam_center_ss)


def _threshold(layout: DetectorLayout, fs: np.ndarray, ss: np.ndarray, bg_scale: float) -> np.ndarray:
    """Visibility threshold (expected photons) of a spot at each position (clipped to the frame)."""
    n_ss, n_fs = layout.shape
    pixel = np.clip(np.rint(ss), 0, n_ss - 1).astype(np.int64) * n_fs + np.clip(np.rint(fs), 0, n_fs - 1).astype(
        np.int64)
    return sfx.visibility_threshold(layout.background3.reshape(-1)[pixel] * bg_scale)


def _beamstop_px(layout: DetectorLayout) -> float:
    """Beamstop shadow radius in pixels (as drawn by the detector layout)."""
    return max(3.0, BEAMSTOP_RADIUS_M / layout.pixel_size_m)


def _edge_px(layout: DetectorLayout) -> float:
    """Distance (px) from the beam to the nearest frame edge."""
    n_ss, n_fs = layout.shape
    return float(min(layout.beam_center_fs, n_fs - 1 - layout.beam_center_fs,
                     layout.beam_center_ss, n_ss - 1 - layout.beam_center_ss))


def _ring_radius(layout: DetectorLayout, rng: np.random.Generator) -> float:
    """Radius (px) of a powder line that lies on the detector, beyond the beamstop.

    Lines whose ring is at least half on the frame are candidates; without any (a
    detector that sees only very low resolution), a radius within the frame is drawn.
    """
    lines = np.array(sorted({d for ds in POWDER_LINES_A.values() for d in ds}))
    two_theta = 2.0 * np.arcsin(np.minimum(layout.wavelength_A / (2.0 * lines), 1.0))
    radius = layout.distance_m * np.tan(two_theta) / layout.pixel_size_m
    ok = (layout.wavelength_A < 2.0 * lines) & (radius > 3.0 * _beamstop_px(layout)) & (radius < 1.1 * _edge_px(layout))
    if not ok.any():
        return float(rng.uniform(3.0 * _beamstop_px(layout), _edge_px(layout)))
    return float(rng.choice(radius[ok]))
