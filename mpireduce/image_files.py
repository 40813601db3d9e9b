"""Single-image detector files (CBF, SMV/ADSC, EDF, TIFF ...) read through fabio.

Used by ``source.kind: images``. Pilatus/Eiger CBF mini-headers carry the geometry
(pixel size, distance, wavelength, beam centre), which fills any ``geometry:`` value the
job leaves null. Pixels < 0 (Pilatus gaps and bad pixels) are masked.
"""

from __future__ import annotations

import os
import re

import numpy as np

from .errors import InputError

_HEADER_PATTERNS = {
    "pixel_size_m": r"Pixel_size\s+([0-9.eE+-]+)\s*m",
    "distance_m": r"Detector_distance\s+([0-9.eE+-]+)\s*m",
    "wavelength_A": r"Wavelength\s+([0-9.eE+-]+)\s*A",
    "beam_center_fs": r"Beam_xy\s+\(\s*([0-9.eE+-]+)\s*,",
    "beam_center_ss": r"Beam_xy\s+\(\s*[0-9.eE+-]+\s*,\s*([0-9.eE+-]+)\s*\)",
}


def _open(path: str):
    try:
        import fabio
    except ImportError as exc:
        raise InputError("source.kind 'images' needs fabio: pip install fabio") from exc
    if not os.path.exists(path):
        raise InputError(f"input file {path} does not exist; check source.files")
    try:
        return fabio.open(path)
    except Exception as exc:  # fabio raises many types for unreadable files
        raise InputError(f"cannot read {path} as a detector image ({exc}); is it a complete CBF/SMV/EDF file?") from exc


def inspect_image_file(path: str):
    """An :class:`~mpireduce.sources.InputFile` describing one image file."""
    from .sources import InputFile

    image = _open(path)
    shape = tuple(image.data.shape)
    if len(shape) != 2:
        raise InputError(f"{path} holds an image of shape {shape}; expected a 2-D detector frame")
    return InputFile(path, int(getattr(image, "nframes", 1) or 1), shape, str(image.data.dtype),
                     os.path.getsize(path), False, kind="image")


def read_image_frames(path: str, begin: int, end: int) -> list:
    """Frames ``begin .. end - 1`` of a (possibly multi-frame) image file."""
    image = _open(path)
    if begin == 0 and end == 1:
        return [image.data]
    return [image.getframe(i).data for i in range(begin, end)]


def image_header_geometry(path: str) -> dict:
    """Geometry values found in an image header (CBF mini-header); missing keys are absent."""
    image = _open(path)
    text = " ".join(str(v) for v in image.header.values())
    values = {}
    for key, pattern in _HEADER_PATTERNS.items():
        match = re.search(pattern, text)
        if match:
            values[key] = float(match.group(1))
    return values


def image_mask(path: str) -> np.ndarray:
    """Mask of the first frame: 1 where the pixel value is >= 0 (Pilatus marks gaps with -1)."""
    data = _open(path).data
    return (data >= 0).astype(np.int8)
