"""Track limits: scripted cheaters with full access to the car state neither beat the expert nor get credit for
road they did not drive; the expert still finishes every held-out track of the default protocol; grass is slow."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from cheaters import CHEATERS, drive
from tmpretrain.actions import ACTION_NAMES
from tmpretrain.params import EvalParams
from tmpretrain.synthetic import car as carmod
from tmpretrain.synthetic.driver import Driver, DriverStyle
from tmpretrain.synthetic.env import ENV_ID, heldout_track
from tmpretrain.synthetic.race import GATE_SPACING_M, START_BEHIND_M, Race

TRACKS = [0, 1, 2]


def expert_lap_s(track) -> float:
    rng = np.random.default_rng(0)
    driver = Driver(track, DriverStyle.sample(rng), rng)
    result = drive(Race(track), lambda race, t: driver.act(race.car, race.idx))
    assert result["lap_time_s"] is not None and result["offroad_fraction"] == 0.0
    return result["lap_time_s"]


@pytest.mark.parametrize("name", sorted(CHEATERS))
def test_a_cheater_never_beats_the_expert_nor_gets_road_it_did_not_drive(name):
    for seed in TRACKS:
        track = heldout_track(seed)
        race = Race(track)
        result = drive(race, CHEATERS[name](), seconds=60.0)
        if result["lap_time_s"] is not None:
            assert result["lap_time_s"] >= expert_lap_s(track), (name, seed, result)
        # Credit (from the start position) never exceeds the road driven plus what a cut inside one gap can skip.
        credited = result["progress_m"] + START_BEHIND_M
        assert credited <= result["road_driven_m"] + GATE_SPACING_M + 1.0, (name, seed, result)


def test_without_the_gates_the_cutters_would_have_been_credited():
    """The cheaters are real: measured along the centre line (the old progress), the chord and the corner cutter
    cover far more than the road they drove; the gates credit them none of it."""
    gained = {}
    for name in ("chord", "corner_cutter"):
        race = Race(heldout_track(0))
        result = drive(race, CHEATERS[name](), seconds=20.0)
        gained[name] = race.centre_progress - result["progress_m"]
    assert gained["chord"] > 100.0 and gained["corner_cutter"] > 100.0, gained


def test_the_expert_finishes_every_held_out_track_of_the_default_protocol_cleanly():
    for seed in range(EvalParams().n_tracks):
        track = heldout_track(seed)
        race = Race(track)
        rng = np.random.default_rng([seed, 1])
        driver = Driver(track, DriverStyle.sample(rng), rng)
        result = drive(race, lambda race, t, driver=driver: driver.act(race.car, race.idx), seconds=90.0)
        assert result["lap_time_s"] is not None, seed
        assert result["offroad_fraction"] < 0.05, (seed, result)
        assert race.gates_passed == len(race.gate_idx) + 1


def test_a_lap_needs_every_gate_in_order_and_leaving_the_road_gives_credit_back():
    track = heldout_track(1)
    race = Race(track)
    rng = np.random.default_rng(0)
    driver = Driver(track, DriverStyle.sample(rng), rng)
    seen = []
    for k in range(1500):
        race.locate(k * 10)
        seen.append((race.gates_passed, race.progress, race.on_road))
        race.advance(driver.act(race.car, race.idx))
    passes = [g for g, _, _ in seen]
    assert all(b - a in (0, 1) for a, b in zip(passes, passes[1:], strict=False))  # one gate at a time, in order
    assert all(p <= race.gate_distance(g + 1) + 1e-9 for g, p, _ in seen)  # never beyond the next gate
    # Teleport the car off the road beside where it is: its credit falls back to the last gate passed.
    i = race.idx
    race.car.x, race.car.y = (track.points[i] + 12.0 * track.normals[i]).tolist()
    race.locate(15_000)
    assert not race.on_road and race.progress == race.gate_distance(race.gates_passed)


def test_grass_costs_speed():
    """Full throttle on a straight: slower on grass than on the road, and a car running onto the grass at road
    speed loses speed even with the throttle held."""

    def top_speed(on_road: bool, start: float = 0.0) -> float:
        state = carmod.CarState(u=start)
        for _ in range(6000):
            carmod.step(state, True, False, False, False, on_road)
        return state.u

    road, grass = top_speed(True), top_speed(False)
    assert grass < 0.5 * road and grass < 25.0
    assert top_speed(False, start=40.0) < 30.0


def test_env_reports_gates_and_off_road_share_and_works_as_a_vector_env():
    env = gym.make(ENV_ID, track=2, autopilot=True, observe=False)
    _, info = env.reset(seed=0)
    assert info["gates_passed"] == 0 and info["offroad_fraction"] == 0.0
    total = 0.0
    while True:
        _, reward, terminated, truncated, info = env.step(0)
        total += reward
        if terminated or truncated:
            break
    assert terminated and info["end"] == "finished" and info["progress"] == 1.0
    assert info["gates_passed"] == math.ceil(heldout_track(2).length / GATE_SPACING_M - 0.5) + 1
    assert total == pytest.approx(info["distance_m"] + START_BEHIND_M)
    vec = gym.make_vec(ENV_ID, num_envs=3, vectorization_mode="vector_entry_point", tracks=[4, 5, 6], observe=False)
    obs, info = vec.reset(seed=0)
    assert obs.shape == (3, 1, 64, 64)
    _, reward, *_ = vec.step(np.full(3, ACTION_NAMES.index("accel")))
    assert reward.shape == (3,)
    vec.close()
