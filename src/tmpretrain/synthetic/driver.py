"""A scripted driver: pure pursuit for steering, a curvature-based speed plan for the pedals.

Steering: pure pursuit on the centre line with a look-ahead that grows with speed, a derivative damping term, a
deadband and a minimum hold time (a keyboard player taps, the car's rate-limited wheel smooths it). Pedals: the
speed plan is the corner speed sqrt(a_lat / kappa) propagated backwards with a deceleration the car really delivers
while coasting, so most slowing is lifting off; excess speed in a corner is shed with a drift brake
(accelerate + brake + steer). Each driver has its own style (grip margin, gains) and makes occasional mistakes:
late brakes (brake without throttle), lifts in corners (steer without throttle) and straight-line brake taps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..actions import action_from_inputs
from . import car as carmod
from .track import Track

HOLD_STEPS = 6  # 60 ms minimum hold of any key decision


@dataclass
class DriverStyle:
    lat_margin: float  # fraction of the car's grip the plan uses in corners
    plan_decel: float  # m/s^2 the plan assumes for slowing down beyond what coasting delivers
    lookahead_base: float  # m
    lookahead_gain: float  # s (m per m/s)
    damping: float  # s
    deadband: float  # fraction of the full-lock curvature
    brake_excess: float  # m/s over plan before drift braking in a corner
    coast_excess: float  # m/s over plan before lifting off
    mistake_rate: float  # mistakes per second

    @classmethod
    def sample(cls, rng: np.random.Generator) -> DriverStyle:
        return cls(
            lat_margin=float(rng.uniform(0.8, 0.95)),
            plan_decel=float(rng.uniform(0.5, 1.5)),
            lookahead_base=float(rng.uniform(5.0, 7.0)),
            lookahead_gain=float(rng.uniform(0.35, 0.5)),
            damping=float(rng.uniform(0.06, 0.12)),
            deadband=float(rng.uniform(0.3, 0.42)),
            brake_excess=float(rng.uniform(0.5, 1.0)),
            coast_excess=float(rng.uniform(0.3, 0.8)),
            mistake_rate=float(rng.uniform(0.08, 0.15)),
        )


def speed_plan(track: Track, style: DriverStyle) -> np.ndarray:
    """Target speed at every centre-line sample: corner speeds, then backward braking curves (loop closed)."""
    kappa = np.abs(track.curvature)
    # Pure pursuit cuts corners a little: plan on a slightly smoothed curvature.
    k = np.ones(9) / 9
    kappa = np.convolve(np.concatenate([kappa[-4:], kappa, kappa[:4]]), k, mode="valid")
    v = np.sqrt(style.lat_margin * carmod.GRIP / np.maximum(kappa, 1e-4))
    v = np.minimum(v, 90.0)
    n = len(v)
    for _ in range(2):  # twice around so the braking curves wrap past the start line
        for i in range(n - 1, -1, -1):
            nxt = v[(i + 1) % n]
            decel = style.plan_decel + carmod.coast_decel(nxt)
            lim = math.sqrt(nxt * nxt + 2 * decel * track.ds)
            if lim < v[i]:
                v[i] = lim
    return v


class Driver:
    def __init__(self, track: Track, style: DriverStyle, rng: np.random.Generator):
        self.track = track
        self.style = style
        self.rng = rng
        self.plan = speed_plan(track, style)
        self.steer_key = 0  # -1 right, 0, +1 left
        self.pedal = "accel"  # accel | coast | drift | brake | accel_brake
        self.steer_hold = 0
        self.pedal_hold = 0
        self.prev_f: float | None = None
        self.mistake: str | None = None
        self.mistake_steps = 0
        self.mistake_phase = 0

    def _maybe_start_mistake(self, excess: float) -> None:
        if self.mistake is not None:
            return
        if self.rng.random() >= self.style.mistake_rate * carmod.DT:
            return
        r = self.rng.random()
        if r < 0.5:
            self.mistake, self.mistake_steps = "late_brake", int(self.rng.integers(40, 90))
        elif r < 0.8:
            self.mistake, self.mistake_steps = "lift", int(self.rng.integers(15, 45))
        else:
            self.mistake, self.mistake_steps = "brake_tap", int(self.rng.integers(8, 20))
        self.mistake_phase = 0

    def act(self, car: carmod.CarState, idx: int) -> int:
        """The action for the next 10 ms step, given the car and its nearest centre-line index."""
        tr, st = self.track, self.style
        speed = car.speed
        n = tr.n

        # ---- steering: pure pursuit with damping, deadband and hold time
        look = st.lookahead_base + st.lookahead_gain * speed
        j = (idx + int(round(look / tr.ds))) % n
        tx, ty = tr.points[j]
        dx, dy = tx - car.x, ty - car.y
        alpha = math.atan2(dy, dx) - car.yaw
        alpha = (alpha + math.pi) % (2 * math.pi) - math.pi
        dist = max(math.hypot(dx, dy), 1.0)
        kappa_cmd = 2.0 * math.sin(alpha) / dist
        kmax = carmod.max_curvature(max(speed, 1.0))
        f = kappa_cmd / kmax
        df = 0.0 if self.prev_f is None else (f - self.prev_f) / carmod.DT
        self.prev_f = f
        f_d = f + st.damping * df
        if self.steer_hold > 0:
            self.steer_hold -= 1
        else:
            if f_d > st.deadband:
                key = 1
            elif f_d < -st.deadband:
                key = -1
            else:
                key = 0
            if key != self.steer_key:
                self.steer_key = key
                self.steer_hold = HOLD_STEPS - 1

        # ---- pedals: speed plan a little ahead of the car
        lead = (idx + int(round(0.3 * speed / tr.ds))) % n
        excess = speed - float(self.plan[lead])
        self._maybe_start_mistake(excess)
        steering = self.steer_key != 0
        if self.pedal_hold > 0:
            self.pedal_hold -= 1
            pedal = self.pedal
        elif self.mistake is not None:
            pedal = self._mistake_pedal(excess)
        elif excess > st.brake_excess and steering:
            pedal = "drift"
        elif excess > st.brake_excess + 2.5:
            pedal = "accel_brake"
        elif excess > st.coast_excess and (not steering or self.rng.random() < 0.02):
            pedal = "coast"  # lift off before corners; in corners the throttle stays on
        else:
            pedal = "accel"
        if pedal != self.pedal:
            self.pedal = pedal
            self.pedal_hold = HOLD_STEPS - 1

        if self.mistake is not None:
            self.mistake_steps -= 1
            if self.mistake_steps <= 0:
                self.mistake = None

        left, right = self.steer_key > 0, self.steer_key < 0
        p = self.pedal
        accelerate = p in ("accel", "drift", "accel_brake")
        brake = p in ("drift", "brake", "accel_brake")
        return action_from_inputs(accelerate, brake, left, right)

    def _mistake_pedal(self, excess: float) -> str:
        if self.mistake == "late_brake":
            # Keeps the throttle too long, then stamps on the brake without it.
            if self.mistake_phase == 0 and excess > self.style.brake_excess + 1.5:
                self.mistake_phase = 1
            if self.mistake_phase == 0:
                return "accel"
            return "brake" if excess > -1.0 else "accel"
        if self.mistake == "lift":
            return "coast"
        return "accel_brake"  # brake tap
