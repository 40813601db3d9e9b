"""``mpireduce inspect OUT.h5``: what a user wants to see first about a reduced file."""

from __future__ import annotations

import json
import os

import numpy as np

from .errors import InputError


def add_arguments(parser) -> None:
    """Arguments of ``mpireduce inspect``."""
    parser.add_argument("output", help="reduced file written by mpireduce run")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def main(args) -> int:
    """Print counts, hit rate, reduction ratio, per-rank speed and provenance."""
    summary = summarize(args.output)
    if args.json:
        print(json.dumps(summary, indent=1, default=str))
    else:
        print(format_summary(summary))
    return 0


def summarize(path: str) -> dict:
    """The summary of a reduced file as plain data."""
    import h5py
    import hdf5plugin  # noqa: F401

    from .provenance import read_provenance

    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"cannot open {path} as HDF5 ({exc}); is it a finished mpireduce output?") from exc
    with handle:
        if "mpireduce/provenance" not in handle:
            raise InputError(f"{path} has no /mpireduce/provenance: not a finished mpireduce output")
        stats = handle["mpireduce/statistics"]
        events = handle["mpireduce/events"]
        status_names = json.loads(events["status"].attrs["names"])
        status = events["status"][()]
        prov = read_provenance(handle["mpireduce/provenance"])
        return {
            "file": path,
            "statistics": {k: _plain(v) for k, v in stats.attrs.items()},
            "per_rank": json.loads(stats["per_rank"][()]),
            "status_counts": {name: int((status == i).sum()) for i, name in enumerate(status_names)},
            "kept_frames": int(handle["entry_1/data_1/data"].shape[0]),
            "mean_peaks_per_frame": float(events["n_peaks"][()].mean()) if len(status) else 0.0,
            "bytes_in": sum(i["size_bytes"] for i in prov["inputs"]),
            "bytes_out": os.path.getsize(path),
            "provenance": prov,
            "predicted_classes": _predicted_classes(events),
        }


def _predicted_classes(events) -> dict:
    """Events per most likely class of a multi-class model (``{}`` without class scores)."""
    if "class_scores" not in events:
        return {}
    names = json.loads(events["class_scores"].attrs["columns"])
    scores = events["class_scores"][()]
    ok = ~np.isnan(scores).any(axis=1)
    best = scores[ok].argmax(axis=1)
    return {name: int((best == i).sum()) for i, name in enumerate(names)}


def format_summary(s: dict) -> str:
    """Human-readable text of :func:`summarize`'s result."""
    st, prov = s["statistics"], s["provenance"]
    lines = [
        f"{s['file']}",
        f"  events {st['events_read']}: processed {st['events_processed']}, kept {st['events_kept']} "
        f"({100 * st['hit_rate']:.2f}% hit rate), skipped {st['events_skipped']} "
        f"({', '.join(f'{k} {v}' for k, v in s['status_counts'].items() if k != 'ok' and v) or 'none'})",
        f"  peaks per frame (mean): {s['mean_peaks_per_frame']:.1f}",
        *([f"  most likely class: {', '.join(f'{k} {v}' for k, v in s['predicted_classes'].items())}"]
          if s.get("predicted_classes") else []),
        f"  reduction: {s['bytes_in'] / 1e6:.1f} MB in -> {s['bytes_out'] / 1e6:.1f} MB out "
        f"= {s['bytes_in'] / max(s['bytes_out'], 1):.1f}x",
        f"  speed: {st['frames_per_second']:.1f} frames/s on {st['mpi_size']} rank(s), wall {st['seconds_wall']:.1f} s",
    ]
    for r in s["per_rank"]:
        lines.append(f"    rank {r['rank']} on {r['host']}: {r['events']} events, {r['frames_per_second']:.1f} frames/s "
                     f"(read {r['seconds_read']:.1f} s, detect {r['seconds_detect']:.1f} s, "
                     f"classify {r['seconds_classify']:.1f} s)")
    clf = prov.get("classifier", {})
    lines += [
        f"  provenance: {prov['program']} {prov['version']} (git {str(prov.get('git_hash'))[:12]}"
        f"{', dirty' if prov.get('git_dirty') else ''}), {prov['start_utc']} -> {prov['end_utc']}",
        f"    command: {prov['command_line']}",
        f"    config sha256 {prov['config_sha256'][:16]}..., backend {prov.get('array_backend')}, "
        f"classifier {clf.get('kind')} {str(clf.get('model_sha256', clf.get('min_peaks', '')))[:16]}",
        f"    inputs: {len(prov['inputs'])} file(s); hosts: {', '.join(prov['hosts'])}",
        f"    libraries: {', '.join(f'{k} {v}' for k, v in prov['libraries'].items())}",
    ]
    return "\n".join(lines)


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value
