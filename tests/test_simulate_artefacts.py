"""Tests of the non-crystal artefacts the simulator draws on misses (mpireduce.simulate.artefacts)."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest

from mpireduce import cli
from mpireduce.backend import get_backend
from mpireduce.config import DetectConfig
from mpireduce.detect import make_detector
from mpireduce.simulate import (
    SimulationConfig,
    make_detector_layout,
    read_truth,
    render_frame,
    simulate_run,
)
from mpireduce.simulate.artefacts import ARTEFACT_NAMES
from mpireduce.simulate.sfx import MISS

CONFIG = SimulationConfig(detector="256x256", hit_fraction=0.3, artefact_fraction=1.0, seed=21)


@pytest.fixture(scope="module")
def frames():
    layout = make_detector_layout(CONFIG)
    return layout, [render_frame(CONFIG, i, layout) for i in range(48)]


def test_artefacts_are_on_misses_only_and_named(frames):
    _, rendered = frames
    names = [r.artefact for r in rendered]
    for r in rendered:
        assert (r.artefact in ARTEFACT_NAMES) if r.kind == MISS else (r.artefact == "")
        if r.artefact:
            assert len(r.spots["fs"]) == 0 and len(r.bases) == 0  # still a miss: no crystal
    assert set(names) - {""} == set(ARTEFACT_NAMES)


def test_artefact_frames_depend_on_seed_and_index_only(frames):
    _, rendered = frames
    i = next(i for i, r in enumerate(rendered) if r.artefact)
    again = render_frame(dataclasses.replace(CONFIG, n_frames=7), i, make_detector_layout(CONFIG))
    assert again.artefact == rendered[i].artefact and np.array_equal(again.frame, rendered[i].frame)
    other = render_frame(dataclasses.replace(CONFIG, seed=22), i)
    assert not np.array_equal(other.frame, rendered[i].frame)


def test_artefacts_add_to_misses_and_leave_hits_alone(frames):
    layout, rendered = frames
    clean = dataclasses.replace(CONFIG, artefact_fraction=0.0)
    for i in range(12):
        base = render_frame(clean, i, layout)
        assert base.artefact == "" and base.kind == rendered[i].kind
        if rendered[i].artefact:
            excess = rendered[i].frame.astype(np.int64) - base.frame
            assert excess.min() >= 0 and excess.sum() > 0, rendered[i].artefact
        else:
            assert np.array_equal(base.frame, rendered[i].frame)
    expected = render_frame(CONFIG, 0, layout, noise=False)
    assert expected.frame.dtype == np.float32 and expected.artefact == rendered[0].artefact


def test_artefacts_give_the_auto_detector_peaks(frames):
    layout, rendered = frames
    detector = make_detector(DetectConfig(mode="auto", backend="numpy"), layout.geometry(), get_backend("numpy"))
    n_peaks = {name: [] for name in ARTEFACT_NAMES}
    for r in rendered:
        if r.artefact:
            n_peaks[r.artefact].append(len(detector.find(np.minimum(r.frame, 65535).astype(np.uint16))))
    assert max(n_peaks["ice_ring"]) >= 6 and max(n_peaks["jet_streak"]) >= 6, n_peaks
    assert max(n_peaks["parasitic"]) >= 2 and max(n_peaks["cosmic"]) <= 6, n_peaks


def test_zero_fraction_keeps_the_config_json_and_truth_file_as_before(tmp_path):
    config = SimulationConfig(detector="128x128", n_frames=4, hit_fraction=0.5, seed=3)
    assert "artefact_fraction" not in config.to_json()
    assert SimulationConfig.from_json(config.to_json()) == config
    with_artefacts = dataclasses.replace(config, artefact_fraction=0.5)
    assert SimulationConfig.from_json(with_artefacts.to_json()) == with_artefacts
    simulate_run(tmp_path / "plain.h5", config)
    with h5py.File(tmp_path / "plain.truth.h5", "r") as f:
        assert "artefact" not in f
    truth = read_truth(tmp_path / "plain.h5")
    assert truth.artefact.tolist() == [""] * 4 and not truth.has_artefact.any()
    with pytest.raises(Exception, match="artefact_fraction"):
        dataclasses.replace(config, artefact_fraction=1.5).validate()


def test_truth_records_artefacts_and_cli_option(tmp_path, capsys):
    out = tmp_path / "art.h5"
    argv = ["simulate", str(out), "--frames", "12", "--detector", "128x128", "--hit-fraction", "0.2",
            "--artefact-fraction", "1", "--seed", "4"]
    assert cli.main(argv) == 0
    assert "artefacts:" in capsys.readouterr().out
    truth = read_truth(out)
    config = truth.config
    assert config.artefact_fraction == 1.0
    expected = [render_frame(config, i).artefact for i in range(12)]
    assert truth.artefact.tolist() == expected
    assert np.array_equal(truth.has_artefact, (truth.kind == MISS))
