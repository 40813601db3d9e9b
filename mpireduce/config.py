"""Job configuration: YAML parsed into frozen, validated dataclasses.

Unknown keys are errors that name the nearest valid key; the resolved config is
written into the output as YAML text with its sha256, so a job can be re-run exactly.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from .errors import ConfigError

SCHEMA_VERSION = 1
from .compression import COMPRESSION_CHOICES
DETECT_MODES = ("peakfinder8", "auto")


@dataclass(frozen=True)
class SourceConfig:
    """Where the events come from."""

    kind: str = "cxi"  #: ``cxi``: HDF5/CXI frame stacks; ``images``: CBF/SMV/... via fabio; ``psana``: a run
    files: tuple = ()  #: file paths or glob patterns, relative to the config file
    dataset: str = "/entry_1/data_1/data"  #: frame stack inside each file
    mask: Optional[str] = "/entry_1/data_1/mask"  #: (ss, fs) mask dataset, 1 = good; null = none
    timestamp: Optional[str] = "/entry_1/data_1/timestamp"  #: (N,) event ids, optional in files
    max_events: int = 0  #: 0 = all events
    exp: Optional[str] = None  #: kind psana: experiment name
    run: Optional[int] = None  #: kind psana: run number
    dir: Optional[str] = None  #: kind psana: data folder (shim: the folder of the HDF5 runs)
    detector: Optional[str] = None  #: kind psana: area detector name, e.g. jungfrau

    def validate(self) -> None:
        _choice("source.kind", self.kind, ("cxi", "images", "psana"))
        if self.kind == "psana":
            if not (self.exp and self.run is not None and self.detector):
                raise ConfigError("source.kind psana needs source.exp, source.run and source.detector")
        elif not self.files:
            raise ConfigError("source.files is empty: give at least one HDF5/CXI file or glob pattern")
        if self.max_events < 0:
            raise ConfigError("source.max_events must be >= 0 (0 means all events)")


@dataclass(frozen=True)
class GeometryConfig:
    """Detector geometry; values left null are read from the files (CXI instrument group)."""

    beam_center_fs: Optional[float] = None  #: pixels
    beam_center_ss: Optional[float] = None  #: pixels
    pixel_size_m: Optional[float] = None
    distance_m: Optional[float] = None
    wavelength_A: Optional[float] = None


@dataclass(frozen=True)
class DetectConfig:
    """Bragg-peak detection: ``peakfinder8`` (its parameter names and meaning) or ``auto``
    (parameter-free: thresholds from each frame's own robust statistics; the
    peakfinder8 parameters other than the pixel-count limits are then ignored)."""

    mode: str = "peakfinder8"
    backend: str = "auto"  #: auto | numpy | cupy
    adc_threshold: float = 0.0
    min_snr: float = 5.0
    min_pixel_count: int = 2
    max_pixel_count: int = 40
    local_bg_radius: int = 3
    min_res: float = 0.0  #: inner radius in pixels excluded from the search
    max_res: float = 1.0e9  #: outer radius in pixels
    max_num_peaks: int = 2048
    radial_iterations: int = 5

    def validate(self) -> None:
        _choice("detect.mode", self.mode, DETECT_MODES)
        _choice("detect.backend", self.backend, ("auto", "numpy", "cupy"))
        if self.min_pixel_count < 1 or self.max_pixel_count < self.min_pixel_count:
            raise ConfigError("detect: need 1 <= min_pixel_count <= max_pixel_count")
        if self.local_bg_radius < 1:
            raise ConfigError("detect.local_bg_radius must be >= 1 pixel")


@dataclass(frozen=True)
class DescriptorConfig:
    """Seed 000's descriptor: keypoint counts per (resolution shell x azimuthal sector)."""

    enabled: bool = True
    n_shells: int = 8
    n_sectors: int = 8
    d_max_A: float = 20.0  #: low-resolution edge of the first shell
    d_min_A: float = 1.5  #: high-resolution edge of the last shell
    #: shells equally spaced in ``inv_d`` (1/d: finer at low resolution, where a detector
    #: far away or at long wavelength sees all its peaks) or ``inv_d2`` (1/d^2, the
    #: layout of model files written before this option)
    shell_spacing: str = "inv_d"

    def validate(self) -> None:
        if self.n_shells < 1 or self.n_sectors < 1:
            raise ConfigError("descriptor.n_shells and descriptor.n_sectors must be >= 1")
        _choice("descriptor.shell_spacing", self.shell_spacing, ("inv_d", "inv_d2"))
        if not 0 < self.d_min_A < self.d_max_A:
            raise ConfigError("descriptor: need 0 < d_min_A < d_max_A (Angstrom)")


