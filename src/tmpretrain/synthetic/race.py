"""One car on one track, stepped every 10 ms: its place on the centre line, progress, laps, off-road state.

Shared by the data generator (generate.py) and the closed-loop environment (env.py), so a car in evaluation moves,
is located and is timed exactly as in the synthesized replays. The car starts standing START_BEHIND_M before the
start line.

Track limits, as a racing game has them: checkpoint gates stand across the road (kerbs included) every
GATE_SPACING_M, the first on the start line. A gate counts only when the car crosses it forwards, on the road, and
only the next one in order counts. Progress (metres past the start line, negative before it) is the road distance
of the last gate passed plus how far the car is beyond it *on the road* and short of the next gate: leaving the road
drops it back to the gate, and no distance beyond a gate the car has not passed is ever credited. So a cut across
the grass earns at most the road inside one gap, and a car that skips a gate gains nothing until it goes back. A
lap counts when every gate has been passed in order and the start line is crossed again; its time runs from the
step the car first crosses the start line to that step.
"""

from __future__ import annotations

import math

from ..actions import N_ACTIONS, action_inputs
from . import car as carmod
from .track import Track

STEP_MS = carmod.STEP_MS
CAMERA_LAG_S = 0.25  # time constant of the chase camera's heading
START_BEHIND_M = 5  # the car starts this far before the start line, standing still
LOCATE_WINDOW = 12  # centre-line samples searched either side of the last index (the car moves < 1 m a step)
GATE_SPACING_M = 10.0  # checkpoint gates along the centre line; the most road a cut inside one gap can skip
RELOCATE_OFF_ROAD_M = 2.0  # beyond the road's edge by this much, the car is located on the whole centre line


# (accelerate, brake, left, right) of each action, looked up every 10 ms step.
_KEYS = [tuple(action_inputs(a)[k] for k in ("accelerate", "brake", "left", "right")) for a in range(N_ACTIONS)]


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
        # Gates: centre-line indices, the start line first; gate_s: their road distance past the start line.
        step = max(1, int(round(GATE_SPACING_M / track.ds)))
        self.gate_idx = list(range(0, n - step // 2, step))
        self.gate_s = [i * track.ds for i in self.gate_idx]
        self.gates_passed = 0  # over the whole race: laps * len(gate_idx) + 1 once a lap is complete
        self.centre_progress = -float(START_BEHIND_M)  # where the car is along the centre line, whatever it drove
        self.progress = self.centre_progress  # credited: see the module docstring
        self.lateral = 0.0
        self.on_road = True
        self._aim_at_next_gate()
        self._gate_side = self._side_of_next_gate()[0]
        self.lap_start_ms: int | None = None
        self.lap_times: list[int] = []
        self.laps = 0

    def gate_distance(self, passes: int) -> float:
        """Road distance past the start line of the gate that would be the `passes`-th passed (1 = start line)."""
        if passes <= 0:
            return -float(START_BEHIND_M)
        lap, j = divmod(passes - 1, len(self.gate_idx))
        return lap * self.track.length + self.gate_s[j]

    def _aim_at_next_gate(self) -> None:
        """The next gate's line (point, tangent, normal) and the road distances of the last and next gates."""
        track = self.track
        g = self.gate_idx[self.gates_passed % len(self.gate_idx)]
        self._gate_line = (*track.points[g].tolist(), *track.tangents[g].tolist(), *track.normals[g].tolist())
        self._last_gate_m = self.gate_distance(self.gates_passed)
        self._next_gate_m = self.gate_distance(self.gates_passed + 1)

    def _side_of_next_gate(self) -> tuple[float, float]:
        """(along, lateral) of the car relative to the next gate: along < 0 before its line, |lateral| on it."""
        px, py, tx, ty, nx, ny = self._gate_line
        dx, dy = self.car.x - px, self.car.y - py
        return dx * tx + dy * ty, dx * nx + dy * ny

    def locate(self, t_ms: int) -> None:
        """Update centre-line index, gates, progress, lap times and the on-road flag for the car's current state."""
        track = self.track
        n = track.n
        new_idx, lat = track.locate_near(
            self.car.x, self.car.y, self.idx, LOCATE_WINDOW, self._road_half_width + RELOCATE_OFF_ROAD_M
        )
        delta = (new_idx - self.idx + n // 2) % n - n // 2
        self.centre_progress += delta * track.ds
        self.idx = new_idx
        self.lateral = lat
        self.on_road = abs(lat) <= self._road_half_width

        before = self._gate_side
        along, gate_lat = self._side_of_next_gate()
        if before < 0.0 <= along and abs(gate_lat) <= self._road_half_width:
            self.gates_passed += 1
            self._aim_at_next_gate()
            along, _ = self._side_of_next_gate()
            if self.gates_passed == 1:
                self.lap_start_ms = t_ms
            elif self.gates_passed % len(self.gate_idx) == 1:  # the start line again, every gate passed in order
                self.lap_times.append(t_ms - self.lap_start_ms)
                self.lap_start_ms = t_ms
                self.laps += 1
        self._gate_side = along

        beyond = self.on_road and self._last_gate_m <= self.centre_progress <= self._next_gate_m
        self.progress = self.centre_progress if beyond else self._last_gate_m

    def advance(self, action: int) -> None:
        """Hold `action` for one 10 ms step; the chase camera's heading follows the car's with a lag."""
        car = self.car
        carmod.step(car, *_KEYS[action], self.on_road)
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
