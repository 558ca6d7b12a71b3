"""Pretraining of a TrackMania IQN agent's image encoder and action head from replay captures."""

import gymnasium

# Gymnasium >= 1.0 has no plugin auto-registration: `import tmpretrain` makes the id known to gymnasium.make (a
# string entry point, so the simulator itself loads only when an env is made).
if "tmpretrain/SynthTrack-v0" not in gymnasium.registry:
    gymnasium.register(id="tmpretrain/SynthTrack-v0", entry_point="tmpretrain.synthetic.env:SynthTrackEnv")
