"""``mpireduce run JOB.yaml``: the reduction job, plain or under ``mpiexec -n N``.

1. Rank 0 checks everything a job needs (config, inputs, model, output path) before
   any work starts, and broadcasts either the plan or the error (exit 2 on all ranks).
2. Every rank reads, detects and classifies its chunks; rank 0 also writes results in
   chunk order as they arrive (see :mod:`mpireduce.gather`).
3. Rank 0 adds statistics and provenance and renames the file into place.

An unhandled exception on any rank aborts the whole MPI job (no hang, no final file).
"""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from .config import JobConfig, load_config
from .errors import ConfigError
from .geometry import DetectorGeometry
from .sources import EventIndex

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    """Arguments of ``mpireduce run``."""
    parser.add_argument("job", help="job file (YAML); see jobs/demo.yaml")
    parser.add_argument("-o", "--output", help="output file (overrides output.path)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set detect.min_snr=6 (repeatable)")


def main(args) -> int:
    """Run the job on ``MPI.COMM_WORLD`` (the only place the communicator is created)."""
    from mpi4py import MPI

    return run_job(args, MPI.COMM_WORLD)


@dataclass(frozen=True)
class Plan:
    """Everything rank 0 checked, broadcast to all ranks."""

    config: JobConfig
    index: EventIndex
    geometry: DetectorGeometry
    output: Path


def run_job(args, comm) -> int:
    """Check, then reduce; returns the exit status of this rank."""
    plan = _checked_plan(args, comm)
    if plan is None:
        return 2
    try:
        _reduce(plan, comm)
    except Exception:
        log.error("rank %d failed:\n%s", comm.Get_rank(), traceback.format_exc())
        if comm.Get_size() > 1:
            comm.Abort(1)
        raise
    return 0


def _checked_plan(args, comm) -> Optional[Plan]:
    """Rank 0 builds and checks the plan; every rank gets it, or None after an error."""
    plan, error = None, None
    if comm.Get_rank() == 0:
        try:
            plan = _make_plan(args)
        except Exception as exc:  # any failure must reach the other ranks, or they wait forever
            error = exc
    else:
        _warm_up_imports(args)
    plan, failed = comm.bcast((plan, error is not None), root=0)
    if error is not None:
        raise error  # rank 0: an MpiReduceError prints as one line (exit 2); anything else as a traceback
    return None if failed else plan


def _make_plan(args) -> Plan:
    from .instrument import load_geometry
    from .sources import open_source
    from .writer import check_output_path

    config = load_config(args.job, overrides=_parse_overrides(args.overrides))
    output = Path(args.output) if args.output else config.resolve_path(config.output.path)
    check_output_path(output, args.overwrite)
    config = _with_resolved_paths(config)
    index = open_source(config)
    geometry = load_geometry(config, index)
    _make_detector(config, geometry)  # fails now on e.g. backend cupy without a GPU
    _warn_detector_mismatch(_make_classifier(config, geometry), config)  # fails now on a missing or corrupt model
    return Plan(config, index, geometry, output)


def _warm_up_imports(args) -> None:
    """While rank 0 checks the job, other ranks import what they will need (torch takes seconds)."""
    try:
        if load_config(args.job, overrides=_parse_overrides(args.overrides)).classify.model:
            import torch  # noqa: F401
    except Exception:  # noqa: BLE001  rank 0 reports the error
        pass


def _parse_overrides(pairs: list) -> dict:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigError(f"--set {pair!r}: write KEY=VALUE, e.g. --set detect.min_snr=6")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def _with_resolved_paths(config: JobConfig) -> JobConfig:
    """Model file and psana data folder as absolute paths (they are relative to the job file)."""
    if config.classify.model:
        model = str(config.resolve_path(config.classify.model).resolve())
        config = dataclasses.replace(config, classify=dataclasses.replace(config.classify, model=model))
    if config.source.dir:
        folder = str(config.resolve_path(config.source.dir).resolve())
        config = dataclasses.replace(config, source=dataclasses.replace(config.source, dir=folder))
    return config


def _make_detector(config: JobConfig, geometry: DetectorGeometry):
    from .backend import get_backend
    from .detect import make_detector

    return make_detector(config.detect, geometry, get_backend(config.detect.backend))


def _make_classifier(config: JobConfig, geometry: Optional[DetectorGeometry] = None):
    """The job's classifier; ``geometry`` places a descriptor model's regions on this detector."""
    from .classify import make_classifier

    return make_classifier(config.classify, base_dir=config.base_dir, geometry=geometry)


