"""Reinforcement learning of the agent's own IQN network in tmpretrain/SynthTrack-v0 (not yet a pipeline stage).

network: the agent's IQN network (the contract's layout and keys) and its init from our exports (scratch / vis /
bc); loss: the quantile Huber loss, n-step TD targets, DQfD's large-margin term; replay: n-step transitions and a
uniform uint8 replay buffer with demonstrations mixed into batches; learner: RLConfig, the update step, the target
network, exploration; loop: a minimal single-env training loop; demos: the scripted driver's transitions as
demonstrations; bench: learner updates per second (`tmpretrain bench rl`). See docs/rl.md.
"""
