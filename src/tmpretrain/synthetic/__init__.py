"""Procedurally generated replays: the embedded default data (real captures need the Windows game).

track: closed tracks; car: the 10 ms car model; driver: the scripted driver; render: the chase-camera renderer;
generate: orchestration into the capture layout (`generate_dataset`).
"""

from .generate import generate_dataset, track_id

__all__ = ["generate_dataset", "track_id"]
