"""Pretraining of a TrackMania IQN agent's image encoder and action head from replay captures."""

from .cpu_math import pin_kernels

pin_kernels()  # before anything imports torch: the bits of a CPU run must not depend on the machine's ISA

import gymnasium  # noqa: E402

from .params import ENV_ID  # noqa: E402

# Gymnasium >= 1.0 has no plugin auto-registration: `import tmpretrain` makes the id known to gymnasium.make and
# make_vec (string entry points, so the simulator itself loads only when an env is made).
if ENV_ID not in gymnasium.registry:
    gymnasium.register(
        id=ENV_ID,
        entry_point="tmpretrain.synthetic.env:SynthTrackEnv",
        vector_entry_point="tmpretrain.synthetic.env:make_vector_env",
    )
