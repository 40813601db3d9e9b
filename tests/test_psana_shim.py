"""The psana shim in one process: layout, psana2/psana1 surface, smalldata, errors, install."""

import datetime
import logging
import sys

import h5py
import numpy as np
import pytest

import mpireduce.psana as shim
from mpireduce.psana.distribute import self_comm
from mpireduce.psana.layout import RunFile
from mpireduce.psana.simulate import segment_origins
from mpireduce.simulate import SimulationConfig, make_detector_layout, simulate_frame

EXP, RUN = "xpptut15", 14


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """A folder with two simulated runs (40 and 12 events, 4 segments of 64x64)."""
    folder = tmp_path_factory.mktemp("psana")
    shim.simulate_run(folder, EXP, RUN, n_events=40, n_steps=2, seed=3)
    shim.simulate_run(folder, EXP, RUN + 1, n_events=12, seed=4)
    return folder


def source(data_dir, **kwargs):
    return shim.DataSource(exp=EXP, run=RUN, dir=str(data_dir), **kwargs)


def test_run_surface_and_timestamps(data_dir):
    run = next(source(data_dir).runs())
    assert (run.expt, run.runnum) == (EXP, RUN)
    assert run.detnames == {"jungfrau", "ebeam_energy"}
    assert ("jungfrau", "raw") in run.detinfo
    events = list(run.events())
    stamps = [e.timestamp for e in events]
    assert len(events) == 40 and stamps == sorted(stamps) and run.timestamp == stamps[0]
    seconds, ns = stamps[0] >> 32, stamps[0] & 0xFFFFFFFF
    expected = datetime.datetime(1990, 1, 1) + datetime.timedelta(seconds=seconds, microseconds=ns / 1000)
    assert events[0].datetime() == expected and events[0].run() is run


def test_area_detector_calib_image_and_missing(data_dir):
    run = next(source(data_dir).runs())
    det, ebeam = run.Detector("jungfrau"), run.Detector("ebeam_energy")
    config = SimulationConfig(n_frames=40, hit_fraction=0.3, detector="132x132", seed=3)
    layout = make_detector_layout(config)
    present = missing = 0
    for evt in run.events():
        raw = det.raw.raw(evt)
        if raw is None:
            assert det.raw.calib(evt) is None and det.raw.image(evt) is None
            missing += 1
            continue
        present += 1
        calib = det.raw.calib(evt)
        assert raw.shape == (4, 64, 64) and raw.dtype == np.uint16 and calib.dtype == np.float32
        assert not np.allclose(calib, raw)
        photons, _, _ = simulate_frame(config, evt.index, layout)
        image = det.raw.image(evt)
        assert image.shape == (132, 132)
        good = layout.mask.astype(bool)
        assert np.median(np.abs(image[good] - photons[good])) < 0.3  # calib recovers photons
        assert isinstance(ebeam(evt), (float, type(None)))
    assert present > 25 and missing > 0
    assert segment_origins(layout)[0] == (0, 0)


def test_max_events_steps_and_selection(data_dir):
    run = next(source(data_dir, max_events=10).runs())
    assert len(list(run.events())) == 10
    steps = list(next(source(data_dir).runs()).steps())
    assert [len(list(s.events())) for s in steps] == [20, 20]
    all_runs = shim.DataSource(exp=EXP, dir=str(data_dir))
    assert [r.runnum for r in all_runs.runs()] == [RUN, RUN + 1]
    stamps = RunFile(data_dir / f"{EXP}-r{RUN:04d}.h5").timestamps[[3, 5]]
    picked = next(source(data_dir, timestamps=stamps).runs())
    assert [e.timestamp for e in picked.events()] == [int(s) for s in stamps]


def test_errors_use_psana_wording(data_dir, tmp_path, caplog):
    run = next(source(data_dir).runs())
    with pytest.raises(KeyError, match="No available detector class matched with nope"):
        run.Detector("nope")
    assert run.Detector("nope", accept_missing=True).raw.raw(None) is None
    with pytest.raises(FileNotFoundError, match="no runs of experiment 'xyz'.*experiments there: xpptut15"):
        shim.DataSource(exp="xyz", run=1, dir=str(data_dir))
    with pytest.raises(FileNotFoundError, match="no run 99 .*runs there: 14, 15"):
        shim.DataSource(exp=EXP, run=99, dir=str(data_dir))
    with pytest.raises(FileNotFoundError, match="data directory .* does not exist"):
        shim.DataSource(exp=EXP, run=RUN, dir=str(tmp_path / "absent"))
    with caplog.at_level(logging.WARNING, logger="mpireduce.psana"):
        source(data_dir, not_a_keyword=1, skip_calib_load="all")
    assert "not_a_keyword" in caplog.text and "skip_calib_load" not in caplog.text


def test_smalldata_flatten_backfill_and_var(data_dir, tmp_path):
    ds = source(data_dir, max_events=6)
    smd = ds.smalldata(filename=str(tmp_path / "s.h5"), batch_size=2)
    for i, evt in enumerate(next(ds.runs()).events()):
        values = {"a": {"b": i}, "var_peaks": {"x": np.arange(i % 3, dtype=float)}}
        if i >= 3:
            values["late"] = 0.5
        smd.event(evt, values, **({"early": i} if i < 2 else {}))
    assert smd.summary
    smd.save_summary({"sums": {"n": smd.sum(6)}})
    smd.done()
    with h5py.File(tmp_path / "s.h5") as f:
        assert list(f["a/b"][:]) == list(range(6))
        assert list(f["early"][:]) == [0, 1] + [-99999] * 4
        assert np.isnan(f["late"][:3]).all() and list(f["late"][3:]) == [0.5] * 3
        assert list(f["var_peaks_len"][:]) == [0, 1, 2, 0, 1, 2]
        assert list(f["var_peaks/x"][:]) == [0, 0, 1, 0, 0, 1]
        assert f["sums/n"][()] == 6 and list(f["_parts/file"][:]) == [b"s_part0.h5"]


def test_psana1_string_source_idx_and_eventid(data_dir):
    ds = shim.DataSource(f"exp={EXP}:run={RUN}:dir={data_dir}:idx", comm=self_comm())
    det = shim.Detector("jungfrau")
    run = next(ds.runs())
    times = run.times()
    evt = run.event(times[7])
    sec, nsec = evt.get(shim.EventId).time()
    stamp = int(RunFile(data_dir / f"{EXP}-r{RUN:04d}.h5").timestamps[7])
    assert (sec, nsec) == ((stamp >> 32) + 631_152_000, stamp & 0xFFFFFFFF)
    assert det.mask(RUN).shape == (4, 64, 64) and ds.env().experiment() == EXP
    assert sum(1 for _ in ds.events()) == 40
    with pytest.raises(KeyError, match="No available detector class"):
        shim.Detector("nope")


def test_install_only_without_real_psana(monkeypatch):
    monkeypatch.delitem(sys.modules, "psana", raising=False)
    monkeypatch.setattr(shim.install.__globals__["importlib"].machinery.PathFinder, "find_spec",
                        staticmethod(lambda name, *a: None))
    assert shim.install() is shim and sys.modules["psana"] is shim
    import psana

    assert psana.DataSource is shim.DataSource
    shim.uninstall()
    assert "psana" not in sys.modules
