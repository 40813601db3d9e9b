"""Smalldata files: per-writer part files and the virtual-dataset master that joins them.

A *table* is the set of per-event datasets of one ``align_group`` (``""`` = the file's
root): its ``timestamp`` column plus one dataset per key. Rows missing a key are filled
with ``-99999`` (integers) or NaN (floats). Keys with a ``var_`` component hold
variable-length arrays, concatenated along axis 0, with a ``<prefix>_len`` dataset
(``<prefix>`` = the key up to its ``var_`` component) giving each event's length.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import h5py
import numpy as np

MISSING_INT = -99999
MISSING_FLOAT = np.nan
VAR_PREFIX, LEN_SUFFIX = "var_", "_len"
PARTS_GROUP = "_parts"
Row = Tuple[int, Dict[str, Any]]  #: (timestamp, flattened values)


def flatten(data: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """Nested dicts as one dict whose keys are joined with ``/``."""
    flat: Dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "/"))
        elif value is not None:
            flat[name] = value
    return flat


def len_key(key: str) -> Optional[str]:
    """The ``_len`` dataset of a variable-length key, or None for a fixed-shape key."""
    parts = key.split("/")
    for i, part in enumerate(parts):
        if part.startswith(VAR_PREFIX):
            return "/".join(parts[: i + 1]) + LEN_SUFFIX
    return None


def fill_value(dtype: np.dtype):
    """The back-fill value of a column."""
    return MISSING_FLOAT if np.dtype(dtype).kind in "fc" else MISSING_INT


def as_column_value(key: str, value: Any) -> np.ndarray:
    """A value as an array whose dtype can hold the back-fill value."""
    array = np.asarray(value)
    kind, size = array.dtype.kind, array.dtype.itemsize
    if kind == "b" or (kind in "iu" and size < 4) or (kind == "u" and size == 4):
        return array.astype(np.int64 if kind == "u" and size == 4 else np.int32)
    if kind == "u":
        return array.astype(np.int64)
    if kind not in "ifc":
        raise TypeError(f"smalldata {key!r}: only numbers and numeric arrays can be saved, got {array.dtype}")
    return array


class PartWriter:
    """One writer's part file, appended to in batches of rows per table."""

    def __init__(self, path: Path, time_key: str = "timestamp"):
        self.path = Path(path)
        self.time_key = time_key
        self._file = h5py.File(self.path, "w")
        self.rows: Dict[str, int] = {}
        self.datasets: Dict[str, Dict[str, Any]] = {}  #: path -> {table, var}

    def append(self, table: str, rows: List[Row]) -> None:
        """Append rows to ``table``, creating and back-filling datasets as needed."""
        if not rows:
            return
        prefix = f"{table}/" if table else ""
        before = self.rows.get(table, 0)
        columns = {self.time_key: [np.uint64(ts) for ts, _ in rows]}
        for _, values in rows:
            for key in values:
                columns.setdefault(key, [])
        for key in columns:
            if key != self.time_key:
                columns[key] = [values.get(key) for _, values in rows]
        self._append_fixed(table, prefix, before, columns)
        self._append_var(table, prefix, before, columns)
        self.rows[table] = before + len(rows)

    def _append_fixed(self, table: str, prefix: str, before: int, columns: Dict[str, list]) -> None:
        """Fixed-shape columns, and fill for this table's datasets the batch lacks."""
        n = len(rows_of(columns))
        names = [prefix + key for key in columns if len_key(key) is None]
        names += [name for name, meta in self.datasets.items()
                  if meta["table"] == table and not meta["var"] and not meta["len"]]
        for name in dict.fromkeys(names):
            self._extend(name, table, before, columns.get(name[len(prefix):], [None] * n))

    def _append_var(self, table: str, prefix: str, before: int, columns: Dict[str, list]) -> None:
        """Variable-length columns: concatenated data plus per-event lengths."""
        n = len(rows_of(columns))
        lengths: Dict[str, List[int]] = {}
        for key, values in columns.items():
            lkey = len_key(key)
            if lkey is None:
                continue
            arrays = [None if v is None else np.atleast_1d(as_column_value(key, v)) for v in values]
            sizes = [0 if a is None else len(a) for a in arrays]
            known = lengths.setdefault(lkey, sizes)
            if any(a is not None and s != k for a, s, k in zip(arrays, sizes, known)):
                raise ValueError(f"smalldata {key!r}: arrays of one event under {lkey[:-4]!r} differ in length")
            lengths[lkey] = [max(a, b) for a, b in zip(known, sizes)]
            present = [a for a in arrays if a is not None]
            if present:
                self._extend_var(prefix + key, table, np.concatenate(present))
        for meta_key, meta in list(self.datasets.items()):
            if meta["table"] == table and meta["len"] and meta_key[len(prefix):] not in lengths:
                lengths[meta_key[len(prefix):]] = [0] * n
        for lkey, sizes in lengths.items():
            self._extend(prefix + lkey, table, before, [np.int64(s) for s in sizes], is_len=True)

    def _extend(self, name: str, table: str, before: int, values: list, is_len: bool = False) -> None:
        """Append one value per row to a fixed-shape dataset (None = back-fill)."""
        first = next((as_column_value(name, v) for v in values if v is not None), None)
        if name not in self._file:
            if first is None:
                return
            self._file.create_dataset(name, shape=(0, *first.shape), maxshape=(None, *first.shape),
                                      dtype=first.dtype, chunks=True)
            self.datasets[name] = {"table": table, "var": False, "len": is_len}
            self._resize(name, before, is_len)
        dataset = self._file[name]
        block = np.full((len(values), *dataset.shape[1:]), 0 if is_len else fill_value(dataset.dtype),
                        dtype=dataset.dtype)
        for i, value in enumerate(values):
            if value is not None:
                array = as_column_value(name, value)
                if array.shape != dataset.shape[1:]:
                    raise ValueError(f"smalldata {name!r}: shape {array.shape} differs from {dataset.shape[1:]} "
                                     "of earlier events (prefix the name with var_ for variable lengths)")
                block[i] = array
        start = dataset.shape[0]
        dataset.resize(start + len(values), axis=0)
        dataset[start:] = block

    def _resize(self, name: str, rows: int, is_len: bool) -> None:
        """Back-fill the first ``rows`` rows of a dataset created late."""
        dataset = self._file[name]
        dataset.resize(rows, axis=0)
        if rows:
            dataset[:] = 0 if is_len else fill_value(dataset.dtype)

    def _extend_var(self, name: str, table: str, data: np.ndarray) -> None:
        """Append concatenated variable-length data."""
        if name not in self._file:
            self._file.create_dataset(name, shape=(0, *data.shape[1:]), maxshape=(None, *data.shape[1:]),
                                      dtype=data.dtype, chunks=True)
            self.datasets[name] = {"table": table, "var": True, "len": False}
        dataset = self._file[name]
        start = dataset.shape[0]
        dataset.resize(start + len(data), axis=0)
        dataset[start:] = data

    def close(self) -> Dict[str, Any]:
        """Close the file; returns what the master needs to know about it."""
        specs = {name: dict(meta, shape=self._file[name].shape, dtype=self._file[name].dtype.str)
                 for name, meta in self.datasets.items()}
        self._file.close()
        return {"file": self.path.name, "sha256": sha256(self.path), "tables": dict(self.rows), "datasets": specs}


def rows_of(columns: Dict[str, list]) -> List[Any]:
    """The first column (the time column), whose length is the batch's row count."""
    return next(iter(columns.values()))


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
