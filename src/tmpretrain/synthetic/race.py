"""One car on one track, stepped every 10 ms: its place on the centre line, progress, laps, off-road state.

Shared by the data generator (generate.py) and the closed-loop environment (env.py), so a car in evaluation moves,
is located and is timed exactly as in the synthesized replays. The car starts standing START_BEHIND_M before the
start line; progress is metres past the start line along the centre line (negative before it), and a lap's time
runs from the step the car crosses the line to the step it crosses it again.
"""

from __future__ import annotations

import math

from ..actions import action_inputs
from . import car as carmod
from .track import Track

STEP_MS = carmod.STEP_MS
CAMERA_LAG_S = 0.25  # time constant of the chase camera's heading
START_BEHIND_M = 5  # the car starts this far before the start line, standing still
LOCATE_WINDOW = 12  # centre-line samples searched either side of the last index (the car moves < 1 m a step)


def capture_step(t_ms: int) -> int:
    """The 10 ms step whose state a frame stamped `t_ms` shows (the generator's rounding)."""
    return int(round(t_ms / STEP_MS))


class Race:
    """Call `locate(t_ms)` for the state at step k (t_ms = k * STEP_MS), then `advance(action)` to step k + 1."""

    def __init__(self, track: Track):
        self.track = track
        n = track.n
        self.start_idx = (n - int(round(START_BEHIND_M / track.ds))) % n
        sx, sy = track.points[self.start_idx]
        yaw0 = track.heading_at(self.start_idx)
        self.car = carmod.CarState(x=float(sx), y=float(sy), yaw=yaw0)
        self.cam_heading = yaw0
        self._cam_alpha = 1.0 - math.exp(-carmod.DT / CAMERA_LAG_S)
        self._road_half_width = track.half_width + track.kerb_width
        self.idx = self.start_idx
        self.progress = -float(START_BEHIND_M)  # metres past the start line
        self.lateral = 0.0
        self.on_road = True
        self.lap_start_ms: int | None = None
        self.lap_times: list[int] = []
        self.laps = 0

    def locate(self, t_ms: int) -> None:
        """Update centre-line index, progress, lap times and the on-road flag for the car's current state."""
        track = self.track
        n = track.n
        new_idx, lat, _ = track.locate(self.car.x, self.car.y, self.idx, window=LOCATE_WINDOW)
        delta = (new_idx - self.idx + n // 2) % n - n // 2
        self.progress += delta * track.ds
        self.idx = new_idx
        lap_now = math.floor(self.progress / track.length)
        if lap_now >= 0 and self.lap_start_ms is None:
            self.lap_start_ms = t_ms
        if lap_now > self.laps and self.lap_start_ms is not None:
            self.lap_times.append(t_ms - self.lap_start_ms)
            self.lap_start_ms = t_ms
            self.laps = lap_now
        self.lateral = lat
        self.on_road = abs(lat) <= self._road_half_width

    def advance(self, action: int) -> None:
        """Hold `action` for one 10 ms step; the chase camera's heading follows the car's with a lag."""
        keys = action_inputs(action)
        car = self.car
        carmod.step(car, keys["accelerate"], keys["brake"], keys["left"], keys["right"], self.on_road)
        self.cam_heading += (car.yaw - self.cam_heading) * self._cam_alpha

    def meta_snapshot(self, t_ms: int) -> dict:
        """The race state as the capture manifest's `meta` records it (the float inputs derive from it)."""
        car = self.car
        vx, vy = car.velocity()
        return {
            "time_ms": t_ms,
            "position": [round(car.x, 3), round(car.y, 3), 0.0],
            "velocity": [round(vx, 3), round(vy, 3), 0.0],
            "yaw": round(car.yaw, 5),
            "speed": round(car.speed, 3),
            "steer": round(car.steer, 5),
            "on_road": bool(self.on_road),
            "lateral_offset": round(self.lateral, 3),
            "progress_m": round(self.progress, 2),
        }
