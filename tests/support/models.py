"""Untrained models at the agent's sizes, for tests that need one: only what a test changes is spelled out."""

from __future__ import annotations

from tmpretrain.models import BCModel

BC_DEFAULTS = dict(
    image_hw=(64, 64),
    n_stack=1,
    n_offsets=1,
    use_actions_head=True,
    dense_hidden_dimension=1024,
    dropout=0.0,
    action_head_dropout=0.0,
    use_floats=False,
)


def bc_model(**changes) -> BCModel:
    """A BCModel with the agent's 64x64 frames, one frame, one A_head, no dropout and no floats, unless changed."""
    return BCModel(**{**BC_DEFAULTS, **changes})
