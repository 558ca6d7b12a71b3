"""A small planar car model stepped every 10 ms, like the game engine.

The four keys (accelerate, brake, left, right) drive it. Longitudinal: throttle acceleration that falls with
speed, coast and brake decelerations, quadratic drag, extra drag on grass. Lateral: the front-wheel angle moves
toward a speed-dependent lock at a limited rate; the yaw rate follows the bicycle model but is capped by a lateral
grip limit (lower on grass and while braking). Braking while steering boosts the yaw rate beyond what grip holds,
so the heading runs ahead of the velocity: a TrackMania-style brake drift. A step is one compiled function of plain
floats (numba), so the generator and the env are not bound by physics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from numba import njit

STEP_MS = 10
DT = STEP_MS / 1000.0

WHEELBASE = 2.6  # m
THROTTLE_ACCEL = 16.0  # m/s^2 at standstill
THROTTLE_FADE_SPEED = 90.0  # m/s where throttle acceleration reaches zero
COAST_DECEL = 1.0  # m/s^2 rolling resistance
BRAKE_DECEL = 14.0  # m/s^2, brake alone
ACCEL_BRAKE_DECEL = 8.0  # m/s^2, brake with throttle held (drift brake)
DRAG = 0.0012  # 1/m: drag deceleration = DRAG * v^2
GRASS_DRAG = 4.0  # m/s^2 constant extra on grass
GRASS_DRAG_LINEAR = 0.3  # 1/s extra per m/s on grass: top speed there about 23 m/s (road: 62)
STEER_LOCK_LOW = 0.55  # rad front-wheel lock at standstill
STEER_LOCK_SPEED = 12.0  # m/s: lock = LOW / (1 + v / SPEED)
STEER_RATE = 1.6  # rad/s front-wheel angle rate limit
GRIP = 20.0  # m/s^2 lateral grip on road
GRASS_GRIP = 0.45  # grip factor on grass
BRAKE_GRIP = 0.75  # grip factor while braking
DRIFT_YAW_BOOST = 1.6  # yaw-rate factor while braking and steering
SCRUB = 0.6  # cornering drag: SCRUB * lateral acceleration (tyre scrub slows the car in turns)


def steer_lock(speed: float) -> float:
    return STEER_LOCK_LOW / (1.0 + speed / STEER_LOCK_SPEED)


def coast_decel(speed: float) -> float:
    """Deceleration (m/s^2, positive) of a coasting car on the road in a straight line."""
    return COAST_DECEL + DRAG * speed * speed


def max_curvature(speed: float, grip: float = GRIP) -> float:
    """Tightest path curvature (1/m) a held steering key gives at `speed` without sliding."""
    kin = math.tan(steer_lock(speed)) / WHEELBASE
    return min(kin, grip / max(speed * speed, 1.0))


@dataclass
class CarState:
    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    u: float = 0.0  # forward speed in the car frame (m/s)
    w: float = 0.0  # lateral speed in the car frame (+ left)
    steer: float = 0.0  # front-wheel angle (rad, + left)
    yaw_rate: float = 0.0

    @property
    def speed(self) -> float:
        return math.hypot(self.u, self.w)

    def velocity(self) -> tuple[float, float]:
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return self.u * c - self.w * s, self.u * s + self.w * c


def step(car: CarState, accelerate: bool, brake: bool, left: bool, right: bool, on_road: bool) -> None:
    """Advance `car` by one 10 ms step in place."""
    car.x, car.y, car.yaw, car.u, car.w, car.steer, car.yaw_rate = _step(
        car.x, car.y, car.yaw, car.u, car.w, car.steer, accelerate, brake, left, right, on_road
    )


@njit(cache=True, nogil=True)
def _step(x, y, yaw, u, w, steer, accelerate, brake, left, right, on_road):
    """One step of the model on plain floats (compiled: the generator and the env run millions of them)."""
    speed = math.hypot(u, w)
    # Steering: the wheel angle follows the key toward the speed-dependent lock, rate limited.
    key = (1 if left else 0) - (1 if right else 0)
    target = key * (STEER_LOCK_LOW / (1.0 + speed / STEER_LOCK_SPEED))
    max_delta = STEER_RATE * DT
    steer += max(-max_delta, min(max_delta, target - steer))

    grip = GRIP * (1.0 if on_road else GRASS_GRIP) * (BRAKE_GRIP if brake else 1.0)
    yaw_rate = u * math.tan(steer) / WHEELBASE
    cap = grip / max(abs(u), 1.0)
    if brake and key != 0:  # drifting
        yaw_rate *= DRIFT_YAW_BOOST
        cap *= DRIFT_YAW_BOOST
    yaw_rate = max(-cap, min(cap, yaw_rate))
    dyaw = yaw_rate * DT
    yaw += dyaw
    # The velocity keeps its world direction while the body turns: re-express it in the new car frame.
    c, s = math.cos(dyaw), math.sin(dyaw)
    u, w = u * c + w * s, -u * s + w * c
    # Lateral grip pulls the slip back toward zero, up to what the tyres hold.
    w_fix = grip * DT
    w = 0.0 if abs(w) <= w_fix else w - math.copysign(w_fix, w)

    # Longitudinal forces.
    if brake:
        a = -(ACCEL_BRAKE_DECEL if accelerate else BRAKE_DECEL)
    elif accelerate:
        a = THROTTLE_ACCEL * max(0.0, 1.0 - u / THROTTLE_FADE_SPEED)
    else:
        a = -COAST_DECEL
    a -= DRAG * u * abs(u) + SCRUB * abs(yaw_rate * u)
    if not on_road:
        a -= GRASS_DRAG + GRASS_DRAG_LINEAR * abs(u)
    u_new = u + a * DT
    if not accelerate and u > 0.0 and u_new < 0.0:
        u_new = 0.0  # braking or coasting stops the car, never reverses it
    u = max(u_new, 0.0)

    cy, sy = math.cos(yaw), math.sin(yaw)
    x += (u * cy - w * sy) * DT
    y += (u * sy + w * cy) * DT
    return x, y, yaw, u, w, steer, yaw_rate
