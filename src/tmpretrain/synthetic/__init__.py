"""Procedurally generated replays: the embedded default data (real captures need the Windows game).

track: closed tracks; car: the 10 ms car model; race: a car on a track (progress, laps, off road); driver: the
scripted driver; render: the chase-camera renderer; generate: orchestration into the capture layout
(`generate_dataset`); env: the same simulator as the Gymnasium env tmpretrain/SynthTrack-v0 (closed-loop evaluation).
"""

from .generate import generate_dataset, track_id

__all__ = ["generate_dataset", "track_id"]
