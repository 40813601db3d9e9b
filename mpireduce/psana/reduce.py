"""MPI reductions that tolerate ranks with nothing to contribute (as psana2's smalldata does).

Every rank of ``comm`` must call :func:`reduce_to_root`. A rank that saw no events may
pass ``None``: it contributes the identity of the operation (0 for sum, the dtype's
lowest value for max, its highest for min). Numbers become 1-element arrays.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np


def _as_array(value: Any) -> Optional[np.ndarray]:
    """Numbers as 1-element arrays; arrays unchanged; anything else (None) as None."""
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return np.array([value])
    return value if isinstance(value, np.ndarray) else None


def identity(op: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
    """An array that leaves ``op`` unchanged."""
    dtype = np.dtype(dtype)
    if op == "sum":
        return np.zeros(shape, dtype=dtype)
    if dtype.kind in "fc":
        extreme = -np.inf if op == "max" else np.inf
    elif dtype.kind == "b":
        extreme = op != "max"
    else:
        info = np.iinfo(dtype)
        extreme = info.min if op == "max" else info.max
    return np.full(shape, extreme, dtype=dtype)


def reduce_to_root(comm, value: Any, op: str, inplace: bool = False) -> Optional[np.ndarray]:
    """Reduce ``value`` over ``comm`` with ``op`` (sum, max, min); the result lands on rank 0."""
    from mpi4py import MPI

    mpi_op = {"sum": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}[op]
    array = _as_array(value)
    described = comm.allgather(None if array is None else (array.shape, array.dtype.str))
    known = [d for d in described if d is not None]
    if not known:
        raise ValueError(f"smalldata {op}: no rank passed a number or array to reduce")
    if any(d != known[0] for d in known):
        raise ValueError(f"smalldata {op}: ranks passed different shapes/dtypes {sorted(set(known))}")
    shape, dtype = known[0][0], np.dtype(known[0][1])
    if array is None:
        array = identity(op, shape, dtype)
    array = np.ascontiguousarray(array)
    root = comm.Get_rank() == 0
    if inplace:
        comm.Reduce(MPI.IN_PLACE if root else array, array if root else None, op=mpi_op, root=0)
        return array if root else None
    result = np.empty(shape, dtype=dtype) if root else None
    comm.Reduce(array, result, op=mpi_op, root=0)
    return result
