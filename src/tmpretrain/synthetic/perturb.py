"""Recovery data: DART-style noise on what the car executes, while the timeline records what the expert chose.

A policy cloned from clean demonstrations has never seen the car off the racing line, so its first mistake in the
closed loop puts it in states it cannot recover from (compounding error). DART (Laskey et al., 2017) injects noise
into the demonstrator's executed controls and labels each state with the demonstrator's own choice there: the data
then shows how the expert brings the car back. Here a perturbation overrides, for a few hundred milliseconds, the
steering key (a swerve) or the pedals (throttle held into a corner, where the expert would lift or brake). The
recorded timeline, and so every label, stays the expert's action; the frames show the perturbed car.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..actions import action_from_inputs, action_inputs
from .car import DT

SWERVE_S = (0.2, 0.6)  # how long a forced steering key is held
THROTTLE_S = (0.6, 1.6)  # how long the throttle is forced on (no lift, no brake)


@dataclass
class Perturbation:
    kind: str  # "swerve_left" | "swerve_right" | "throttle"
    steps_left: int


class Perturber:
    """Turns the expert's action into the executed one; `rate` perturbations per simulated second on average."""

    def __init__(self, rate: float, rng: np.random.Generator):
        self.rate = rate
        self.rng = rng
        self.active: Perturbation | None = None

    def executed(self, expert_action: int) -> int:
        if self.rate <= 0:
            return expert_action
        if self.active is None and self.rng.random() < self.rate * DT:
            kind = str(self.rng.choice(["swerve_left", "swerve_right", "throttle"]))
            low, high = THROTTLE_S if kind == "throttle" else SWERVE_S
            self.active = Perturbation(kind, int(round(self.rng.uniform(low, high) / DT)))
        if self.active is None:
            return expert_action
        keys = action_inputs(expert_action)
        if self.active.kind == "throttle":
            keys.update(accelerate=True, brake=False)
        else:
            keys.update(left=self.active.kind == "swerve_left", right=self.active.kind == "swerve_right")
        self.active.steps_left -= 1
        if self.active.steps_left <= 0:
            self.active = None
        return action_from_inputs(keys["accelerate"], keys["brake"], keys["left"], keys["right"])
