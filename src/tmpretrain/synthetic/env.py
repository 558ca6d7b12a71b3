"""`tmpretrain/SynthTrack-v0`: the synthetic simulator as a Gymnasium environment (closed-loop evaluation, RL).

One episode is one standing start on one track: the car, physics, renderer and lap timing are exactly those that
made the synthesized replays (race.py, car.py, render.py). The agent sees what a policy trained on those replays
saw: the chase-camera frame rendered at the synthesized size, written in the capture format (JPEG by default) and
read back, then resized by the functions ingest uses (preprocess.py), as uint8 (n_stack, H, W), newest frame
last, frames `frame_interval_ms` apart, the first frame repeated before the episode's start (windows.py's order and
padding). With `include_floats` the observation is a dict that adds the 184 race-state floats ingest derives from a
replay's `meta`. Actions are the project's 12 (actions.py); physics runs every 10 ms and each decision is held until
the next one (`decision_interval_ms`).

Reward: metres of credited progress (race.py's track limits: road distance to the last checkpoint gate passed in
order plus the on-road distance beyond it; leaving the road gives back what was credited beyond the gate).
Terminated: a lap is finished (every gate passed in order). Truncated: the time limit, off the road for
`offroad_limit_s` without a break, or `stuck_limit_s` without gaining a metre on the best credited progress (which
is also how a car that skipped a gate ends, unless it goes back for it).

Tracks: `track` is a seed of the held-out stream, whose random generators can never be in the state of any of
synthesize's (see `heldout_track`); with `training_seed` set, `track` is instead the index of a track synthesize
made with that seed (to compare the environment with the training data). `autopilot=True` lets the scripted
driver that made the data drive (its style and mistakes drawn from the reset seed; the action passed to `step`
is ignored, `info["action"]` says what it did). `observe=False` skips rendering and returns blank frames, for
policies that do not look (expert, baselines).

Version history (the id stays v0, the name the pipeline, presets and docs share):
- track limits: progress credited by checkpoint gates, grass drag and grip that make leaving the road cost time,
  one render sample per pixel, `info` with `gates_passed`, `offroad_fraction` and `clean` (a finished lap at most
  5 % of whose time was off the road);
- first release: progress was the projection on the centre line, so cutting across the grass paid.
"""

from __future__ import annotations

import weakref
from collections import deque
from functools import lru_cache

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ..actions import N_ACTIONS
from ..params import ENV_ID as ENV_ID  # its one definition; the simulator's users import it from here
from ..preprocess import FLOAT_DIM, observation_frame, snapshot_floats
from .driver import Driver, DriverStyle
from .generate import META_INTERVAL_MS, get_renderer, get_track
from .race import STEP_MS, Race, capture_step
from .render import Renderer
from .track import Track, generate_track

ENTRY_POINT = "tmpretrain.synthetic.env:SynthTrackEnv"
VECTOR_ENTRY_POINT = "tmpretrain.synthetic.env:make_vector_env"

# Held-out generators are seeded with [seed, *_HELDOUT_TAG, stream]: five or more 32-bit words, the tag words all
# >= 3. synthesize seeds with [seed, stream < 3, index(, replay)]: at most five words, and where five, the word
# after the seed's is 1. numpy's SeedSequence pads short entropy with zeros only up to four words, so no held-out
# generator can start in the state of a training one, whatever the two seeds.
_HELDOUT_TAG = (0x68656C64, 0x6F75742D, 0x74726B73)  # "held", "out-", "trks"
_TRACK_STREAM, _SCENERY_STREAM = 0, 2
STUCK_GAIN_M = 1.0  # progress that resets the stuck timer
CLEAN_OFFROAD_FRACTION = 0.05  # a clean lap spends at most this share of its time off the road


def _heldout_rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed) % 2**64, *_HELDOUT_TAG, stream])


@lru_cache(maxsize=1024)  # a track is ~100 kB: every track of a large evaluation stays
def heldout_track(seed: int) -> Track:
    """The held-out evaluation track of this seed (never one of synthesize's tracks)."""
    return generate_track(_heldout_rng(seed, _TRACK_STREAM))


# Renderers (a road texture of a few MB each) live as long as an env holds them: envs on the same track share one,
# and memory grows with the tracks being driven at once, never with how many were driven before.
_renderers: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _shared_renderer(key: tuple, make) -> Renderer:
    renderer = _renderers.get(key)
    if renderer is None:
        renderer = _renderers[key] = make()
    return renderer


class SynthTrackEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        track: int = 0,
        training_seed: int | None = None,
        render_width: int = 128,
        render_height: int = 128,
        image_height: int = 64,
        image_width: int = 64,
        frame_format: str = ".jpeg",
        decision_interval_ms: float = 100.0,
        frame_interval_ms: float | None = None,
        n_stack: int = 1,
        include_floats: bool = False,
        time_limit_s: float = 60.0,
        offroad_limit_s: float = 5.0,
        stuck_limit_s: float = 5.0,
        autopilot: bool = False,
        observe: bool = True,
        render_mode: str | None = None,
    ):
        if decision_interval_ms < STEP_MS:
            raise ValueError(f"decision_interval_ms must be at least one physics step ({STEP_MS} ms)")
        if n_stack < 1:
            raise ValueError(f"n_stack must be >= 1, got {n_stack}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode {render_mode!r} is not supported; use 'rgb_array' or None")
        self.track_seed, self.training_seed = int(track), training_seed
        self.track = heldout_track(self.track_seed) if training_seed is None else get_track(training_seed, track)
        self.render_size = (int(render_height), int(render_width))
        self.image_size = (int(image_height), int(image_width))
        self.frame_format = frame_format
        self.decision_interval_ms = float(decision_interval_ms)
        self.frame_interval_ms = float(frame_interval_ms or decision_interval_ms)
        self.n_stack, self.include_floats = int(n_stack), bool(include_floats)
        self.time_limit_ms = 1000.0 * time_limit_s
        self.offroad_limit_steps = int(round(1000.0 * offroad_limit_s / STEP_MS))
        self.stuck_limit_ms = 1000.0 * stuck_limit_s
        self.autopilot, self.observe = bool(autopilot), bool(observe)
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": 1000.0 / self.decision_interval_ms}

        frames = spaces.Box(0, 255, (self.n_stack, *self.image_size), np.uint8)
        if self.include_floats:
            big = np.finfo(np.float32).max  # any finite float32 (the checker warns about infinite bounds)
            floats = spaces.Box(-big, big, (FLOAT_DIM,), np.float32)
            self.observation_space = spaces.Dict({"frames": frames, "floats": floats})
        else:
            self.observation_space = frames
        self.action_space = spaces.Discrete(N_ACTIONS)
        self._race: Race | None = None
        self._renderer: Renderer | None = None

    # ------------------------------------------------------------------------------------------ gymnasium

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._race = Race(self.track)
        self._driver = (
            Driver(self.track, DriverStyle.sample(self.np_random), self.np_random) if self.autopilot else None
        )
        self._k = 0  # physics steps done
        self._decisions = 0
        self._now_ms = 0.0  # the time the next observation shows
        self._offroad_steps = self._offroad_run = 0
        self._race.locate(0)
        self._stuck_mark, self._stuck_since_ms = self._race.progress, 0.0
        self._meta = self._race.meta_snapshot(0)
        self._states: deque = deque(maxlen=self._history_steps() + 1)
        self._frames: dict[int, np.ndarray] = {}
        self._record_state()
        return self._observation(), self._info(action=-1, end="")

    def step(self, action):
        if self._race is None:
            raise RuntimeError("call reset() before step()")
        action = int(action)
        if not 0 <= action < N_ACTIONS:
            raise ValueError(f"action {action} is not one of 0..{N_ACTIONS - 1}")
        race = self._race
        self._decisions += 1
        self._now_ms = self._decisions * self.decision_interval_ms
        until = max(capture_step(int(round(self._now_ms))), self._k + 1)
        before = race.progress
        applied, end = None, ""
        while self._k < until and not end:
            act = self._driver.act(race.car, race.idx) if self._driver is not None else action
            applied = act if applied is None else applied
            race.advance(act)
            self._k += 1
            end = self._after_physics_step()
        if end:
            self._now_ms = self._k * STEP_MS
        reward = float(race.progress - before)
        obs = self._observation()
        return obs, reward, end == "finished", end not in ("", "finished"), self._info(applied, end)

    def render(self):
        if self.render_mode != "rgb_array" or self._race is None:
            return None
        return np.repeat(self.render_frame()[:, :, None], 3, axis=2)

    def render_frame(self) -> np.ndarray:
        """The current state's frame as the capture tool grabs it: grayscale uint8 at the render size (before
        the JPEG round trip and resize that make the observation). Needs reset() first."""
        if self._race is None:
            raise RuntimeError("call reset() before render_frame()")
        return self._render_state(self._render_state_now())

    # ------------------------------------------------------------------------------------------ internals

    def _after_physics_step(self) -> str:
        race, t_ms = self._race, self._k * STEP_MS
        race.locate(t_ms)
        if self.include_floats and t_ms % META_INTERVAL_MS == 0:  # only the float inputs read it
            self._meta = race.meta_snapshot(t_ms)
        if race.on_road:
            self._offroad_run = 0
        else:
            self._offroad_steps += 1
            self._offroad_run += 1
        if race.progress >= self._stuck_mark + STUCK_GAIN_M:
            self._stuck_mark, self._stuck_since_ms = race.progress, t_ms
        self._record_state()
        if race.laps >= 1:
            return "finished"
        if t_ms >= self.time_limit_ms:
            return "time_limit"
        if self._offroad_run >= self.offroad_limit_steps:
            return "off_road"
        if t_ms - self._stuck_since_ms >= self.stuck_limit_ms:
            return "stuck"
        return ""

    def _history_steps(self) -> int:
        return int(np.ceil((self.n_stack - 1) * self.frame_interval_ms / STEP_MS)) + 2  # + rounding margin

    def _render_state_now(self) -> tuple:
        car = self._race.car
        return (car.x, car.y, car.yaw, self._race.cam_heading, car.speed)

    def _record_state(self) -> None:
        if self.observe:
            self._states.append((self._k, self._render_state_now()))

    def close(self):
        self._renderer = None
        super().close()

    def _render_state(self, state: tuple) -> np.ndarray:
        if self._renderer is None:
            h, w = self.render_size
            if self.training_seed is None:
                seed = self.track_seed
                make = lambda: Renderer(self.track, w, h, _heldout_rng(seed, _SCENERY_STREAM))  # noqa: E731
                self._renderer = _shared_renderer(("heldout", seed, w, h), make)
            else:
                self._renderer = get_renderer(self.training_seed, self.track_seed, w, h)
        return self._renderer.render(*state)

    def _frame_at_step(self, k: int) -> np.ndarray:
        """The observed frame of the state after k physics steps: rendered, then written and read back as ingest
        stores a captured frame (preprocess.observation_frame)."""
        if k not in self._frames:
            state = next(s for step, s in self._states if step == k)
            self._frames[k] = observation_frame(self._render_state(state), self.frame_format, *self.image_size)
        return self._frames[k]

    def _observation(self):
        if not self.observe:
            frames = np.zeros((self.n_stack, *self.image_size), dtype=np.uint8)
        else:
            # Oldest first, the current frame last; before the first frame, the first frame (windows.py).
            steps = [
                min(max(capture_step(int(round(self._now_ms - i * self.frame_interval_ms))), 0), self._k)
                for i in range(self.n_stack - 1, -1, -1)
            ]
            steps[-1] = self._k
            frames = np.stack([self._frame_at_step(k) for k in steps])
            for old in [k for k in self._frames if k < steps[0]]:
                del self._frames[old]
        if not self.include_floats:
            return frames
        return {"frames": frames, "floats": self._floats()}

    def _floats(self) -> np.ndarray:
        """The 184 floats ingest derives from the latest `meta` snapshot (preprocess.snapshot_floats)."""
        return snapshot_floats(self._meta)

    def _info(self, action: int | None, end: str) -> dict:
        race, car = self._race, self._race.car
        length = self.track.length
        finished = race.laps >= 1
        time_s = self._k * STEP_MS / 1000.0
        offroad_s = self._offroad_steps * STEP_MS / 1000.0
        return {
            "progress": 1.0 if finished else float(min(max(race.progress / length, 0.0), 1.0)),
            "distance_m": float(race.progress),
            "gates_passed": int(race.gates_passed),
            "lap_time_s": race.lap_times[0] / 1000.0 if finished else 0.0,
            "time_s": time_s,
            "offroad_s": offroad_s,
            "offroad_fraction": offroad_s / time_s if time_s > 0 else 0.0,
            "clean": finished and offroad_s <= CLEAN_OFFROAD_FRACTION * time_s,
            "speed": float(car.speed),
            "on_road": bool(race.on_road),
            "x": float(car.x),
            "y": float(car.y),
            "action": -1 if action is None else int(action),
            "end": end,
        }


def make_vector_env(num_envs: int = 1, tracks=None, **kwargs) -> gym.vector.SyncVectorEnv:
    """`gymnasium.make_vec(ENV_ID, num_envs, vectorization_mode="vector_entry_point", tracks=[...])`: one env per
    track (held-out seeds 0 .. num_envs - 1 unless `tracks` names them), stepped in one process; the other keywords
    go to every env. ("sync" and "async" make_vec modes work too, with every env on the `track` keyword's track.)"""
    tracks = list(range(num_envs)) if tracks is None else [int(t) for t in tracks]
    if len(tracks) != num_envs:
        raise ValueError(f"tracks names {len(tracks)} tracks for {num_envs} envs")
    kwargs.pop("track", None)
    return gym.vector.SyncVectorEnv([lambda t=t: SynthTrackEnv(track=t, **kwargs) for t in tracks])