@dataclass(frozen=True)
class ClassifyConfig:
    """Hit/miss decision: a torch model file, or a peak-count rule when ``model`` is null."""

    model: Optional[str] = None  #: model file written by ``mpireduce train``
    batch_size: int = 64
    threshold: Optional[float] = None  #: null = the threshold stored in the model file
    min_peaks: int = 10  #: peak-count rule: hit when n_peaks >= min_peaks (no model)
    device: str = "auto"  #: auto | cpu | cuda
    #: multi-class models (SPI): the classes whose events are kept, e.g. [single];
    #: null = the hit classes stored in the model file
    keep_classes: Optional[tuple] = None

    def validate(self) -> None:
        _choice("classify.device", self.device, ("auto", "cpu", "cuda"))
        if self.keep_classes is not None and not self.keep_classes:
            raise ConfigError("classify.keep_classes is empty: list the classes to keep, or set it to null")
        if self.batch_size < 1:
            raise ConfigError("classify.batch_size must be >= 1")


@dataclass(frozen=True)
class OutputConfig:
    """The reduced CXI file rank 0 writes."""

    path: str = "reduced.cxi"
    compression: str = "bitshuffle-lz4"  #: bitshuffle-lz4 | zstd | gzip | none
    keep: str = "hits"  #: hits = write frames classified as hits; none = tables only
    checksum_inputs: bool = True  #: sha256 of every input file into the provenance

    def validate(self) -> None:
        _choice("output.compression", self.compression, COMPRESSION_CHOICES)
        _choice("output.keep", self.keep, ("hits", "none"))


@dataclass(frozen=True)
class RunConfig:
    """How work is split over MPI ranks."""

    chunk_size: int = 8  #: events per work unit; chunks go round-robin to ranks
    threads_per_rank: int = 1  #: numpy/torch threads on each rank
    max_pending_sends: int = 4  #: chunks a rank may have in flight to rank 0
    prefetch: bool = True  #: read the next chunk in a background thread while computing this one

    def validate(self) -> None:
        if self.chunk_size < 1 or self.threads_per_rank < 1 or self.max_pending_sends < 1:
            raise ConfigError("run.chunk_size, run.threads_per_rank and run.max_pending_sends must be >= 1")


@dataclass(frozen=True)
class JobConfig:
    """A whole reduction job."""

    schema_version: int = SCHEMA_VERSION
    source: SourceConfig = field(default_factory=SourceConfig)
    geometry: GeometryConfig = field(default_factory=GeometryConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    descriptor: DescriptorConfig = field(default_factory=DescriptorConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    run: RunConfig = field(default_factory=RunConfig)
    base_dir: str = field(default=".", metadata={"internal": True})

    def validate(self) -> "JobConfig":
        if self.schema_version != SCHEMA_VERSION:
            raise ConfigError(
                f"schema_version {self.schema_version} is not supported; this mpireduce reads {SCHEMA_VERSION}"
            )
        for section in (self.source, self.detect, self.descriptor, self.classify, self.output, self.run):
            section.validate()
        return self

    def resolve_path(self, path: str) -> Path:
        """A path from the config, taken relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def to_dict(self) -> dict:
        """The config as plain data (no internal fields), for YAML/JSON output."""
        data = dataclasses.asdict(self)
        data.pop("base_dir")
        data["source"]["files"] = list(data["source"]["files"])
        if data["classify"]["keep_classes"] is not None:
            data["classify"]["keep_classes"] = list(data["classify"]["keep_classes"])
        return data

    def to_yaml(self) -> str:
        """Canonical YAML text of the resolved config (stable key order)."""
        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    def sha256(self) -> str:
        return hashlib.sha256(self.to_yaml().encode()).hexdigest()


def load_config(path: Union[str, Path], overrides: Optional[dict] = None) -> JobConfig:
    """Read a YAML job file into a validated :class:`JobConfig`."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read job file {path}: {exc.strerror}; check the path") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"job file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"job file {path} must hold a mapping of sections (source:, detect:, ...)")
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    return config_from_dict(data, base_dir=str(path.resolve().parent))


def config_from_dict(data: dict, base_dir: str = ".") -> JobConfig:
    """Build a validated :class:`JobConfig` from plain data (e.g. parsed YAML)."""
    config = _build(JobConfig, data, "")
    return dataclasses.replace(config, base_dir=base_dir).validate()


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    valid = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("internal")]
    kwargs = {}
    for key, value in data.items():
        if key not in valid:
            raise ConfigError(_unknown_key_message(where, key, valid))
        name = f"{where}.{key}" if where else key
        kwargs[key] = _convert(hints[key], value, name)
    return cls(**kwargs)


def _convert(hint, value, name: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value if value is not None else {}, name)
    optional = get_origin(hint) is Union and type(None) in get_args(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name} must not be null")
    base = next(a for a in get_args(hint) if a is not type(None)) if optional else hint
    if base is tuple:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{name} must be a string or a list of strings")
        return tuple(items)
    if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base is bool and isinstance(value, bool):
        return value
    if base in (int, str) and isinstance(value, base) and not isinstance(value, bool):
        return value
    raise ConfigError(f"{name} must be {base.__name__}, got {value!r}")


def _unknown_key_message(where: str, key: str, valid: list) -> str:
    section = where or "top level"
    close = difflib.get_close_matches(str(key), valid, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
    return f"unknown config key {key!r} in {section}: {hint}"


def _choice(name: str, value: str, choices) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), list(choices), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{name} = {value!r} is not one of {', '.join(choices)}{hint}")


def _set_dotted(data: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
