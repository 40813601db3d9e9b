"""Job statistics from per-rank counts, and the one-paragraph summary users read first."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path


def job_statistics(all_stats: list) -> dict:
    """Totals, hit rate and per-rank speed from the gathered :class:`RankStats`."""
    events = sum(s.events for s in all_stats)
    processed = sum(s.processed for s in all_stats)
    hits = sum(s.hits for s in all_stats)
    wall = max((s.seconds_wall for s in all_stats), default=0.0)
    per_rank = [dict(dataclasses.asdict(s), frames_per_second=round(s.frames_per_second, 3)) for s in all_stats]
    return {
        "events_read": events,
        "events_processed": processed,
        "events_skipped": sum(s.skipped for s in all_stats),
        "events_kept": hits,
        "hit_rate": hits / processed if processed else 0.0,
        "seconds_wall": wall,
        "frames_per_second": events / wall if wall > 0 else 0.0,
        "mpi_size": len(all_stats),
        "per_rank": per_rank,
    }


def print_summary(path: Path, statistics: dict, index) -> None:
    """Print what a job did: counts, hit rate, speed and the reduction ratio."""
    bytes_in = sum(f.size_bytes for f in index.files)
    bytes_out = os.path.getsize(path)
    s = statistics
    print(
        f"mpireduce run: {s['events_read']} events on {s['mpi_size']} rank(s) in {s['seconds_wall']:.1f} s "
        f"({s['frames_per_second']:.1f} frames/s, "
        f"{s['frames_per_second'] / max(s['mpi_size'], 1):.1f} per rank)\n"
        f"  kept {s['events_kept']} ({100 * s['hit_rate']:.1f}% hit rate), skipped {s['events_skipped']} bad frames\n"
        f"  wrote {path} ({bytes_out / 1e6:.1f} MB; inputs {bytes_in / 1e6:.1f} MB; "
        f"reduction {bytes_in / max(bytes_out, 1):.1f}x)",
        flush=True,
    )
