"""Event index over several files, and the frame reader's per-event status."""

import h5py
import numpy as np

from mpireduce.sources import STATUS_BAD_SHAPE, STATUS_OK, EventIndex, FrameReader, InputFile


def _index(counts, shapes=None, paths=None):
    shapes = shapes or [(4, 4)] * len(counts)
    paths = paths or [f"f{i}.h5" for i in range(len(counts))]
    files = tuple(InputFile(p, n, s, "float32", 0, False) for p, n, s in zip(paths, counts, shapes))
    return EventIndex(files, "/d", None, shapes[0], sum(counts))


def test_locate_spans_files():
    index = _index([3, 0, 4, 2])
    pieces = list(index.locate(2, 8))
    assert pieces == [(0, 2, 3, 2), (2, 0, 4, 3), (3, 0, 1, 7)]
    covered = [g + k for f, b, e, g in pieces for k in range(e - b)]
    assert covered == list(range(2, 8))


def test_reader_marks_wrong_shape_files(tmp_path):
    paths = []
    for i, shape in enumerate([(4, 4), (5, 5)]):
        path = tmp_path / f"f{i}.h5"
        with h5py.File(path, "w") as f:
            f["/d"] = np.full((2, *shape), i, np.float32)
        paths.append(str(path))
    reader = FrameReader(_index([2, 2], [(4, 4), (5, 5)], paths))
    frames, file_no, local, stamps, status = reader.read(1, 4)
    assert status.tolist() == [STATUS_OK, STATUS_BAD_SHAPE, STATUS_BAD_SHAPE]
    assert file_no.tolist() == [0, 1, 1] and local.tolist() == [1, 0, 1]
    assert frames[0].shape == (4, 4) and frames[1] is None
    reader.close()


def test_prefetching_reader_returns_what_a_direct_read_returns(tmp_path):
    from mpireduce.prefetch import PrefetchingReader

    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f["/d"] = np.arange(10 * 16, dtype=np.float32).reshape(10, 4, 4)
    index = _index([10], paths=[str(path)])
    direct = FrameReader(index)
    reader = PrefetchingReader(FrameReader(index))
    # prefetched and read; not prefetched; prefetched but another range read
    for ahead, (start, stop) in (((4, 8), (4, 8)), (None, (0, 3)), ((2, 5), (8, 10))):
        if ahead:
            reader.prefetch(*ahead)
        got, want = reader.read(start, stop), direct.read(start, stop)
        for g, w in zip(got[0], want[0]):
            np.testing.assert_array_equal(g, w)
        np.testing.assert_array_equal(got[2], want[2])
    reader.close()
    direct.close()


def test_prefetch_errors_surface_on_read(tmp_path):
    import pytest

    from mpireduce.prefetch import PrefetchingReader

    reader = PrefetchingReader(FrameReader(_index([5], paths=[str(tmp_path / "missing.h5")])))
    reader.prefetch(0, 2)
    with pytest.raises(OSError):
        reader.read(0, 2)
    reader.close()
