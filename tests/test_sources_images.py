"""CBF frames read through fabio are a source for `mpireduce run` (geometry from the mini-header)."""

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest

from conftest import check, run_cli, write_job

fabio = pytest.importorskip("fabio")


def _write_cbf(path, frame, beam_fs, beam_ss):
    from fabio.cbfimage import CbfImage

    header = ("# Pixel_size 300e-6 m x 300e-6 m\r\n# Wavelength 1.0000 A\r\n# Detector_distance 0.10000 m\r\n"
              f"# Beam_xy ({beam_fs:.2f}, {beam_ss:.2f}) pixels\r\n")
    CbfImage(data=frame.astype(np.int32), header={"_array_data.header_contents": header}).write(str(path))


def test_cbf_files_reduce_like_the_hdf5_run(sim_run, tmp_path):
    with h5py.File(sim_run, "r") as f:
        frames = f["entry_1/data_1/data"][:6].astype(np.int32)
        mask = f["entry_1/data_1/mask"][()]
        beam = [round(float(f[f"entry_1/instrument_1/detector_1/beam_center_{a}_px"][()]), 2) for a in ("fs", "ss")]
    frames[:, mask == 0] = -1  # Pilatus convention: gaps and bad pixels are negative
    for i, frame in enumerate(frames):
        _write_cbf(tmp_path / f"img_{i:05d}.cbf", frame, *beam)
    job = write_job(tmp_path, [tmp_path / "img_*.cbf"], source={"kind": "images"}, descriptor={"enabled": False})
    check(run_cli("run", job, np=2))
    reference = tmp_path / "ref"
    reference.mkdir()
    job_ref = write_job(reference, [sim_run], source={"max_events": 6}, descriptor={"enabled": False},
                        geometry={"beam_center_fs": beam[0], "beam_center_ss": beam[1]})
    check(run_cli("run", job_ref))
    with h5py.File(tmp_path / "out.cxi", "r") as out, h5py.File(reference / "out.cxi", "r") as ref:
        assert len(out["mpireduce/events/n_peaks"]) == 6
        np.testing.assert_array_equal(out["mpireduce/events/n_peaks"][()], ref["mpireduce/events/n_peaks"][()])
        assert float(out["entry_1/instrument_1/detector_1/beam_center_fs_px"][()]) == pytest.approx(beam[0])
        assert float(out["entry_1/instrument_1/detector_1/x_pixel_size"][()]) == pytest.approx(300e-6)
