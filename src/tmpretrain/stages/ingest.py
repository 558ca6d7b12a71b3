"""Stage `ingest`: the capture tree at data.replays_dir -> the uint8 frame store at data.cache_dir."""

from __future__ import annotations

import signal
import sys
import time

from ..frame_store import build_frame_store
from ..params import load_params
from . import stage_entry


@stage_entry
def main() -> None:
    params = load_params()
    # A file name that is not valid UTF-8 (kept by Python as surrogates) must print, not end the stage.
    sys.stdout.reconfigure(errors="backslashreplace")
    if hasattr(signal, "SIGXFSZ"):  # past a file size limit (ulimit -f) a write fails (an error), not the process
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    start = time.perf_counter()
    report = build_frame_store(params.data)
    seconds = time.perf_counter() - start
    n = report["n_frames"]
    print(
        f"ingest: {n} frames from {report['n_replays']} replays in {seconds:.1f} s ({n / seconds:.0f} frames/s), "
        f"{report['n_skipped']} skipped -> {params.data.cache_dir}"
    )
    for item in report["skipped"][:20]:
        print(f"  skipped {item['path']}: {item['reason']}")
    if report["n_skipped"] > 20:
        print(f"  ... and {report['n_skipped'] - 20} more: {params.data.cache_dir}/ingest_report.json lists them all")
    if report["label_fallback_replays"]:
        print(
            f"  {len(report['label_fallback_replays'])} replays have no action timeline: their labels fall back "
            "to the nearest frame entry (see ingest_report.json)"
        )


if __name__ == "__main__":
    main()
