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