def _warn_detector_mismatch(classifier, config: JobConfig) -> None:
    differences = getattr(classifier, "detect_differences", lambda _: {})(config.detect)
    for key, (trained, now) in differences.items():
        log.warning("detect.%s is %r but the model was trained with %r: its peaks input will differ; "
                    "retrain with --detect-config or match the setting", key, now, trained)


def _reduce(plan: Plan, comm) -> None:
    from .gather import (RankStats, ResultCollector, ResultSender, chunk_bounds, my_chunks, n_chunks,
                         results_in_order)
    from .prefetch import PrefetchingReader
    from .process import ChunkProcessor
    from .provenance import hash_inputs, utc_now
    from .sources import FrameReader

    rank, size = comm.Get_rank(), comm.Get_size()
    config = plan.config
    started = utc_now()
    detector = _make_detector(config, plan.geometry)
    classifier = _make_classifier(config, plan.geometry)
    _limit_threads(config.run.threads_per_rank)
    exchange = (ResultCollector if rank == 0 else ResultSender)(comm, config.run.max_pending_sends)
    reader = FrameReader(plan.index, config.source)
    if config.run.prefetch:
        reader = PrefetchingReader(reader)
    processor = ChunkProcessor(reader, detector, classifier, plan.geometry.mask,
                               keep_frames=config.output.keep == "hits", between_events=exchange.progress,
                               descriptor=_make_descriptor(config, plan.geometry))
    total = n_chunks(plan.index.n_events, config.run.chunk_size)
    stats = RankStats(rank=rank, host=_host())
    writer = _open_writer(plan, processor.descriptor, classifier) if rank == 0 else None
    comm.Barrier()  # every rank ready: per-rank speed counts work, not start-up skew
    t0 = time.perf_counter()

    def bounds(chunk: int) -> tuple:
        return chunk_bounds(chunk, config.run.chunk_size, plan.index.n_events)

    def process(chunk: int):
        following = bounds(chunk + size) if chunk + size < total else None
        result = processor.process(chunk, *bounds(chunk), rank, then=following)
        stats.add(result)
        return result

    if rank == 0:
        for result in results_in_order(comm, total, process, exchange):
            writer.append(result)
    else:
        for chunk in my_chunks(rank, size, total):
            exchange.send(process(chunk))
        exchange.flush()
    stats.seconds_wall = time.perf_counter() - t0
    processor.reader.close()
    hashes = hash_inputs(plan.index.files, comm) if config.output.checksum_inputs else {}
    all_stats = comm.gather(stats, root=0)
    if rank == 0:
        _finish(plan, writer, all_stats, hashes, started, detector.backend.name, classifier.describe(), comm)


def _make_descriptor(config: JobConfig, geometry: DetectorGeometry):
    """Seed 000's descriptor, or None when disabled or the geometry lacks the physics it needs."""
    if not config.descriptor.enabled:
        return None
    if not geometry.has_physics():
        log.warning("descriptor skipped: it needs geometry.pixel_size_m, distance_m and wavelength_A "
                    "(in the config or the input files)")
        return None
    from .detect.descriptor import Descriptor

    return Descriptor(config.descriptor, geometry)


def _open_writer(plan: Plan, descriptor, classifier):
    """Rank 0's output file, with a descriptor column and a multi-class model's class columns."""
    from .writer import ReducedWriter

    first = plan.index.files[0]
    return ReducedWriter(plan.output, geometry=plan.geometry, frame_dtype=first.dtype,
                         compression=plan.config.output.compression, max_peaks=plan.config.detect.max_num_peaks,
                         source_files=[f.path for f in plan.index.files],
                         descriptor_names=tuple(descriptor.names) if descriptor else (),
                         class_names=tuple(getattr(classifier, "class_names", None) or ()))


def _finish(plan: Plan, writer, all_stats: list, hashes: dict, started: str, backend: str, classifier: dict,
            comm) -> None:
    from .provenance import job_provenance, utc_now
    from .report import job_statistics, print_summary

    statistics = job_statistics(all_stats)
    provenance = job_provenance(plan.config, plan.index.files, hashes, started=started, ended=utc_now(),
                                mpi_size=comm.Get_size(), hosts=sorted({s.host for s in all_stats}),
                                backend=backend, classifier=classifier)
    path = writer.finish(statistics, provenance)
    print_summary(path, statistics, plan.index)


def _limit_threads(n: int) -> None:
    """Keep torch to ``n`` threads so ranks sharing a node don't oversubscribe its cores."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def _host() -> str:
    from mpi4py import MPI

    return MPI.Get_processor_name()
