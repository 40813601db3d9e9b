"""Detector geometry and mask for a run: from the job config, else from the input files.

Values set in the ``geometry:`` section win; the rest are read from the first input
file's CXI instrument group (``/entry_1/instrument_1/detector_1/beam_center_fs_px`` ...,
as written by ``mpireduce simulate`` and found in the real frames of the test data).
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from .config import JobConfig
from .errors import InputError
from .geometry import DETECTOR_GROUP, SOURCE_GROUP, DetectorGeometry
from .sources import EventIndex

log = logging.getLogger(__name__)

_FILE_KEYS = {
    "beam_center_fs": f"{DETECTOR_GROUP}/beam_center_fs_px",
    "beam_center_ss": f"{DETECTOR_GROUP}/beam_center_ss_px",
    "pixel_size_m": f"{DETECTOR_GROUP}/x_pixel_size",
    "distance_m": f"{DETECTOR_GROUP}/distance",
    "wavelength_A": f"{SOURCE_GROUP}/wavelength_A",
}


def load_geometry(config: JobConfig, index: EventIndex) -> DetectorGeometry:
    """The run's :class:`DetectorGeometry` (config values first, then the first file)."""
    import h5py

    path = index.files[0].path
    if index.files[0].kind == "psana":
        values = {key: getattr(config.geometry, key) for key in _FILE_KEYS}
        mask, panel_shape = np.ones(index.frame_shape, np.int8), None
    elif index.files[0].kind == "image":
        values, mask, panel_shape = _from_image_header(config, path)
    else:
        with h5py.File(path, "r") as handle:
            values = {key: _value(config, handle, key) for key in _FILE_KEYS}
            mask = _mask(config, handle, index.frame_shape, path)
            panel_shape = _panel_shape(handle)
    ss, fs = index.frame_shape
    if values["beam_center_fs"] is None or values["beam_center_ss"] is None:
        log.warning("no beam centre in the config or in %s: using the frame centre; "
                    "set geometry.beam_center_fs/ss for correct radial statistics", path)
        values["beam_center_fs"] = values["beam_center_fs"] if values["beam_center_fs"] is not None else (fs - 1) / 2
        values["beam_center_ss"] = values["beam_center_ss"] if values["beam_center_ss"] is not None else (ss - 1) / 2
    return DetectorGeometry(shape=(ss, fs), mask=mask, panel_shape=panel_shape, **values)


def _from_image_header(config: JobConfig, path: str) -> tuple:
    from .image_files import image_header_geometry, image_mask

    header = image_header_geometry(path)
    values = {}
    for key in _FILE_KEYS:
        configured = getattr(config.geometry, key)
        values[key] = float(configured) if configured is not None else header.get(key)
    return values, image_mask(path), None


def _value(config: JobConfig, handle, key: str) -> Optional[float]:
    configured = getattr(config.geometry, key)
    if configured is not None:
        return float(configured)
    path = _FILE_KEYS[key]
    if path in handle and handle[path].shape == ():
        return float(handle[path][()])
    return None


def _mask(config: JobConfig, handle, shape: tuple, path: str) -> np.ndarray:
    mask_path = config.source.mask
    if not mask_path or mask_path not in handle:
        if mask_path:
            log.info("no mask %s in %s: every pixel counts as good", mask_path, path)
        return np.ones(shape, np.int8)
    mask = handle[mask_path][()]
    if mask.shape != tuple(shape):
        raise InputError(
            f"mask {path}:{mask_path} has shape {mask.shape} but frames are {tuple(shape)}; "
            "set source.mask to the right dataset or null"
        )
    return (mask != 0).astype(np.int8)


def _panel_shape(handle) -> Optional[tuple]:
    if DETECTOR_GROUP in handle and "panel_shape" in handle[DETECTOR_GROUP].attrs:
        return tuple(int(v) for v in handle[DETECTOR_GROUP].attrs["panel_shape"])
    return None
