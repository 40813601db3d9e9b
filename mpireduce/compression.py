"""HDF5 compression filters by name (through hdf5plugin)."""

from __future__ import annotations

from .errors import ConfigError

COMPRESSION_CHOICES = ("bitshuffle-lz4", "zstd", "gzip", "none")


def h5_compression(name: str) -> dict:
    """Keyword arguments for ``h5py.Group.create_dataset`` that apply filter ``name``.

    ``bitshuffle-lz4`` is the default of the field (CrystFEL, XDS and DIALS read it
    through the HDF5 plugin path); readers need ``import hdf5plugin`` first.
    """
    import hdf5plugin

    if name == "bitshuffle-lz4":
        return dict(hdf5plugin.Bitshuffle(cname="lz4"))
    if name == "zstd":
        return dict(hdf5plugin.Bitshuffle(cname="zstd"))
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if name == "none":
        return {}
    raise ConfigError(f"unknown compression {name!r}: choose one of {', '.join(COMPRESSION_CHOICES)}")
