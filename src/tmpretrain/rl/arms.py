"""The arms of the downstream-RL study: where the online network starts, and whether demonstrations train it too.

`bc_dqfd` is the remedy for the two traps of transplanting a BC head (rl_notes.md section 3): BC logits are not
return quantiles, so plain `bc` starts with large TD errors that rewrite the head before it has learnt the values
(value-scale shock), and fine-tuning forgets the init on states the early policy does not visit. DQfD (Hester et
al. 2017) answers both with data the project already has: updates on the scripted driver's transitions alone
before the first action (the TD targets calibrate V_head and the head's scale while the large-margin term keeps
the driver's action on top), then a share of every batch from those demonstrations with the margin term annealed
to 0 (QDagger's schedule), so the init is rehearsed while the agent's own data takes over.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Arm:
    init: str  # network.INIT_ARMS: scratch, vis or bc
    demonstrations: bool  # DQfD: demo-only updates before acting, demonstrations mixed into batches, large margin


ARMS = {
    "scratch": Arm("scratch", demonstrations=False),
    "vis": Arm("vis", demonstrations=False),
    "bc": Arm("bc", demonstrations=False),
    "bc_dqfd": Arm("bc", demonstrations=True),
}
EXPORT_DIRS = {"vis": Path("models/vis"), "bc": Path("models/bc")}  # the pipeline's exports each init loads
