"""Array backends: numerics are written once against ``xp`` and ``ndi``.

``xp`` is numpy or cupy, ``ndi`` is scipy.ndimage or cupyx.scipy.ndimage; both pairs
share signatures, so detection code runs unchanged on CPU and GPU.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import ModuleType

from .errors import ConfigError

log = logging.getLogger(__name__)

BACKEND_CHOICES = ("auto", "numpy", "cupy")


@dataclass(frozen=True)
class Backend:
    """An array module and its matching ndimage module."""

    name: str
    xp: ModuleType
    ndi: ModuleType

    def to_host(self, array):
        """Return ``array`` as a numpy array (copying from the GPU if needed)."""
        if self.name == "cupy":
            return self.xp.asnumpy(array)
        return array

    def asarray(self, array):
        """Return ``array`` on this backend's device."""
        return self.xp.asarray(array)


def _numpy_backend() -> Backend:
    import numpy
    import scipy.ndimage

    return Backend("numpy", numpy, scipy.ndimage)


def _cupy_backend() -> Backend:
    import cupy
    import cupyx.scipy.ndimage

    cupy.cuda.runtime.getDeviceCount()  # raises when no GPU/driver is present
    return Backend("cupy", cupy, cupyx.scipy.ndimage)


def cupy_available() -> bool:
    """True when cupy imports and sees at least one GPU."""
    try:
        _cupy_backend()
    except Exception:
        return False
    return True


def get_backend(name: str = "auto") -> Backend:
    """Return the backend called ``name`` (``auto`` tries cupy, then numpy)."""
    if name not in BACKEND_CHOICES:
        raise ConfigError(f"unknown array backend {name!r}: choose one of {', '.join(BACKEND_CHOICES)}")
    if name == "numpy":
        return _numpy_backend()
    try:
        return _cupy_backend()
    except Exception as exc:  # ImportError, CUDA errors without a GPU
        if name == "cupy":
            raise ConfigError(
                f"backend 'cupy' requested but cupy cannot use a GPU here ({exc}); "
                "install cupy-cuda12x/13x on a GPU node or set detect.backend: numpy"
            ) from exc
        log.info("array backend: cupy not usable (%s); falling back to numpy", type(exc).__name__)
        return _numpy_backend()
