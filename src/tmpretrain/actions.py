"""The agent's 12 discrete actions. Index order is fixed by the RL agent and must never change."""

from __future__ import annotations

# (name, accelerate, brake, left, right)
_TABLE = [
    ("accel", True, False, False, False),
    ("left+accel", True, False, True, False),
    ("right+accel", True, False, False, True),
    ("coast", False, False, False, False),
    ("left", False, False, True, False),
    ("right", False, False, False, True),
    ("brake", False, True, False, False),
    ("left+brake", False, True, True, False),
    ("right+brake", False, True, False, True),
    ("accel+brake", True, True, False, False),
    ("left+accel+brake", True, True, True, False),
    ("right+accel+brake", True, True, False, True),
]

N_ACTIONS = len(_TABLE)
ACTION_NAMES: tuple[str, ...] = tuple(row[0] for row in _TABLE)
# The original study's main_actions_val_acc averages the accuracies of these (the only well-supported classes).
MAIN_ACTIONS: tuple[int, ...] = (0, 1, 2, 3, 10, 11)


def action_inputs(idx: int) -> dict[str, bool]:
    """The key state of action `idx`, in the manifest's `inputs` shape."""
    _, accelerate, brake, left, right = _TABLE[idx]
    return {"accelerate": accelerate, "brake": brake, "left": left, "right": right}


def action_from_inputs(accelerate: bool, brake: bool, left: bool, right: bool) -> int:
    """Inverse of `action_inputs`; left+right together counts as neither (the game cancels them)."""
    if left and right:
        left = right = False
    for idx, (_, a, b, l_, r) in enumerate(_TABLE):
        if (a, b, l_, r) == (accelerate, brake, left, right):
            return idx
    raise ValueError(f"no action for inputs accelerate={accelerate} brake={brake} left={left} right={right}")


def action_table() -> list[dict]:
    """The table as it travels in export metadata."""
    return [{"idx": i, "name": n, **action_inputs(i)} for i, n in enumerate(ACTION_NAMES)]
