"""Config parsing: typed, validated, unknown keys named with the nearest valid key."""

import pytest

from mpireduce.config import config_from_dict, load_config
from mpireduce.errors import ConfigError


def test_defaults_and_types(tmp_path):
    cfg = config_from_dict({"source": {"files": "a.h5"}, "detect": {"min_snr": 6}}, base_dir=str(tmp_path))
    assert cfg.source.files == ("a.h5",)
    assert cfg.detect.min_snr == 6.0 and isinstance(cfg.detect.min_snr, float)
    assert cfg.resolve_path("a.h5") == tmp_path / "a.h5"


@pytest.mark.parametrize("data, expected", [
    ({"source": {"files": "a", "datset": "/x"}}, "did you mean 'dataset'"),
    ({"source": {"files": "a"}, "detetc": {}}, "did you mean 'detect'"),
    ({"source": {"files": "a"}, "detect": {"min_snrr": 3}}, "did you mean 'min_snr'"),
])
def test_unknown_key_names_nearest(data, expected):
    with pytest.raises(ConfigError, match=expected):
        config_from_dict(data)


@pytest.mark.parametrize("data, expected", [
    ({"source": {"files": "a"}, "detect": {"min_snr": "high"}}, "detect.min_snr must be float"),
    ({"source": {"files": "a"}, "output": {"compression": "lz5"}}, "not one of"),
    ({"source": {"files": []}}, "source.files is empty"),
    ({"source": {"files": "a"}, "detect": {"min_pixel_count": 5, "max_pixel_count": 2}}, "min_pixel_count"),
    ({"source": {"files": "a"}, "schema_version": 9}, "schema_version 9"),
])
def test_bad_values(data, expected):
    with pytest.raises(ConfigError, match=expected):
        config_from_dict(data)


def test_yaml_roundtrip_and_hash(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("source:\n  files: [a.h5, 'b*.h5']\nrun:\n  chunk_size: 4\n")
    cfg = load_config(job)
    again = load_config(job)
    assert cfg.sha256() == again.sha256()
    assert "chunk_size: 4" in cfg.to_yaml()
    changed = load_config(job, overrides={"run.chunk_size": 8})
    assert changed.run.chunk_size == 8 and changed.sha256() != cfg.sha256()


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="cannot read job file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
