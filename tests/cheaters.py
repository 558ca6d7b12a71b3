"""Scripted drivers that try to beat the track limits, with full access to the car state (test tooling).

Each is a function (race, t_ms) -> action for the next 10 ms step. They steer by pure pursuit toward a target of
their choice and hold the throttle up to a speed cap, the way an RL agent would exploit a reward that pays for
position along the centre line rather than for road driven.
"""

from __future__ import annotations

import math

import numpy as np

from tmpretrain.actions import action_from_inputs
from tmpretrain.synthetic.driver import Driver, DriverStyle, speed_plan
from tmpretrain.synthetic.race import Race

ROAD_EDGE_M = 7.2  # half-width plus kerb: beyond it is grass


def steer_to(race: Race, tx: float, ty: float, max_speed: float) -> int:
    """Keys that turn the car toward (tx, ty), accelerating up to `max_speed` and braking well above it."""
    car = race.car
    alpha = (math.atan2(ty - car.y, tx - car.x) - car.yaw + math.pi) % (2 * math.pi) - math.pi
    left, right = alpha > 0.03, alpha < -0.03
    speed = car.speed
    return action_from_inputs(speed < max_speed, speed > max_speed + 3.0, left, right)


def _ahead(race: Race, metres: float, offset: float = 0.0) -> tuple[float, float]:
    track = race.track
    j = (race.idx + int(round(metres / track.ds))) % track.n
    p, nrm = track.points[j], track.normals[j]
    return float(p[0] + offset * nrm[0]), float(p[1] + offset * nrm[1])


def corner_cutter(lookahead_m: float = 45.0):
    """Pure pursuit on the centre line with a long look-ahead: it cuts every corner across the inside grass, at
    the expert's planned speeds."""
    plan: dict[int, np.ndarray] = {}

    def act(race: Race, t_ms: int) -> int:
        if id(race.track) not in plan:
            style = DriverStyle(0.95, 1.5, 6.0, 0.5, 0.1, 0.35, 1.0, 0.5, 0.0)
            plan[id(race.track)] = speed_plan(race.track, style)
        v = plan[id(race.track)]
        lead = (race.idx + int(round(0.5 * lookahead_m))) % race.track.n
        return steer_to(race, *_ahead(race, lookahead_m), max_speed=float(v[lead]) + 4.0)

    return act


def chord():
    """Straight across the infield at full throttle toward the centre line a third of a lap ahead, then pursuit."""
    target: dict = {}

    def act(race: Race, t_ms: int) -> int:
        track = race.track
        key = id(track)
        if key not in target:
            j = (race.idx + track.n // 3) % track.n
            target[key] = (j, *track.points[j])
        j, tx, ty = target[key]
        if math.hypot(tx - race.car.x, ty - race.car.y) > 15.0 and not target.get("done"):
            return steer_to(race, tx, ty, max_speed=90.0)
        target["done"] = True
        return steer_to(race, *_ahead(race, 12.0), max_speed=25.0)

    return act


def beside_the_road(offset_m: float = ROAD_EDGE_M + 4.0):
    """Pure pursuit on a line parallel to the road, on the grass beside it."""

    def act(race: Race, t_ms: int) -> int:
        return steer_to(race, *_ahead(race, 15.0, offset_m), max_speed=30.0)

    return act


def backwards():
    """Turns round at the start and drives the lap the wrong way."""

    def act(race: Race, t_ms: int) -> int:
        return steer_to(race, *_ahead(race, -15.0), max_speed=30.0)

    return act


def orbit(radius_fraction: float = 0.5):
    """Circles the track's centroid on the infield, crossing nothing it has to drive."""

    def act(race: Race, t_ms: int) -> int:
        track, car = race.track, race.car
        cx, cy = track.points.mean(axis=0)
        r = radius_fraction * float(np.median(np.hypot(*(track.points - (cx, cy)).T)))
        a = math.atan2(car.y - cy, car.x - cx) + 0.3
        return steer_to(race, cx + r * math.cos(a), cy + r * math.sin(a), max_speed=30.0)

    return act


CHEATERS = {
    "corner_cutter": corner_cutter,
    "chord": chord,
    "beside_the_road": beside_the_road,
    "backwards": backwards,
    "orbit": orbit,
}


def drive(race: Race, controller, seconds: float = 120.0) -> dict:
    """Run `controller` on `race` for up to `seconds` (or one lap). Returns the credited progress, the lap time,
    the off-road share and, computed independently of the race's gates, the road actually driven: the distinct
    centre-line samples the car was nearest to while on the road."""
    track = race.track
    driven: set[int] = set()
    off = 0
    steps = int(seconds * 100)
    k = 0
    for k in range(steps):
        t_ms = k * 10
        race.locate(t_ms)
        if race.on_road:
            driven.add(track.locate_global(race.car.x, race.car.y))
        else:
            off += 1
        if race.laps >= 1:
            break
        race.advance(controller(race, t_ms))
    return {
        "progress_m": race.progress,
        "lap_time_s": race.lap_times[0] / 1000.0 if race.lap_times else None,
        "offroad_fraction": off / (k + 1),
        "road_driven_m": len(driven) * track.ds,
    }


def table(n_tracks: int = 10, seconds: float = 90.0) -> list[str]:
    """Each cheater on held-out tracks 0 .. n_tracks - 1: laps finished, its best lap over the expert's, and the
    largest credited progress over the road it drove."""
    from tmpretrain.synthetic.env import heldout_track

    rows = {name: [] for name in CHEATERS}
    for seed in range(n_tracks):
        track = heldout_track(seed)
        rng = np.random.default_rng(0)
        expert = Driver(track, DriverStyle.sample(rng), rng)
        expert_lap = drive(Race(track), lambda race, t, expert=expert: expert.act(race.car, race.idx))["lap_time_s"]
        for name, make in CHEATERS.items():
            r = drive(Race(track), make(), seconds)
            lap = r["lap_time_s"] / expert_lap if r["lap_time_s"] else None
            rows[name].append((lap, (r["progress_m"] + 5.0) / max(r["road_driven_m"], 1.0), r["offroad_fraction"]))
    lines = [f"{'driver':16s} finished  best lap/expert  credited/driven (max)  off road (mean)"]
    for name, rs in rows.items():
        laps = [lap for lap, _, _ in rs if lap is not None]
        best = f"{min(laps):.2f}" if laps else "-"
        worst = max(c for _, c, _ in rs)
        off = np.mean([o for *_, o in rs])
        lines.append(f"{name:16s} {len(laps):>3d}/{n_tracks:<4d} {best:>15s}  {worst:>21.2f}  {off:>15.2f}")
    return lines


if __name__ == "__main__":  # python tests/cheaters.py [n_tracks]: the table in docs/evaluation.md
    import sys

    print("\n".join(table(int(sys.argv[1]) if len(sys.argv) > 1 else 10)))
