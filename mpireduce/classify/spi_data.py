"""Labelled SPI runs for the few-shot classifier: transformed inputs with their truth, support sets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np

from ..errors import InputError

DATA_PATH = "/entry_1/data_1/data"


@dataclass
class SpiData:
    """Transformed inputs of a run with their truth."""

    inputs: np.ndarray  #: (N, 3, radii, angles)
    labels: np.ndarray  #: (N,) class index
    shapes: np.ndarray  #: (N,) str
    class_names: Tuple[str, ...]
    centre: Tuple[float, float]


def load_spi_run(path: str, transform, max_events: int = 0) -> SpiData:
    """Read and transform every frame of an SPI run and its truth sidecar."""
    import h5py
    import hdf5plugin  # noqa: F401

    from ..simulate.spi import read_spi_truth
    from .command import read_geometry
    from ..config import GeometryConfig

    if not Path(path).is_file():
        raise InputError(f"SPI run {path} not found; check the path")
    truth = read_spi_truth(path)
    with h5py.File(path, "r") as handle:
        geometry = read_geometry(handle, path, GeometryConfig())
        centre = (geometry.beam_center_ss, geometry.beam_center_fs)
        data = handle[DATA_PATH]
        count = len(data) if not max_events else min(len(data), max_events)
        inputs = np.stack([transform.apply(data[i], geometry.mask, centre) for i in range(count)])
    if len(truth.kind) < count:
        raise InputError(f"truth of {path} lists {len(truth.kind)} events but the run has {count}")
    return SpiData(inputs.astype(np.float32), truth.kind[:count].astype(np.int64), truth.shape[:count],
                   truth.kind_names, centre)


def choose_support(labels: np.ndarray, shapes: np.ndarray, per_class: int, n_classes: int,
                   exclude_shapes: Sequence[str] = (), seed: int = 0) -> np.ndarray:
    """Indices of ``per_class`` random events of each class whose shape is not excluded."""
    rng = np.random.default_rng(seed)
    allowed = ~np.isin(shapes, list(exclude_shapes))
    chosen = []
    for c in range(n_classes):
        members = np.flatnonzero((labels == c) & allowed)
        if len(members) < 2:
            raise InputError(f"class {c} has only {len(members)} usable events; simulate a longer run")
        chosen.append(rng.choice(members, min(per_class, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def frame_side(path: str) -> int:
    """Side of the (square) frames of a run: the smaller of the two frame dimensions."""
    import h5py
    import hdf5plugin  # noqa: F401

    with h5py.File(path, "r") as handle:
        return int(min(handle[DATA_PATH].shape[1:]))
