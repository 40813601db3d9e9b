"""Reading the next chunk in a background thread while this rank computes the current one.

h5py and the HDF5 filters release the GIL while they read and decompress, so the read of
chunk *c + size* overlaps detection of chunk *c* when the node has a spare core (and costs
nothing extra when it has none). At most one chunk is read ahead.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Optional


class PrefetchingReader:
    """Wraps a :class:`~mpireduce.sources.FrameReader`: same ``read``, plus ``prefetch``."""

    def __init__(self, reader):
        self.reader = reader
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mpireduce-read")
        self._ahead: Optional[tuple] = None  # (start, stop, future)

    def prefetch(self, start: int, stop: int) -> None:
        """Start reading events ``[start, stop)`` in the background."""
        self._ahead = (start, stop, self._executor.submit(self.reader.read, start, stop))

    def read(self, start: int, stop: int):
        """Events ``[start, stop)``: the prefetched result when it is that range, else a direct read."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[:2] == (start, stop):
            return ahead[2].result()  # re-raises what the background read raised
        if ahead is not None:
            ahead[2].result()
        return self.reader.read(start, stop)

    def close(self) -> None:
        """Wait for a pending read, stop the thread and close the files."""
        if self._ahead is not None:
            self._ahead[2].result()
            self._ahead = None
        self._executor.shutdown(wait=True)
        self.reader.close()
