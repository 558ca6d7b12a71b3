"""Stage `ingest`: the capture tree at data.replays_dir -> the uint8 frame store at data.cache_dir."""

from __future__ import annotations

import time

from ..cache import build_cache
from ..errors import stage_entry
from ..params import load_params


@stage_entry
def main() -> None:
    params = load_params()
    start = time.perf_counter()
    report = build_cache(params.data, include_floats=params.data.include_floats)
    seconds = time.perf_counter() - start
    n = report["n_frames"]
    print(
        f"ingest: {n} frames from {report['n_replays']} replays in {seconds:.1f} s ({n / seconds:.0f} frames/s), "
        f"{report['n_skipped']} skipped -> {params.data.cache_dir}"
    )
    for item in report["skipped"][:20]:
        print(f"  skipped {item['path']}: {item['reason']}")
    if report["label_fallback_replays"]:
        print(
            f"  {len(report['label_fallback_replays'])} replays have no action timeline: their labels fall back "
            "to the nearest frame entry (see ingest_report.json)"
        )


if __name__ == "__main__":
    main()
