"""Projected thickness of randomly oriented 3-D particles, for single-particle imaging (SPI).

In the small-angle (flat Ewald sphere) approximation the far-field pattern of a particle is
``|FT2(projected density)|^2``, so a particle only needs to be rendered as its projected
thickness ``t(x, y)`` (nm) along the beam. Every shape here is a union of convex bodies whose
chord along the beam is known in closed form:

* ellipsoids (sphere, ellipsoid, dumbbell, rod, droplet): a quadratic in ``z``;
* convex polyhedra (cube, octahedron, icosahedron): the intersection of half-spaces
  ``n . r <= d``, so the chord is ``min(upper bounds) - max(lower bounds)``.

Sizes are the diameter ``D`` (nm) of the sphere of the same volume, so all shapes of one
size scatter about the same number of photons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Tuple

import numpy as np

PHI = (1.0 + 5.0**0.5) / 2.0
#: half-space distance d / D of each polyhedron with the volume of a sphere of diameter D
CUBE_D = 0.5 * (np.pi / 6.0) ** (1.0 / 3.0)
OCTAHEDRON_D = 0.4228
ICOSAHEDRON_D = 0.4697


@dataclass(frozen=True)
class Grid:
    """A square real-space grid of ``n x n`` pixels of ``dx`` nm, origin at pixel ``n // 2``."""

    n: int
    dx: float

    def window(self, centre: Tuple[float, float], radius: float) -> Tuple[slice, slice, np.ndarray, np.ndarray]:
        """Row/column slices covering a disc, and the (y, x) nm offsets of their pixels from ``centre``."""
        spans = []
        for c in centre:
            lo = max(int(np.floor((c - radius) / self.dx)) + self.n // 2 - 1, 0)
            hi = min(int(np.ceil((c + radius) / self.dx)) + self.n // 2 + 2, self.n)
            spans.append((lo, max(hi, lo)))
        (y0, y1), (x0, x1) = spans
        y = (np.arange(y0, y1) - self.n // 2) * self.dx - centre[0]
        x = (np.arange(x0, x1) - self.n // 2) * self.dx - centre[1]
        return slice(y0, y1), slice(x0, x1), y[:, None], x[None, :]


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly distributed 3x3 rotation matrix (from a random unit quaternion)."""
    q = rng.normal(size=4)
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def ellipsoid_chord(semi_axes, rotation: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Chord length along z through an ellipsoid centred at (0, 0, 0), at offsets (y, x)."""
    a = rotation @ np.diag(1.0 / np.asarray(semi_axes, float) ** 2) @ rotation.T  # lab-frame quadric
    # rows/cols of ``a``: 0 = x, 1 = y, 2 = z;  a_zz t^2 + 2 b t + c <= 0
    b = a[0, 2] * x + a[1, 2] * y
    c = a[0, 0] * x * x + 2 * a[0, 1] * x * y + a[1, 1] * y * y - 1.0
    disc = b * b - a[2, 2] * c
    return 2.0 * np.sqrt(np.maximum(disc, 0.0)) / a[2, 2]


def polyhedron_chord(normals: np.ndarray, distance: float, rotation: np.ndarray,
                     y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Chord along z through the polyhedron ``{r : n_k . r <= distance}`` rotated by ``rotation``."""
    m = normals @ rotation.T  # lab-frame unit normals (F, 3)
    mz = np.where(np.abs(m[:, 2]) < 1e-9, 1e-9, m[:, 2])
    free = distance - (m[:, 0, None, None] * x[None] + m[:, 1, None, None] * y[None])
    bound = free / mz[:, None, None]
    up = mz > 0
    upper = bound[up].min(axis=0) if up.any() else np.full(bound.shape[1:], np.inf)
    lower = bound[~up].max(axis=0) if (~up).any() else np.full(bound.shape[1:], -np.inf)
    return np.maximum(upper - lower, 0.0)


def _unit(rows) -> np.ndarray:
    rows = np.asarray(rows, float)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _signs(vector) -> list:
    """All sign flips of the entries of ``vector``, without duplicates (zeros stay zero)."""
    flips = (1.0, -1.0)
    return sorted({(a * vector[0], b * vector[1], c * vector[2]) for a in flips for b in flips for c in flips})


CUBE_NORMALS = _unit([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])
OCTAHEDRON_NORMALS = _unit(_signs((1, 1, 1)))
#: face normals of the icosahedron = vertex directions of the dodecahedron
ICOSAHEDRON_NORMALS = _unit(
    _signs((1, 1, 1)) + _signs((0, 1 / PHI, PHI)) + _signs((1 / PHI, PHI, 0)) + _signs((PHI, 0, 1 / PHI)))


def _sphere(size, rng, rotation, y, x):
    return ellipsoid_chord((size / 2,) * 3, rotation, y, x)


def _ellipsoid(size, rng, rotation, y, x):
    ratios = np.array([1.0, rng.uniform(0.55, 0.8), rng.uniform(0.55, 0.8)])
    return ellipsoid_chord(size / 2 * ratios / np.cbrt(ratios.prod()), rotation, y, x)


def _dumbbell(size, rng, rotation, y, x):
    """A peanut: two equal spheres fused half-way, as a union (the neck is not counted twice).

    The sphere radius is chosen so the union has the volume of a sphere of diameter ``size``.
    """
    half = rng.uniform(0.55, 0.75)  # half the centre distance, in sphere radii
    d = 2 * half  # lens of two unit spheres at distance d: pi (4 + d) (2 - d)^2 / 12
    union = 2.0 - np.pi * (4 + d) * (2 - d) ** 2 / 12 / (4 * np.pi / 3)  # in sphere volumes
    radius = size / 2 / np.cbrt(union)
    axis = rotation[:, 0] * radius * half
    lo, hi = [], []
    for s in (-1, 1):
        chord = ellipsoid_chord((radius,) * 3, np.eye(3), y - s * axis[1], x - s * axis[0])
        lo.append(np.where(chord > 0, s * axis[2] - chord / 2, np.inf))
        hi.append(np.where(chord > 0, s * axis[2] + chord / 2, -np.inf))
    both = np.maximum(np.minimum(hi[0], hi[1]) - np.maximum(lo[0], lo[1]), 0.0)
    return np.maximum(hi[0] - lo[0], 0) + np.maximum(hi[1] - lo[1], 0) - both


def _polyhedron(normals, ratio):
    return lambda size, rng, rotation, y, x: polyhedron_chord(normals, ratio * size, rotation, y, x)


ShapeFn = Callable[[float, np.random.Generator, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
SHAPES: Dict[str, ShapeFn] = {
    "sphere": _sphere,
    "icosahedron": _polyhedron(ICOSAHEDRON_NORMALS, ICOSAHEDRON_D),
    "ellipsoid": _ellipsoid,
    "cube": _polyhedron(CUBE_NORMALS, CUBE_D),
    "octahedron": _polyhedron(OCTAHEDRON_NORMALS, OCTAHEDRON_D),
    "dumbbell": _dumbbell,
}
#: extent (half-width) of each shape in units of its size, to bound the rendering window
EXTENT = {"sphere": 0.5, "icosahedron": 0.6, "ellipsoid": 0.8, "cube": 0.75, "octahedron": 0.75, "dumbbell": 0.9}


def add_particle(density: np.ndarray, grid: Grid, shape: str, size: float, centre: Tuple[float, float],
                 rng: np.random.Generator, weight: float = 1.0) -> None:
    """Add ``weight`` x the projected thickness of one randomly oriented particle into ``density``."""
    rotation = random_rotation(rng)
    rows, cols, y, x = grid.window(centre, EXTENT[shape] * size + 2 * grid.dx)
    density[rows, cols] += weight * SHAPES[shape](size, rng, rotation, y, x)


def add_ellipsoid(density: np.ndarray, grid: Grid, semi_axes, centre: Tuple[float, float],
                  rng: np.random.Generator, weight: float = 1.0) -> None:
    """Add a randomly oriented ellipsoid of the given semi-axes (nm) into ``density``."""
    rows, cols, y, x = grid.window(centre, max(semi_axes) + 2 * grid.dx)
    density[rows, cols] += weight * ellipsoid_chord(semi_axes, random_rotation(rng), y, x)
