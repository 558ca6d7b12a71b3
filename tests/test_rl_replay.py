"""n-step transitions against hand-computed returns and discounts, the uint8 ring buffer, seeded sampling, and
demonstrations mixed into batches by a fraction."""

from __future__ import annotations

import numpy as np
import pytest

from tmpretrain.rl.replay import NStepWriter, ReplayBuffer, Transition, sample_mixed


def frame(k: int) -> np.ndarray:
    """Observation k of an episode: a (1, 2, 2) uint8 frame whose pixels say k."""
    return np.full((1, 2, 2), k, dtype=np.uint8)


def run_episode(writer: NStepWriter, rewards: list[float], terminated: bool) -> list[Transition]:
    out = []
    for t, r in enumerate(rewards):
        last = t == len(rewards) - 1
        out += writer.step(frame(t), None, t, r, frame(t + 1), None, last and terminated, last and not terminated)
    return out


@pytest.mark.parametrize("terminated", [True, False])
def test_n_step_returns_and_discounts_by_hand(terminated):
    # gamma 0.5, n 3, rewards 1, 2, 4, 8 and the episode ends after the 4th step.
    got = run_episode(NStepWriter(n=3, gamma=0.5), [1.0, 2.0, 4.0, 8.0], terminated)
    assert [t.action for t in got] == [0, 1, 2, 3]  # each step starts one transition, in order
    assert [t.frames[0, 0, 0] for t in got] == [0, 1, 2, 3]
    assert [t.ret for t in got] == [1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4 + 0.25 * 8, 4 + 0.5 * 8, 8]  # 3, 6, 8, 8
    assert [t.next_frames[0, 0, 0] for t in got] == [3, 4, 4, 4]  # s_{t+3}, or the episode's last observation
    # Terminated: only the full-length first transition bootstraps. Truncated: all do, with gamma^(steps taken).
    assert [t.discount for t in got] == ([0.125, 0.0, 0.0, 0.0] if terminated else [0.125, 0.125, 0.25, 0.5])


def test_n_step_matches_a_loop_over_a_long_episode():
    rng = np.random.default_rng(0)
    rewards, n, gamma = rng.normal(size=50).tolist(), 4, 0.9
    got = run_episode(NStepWriter(n, gamma), rewards, terminated=True)
    assert len(got) == 50
    for t, tr in enumerate(got):
        k = min(n, 50 - t)
        assert tr.ret == pytest.approx(sum(gamma**i * rewards[t + i] for i in range(k)))
        assert tr.discount == (gamma**n if t + n < 50 else 0.0)
        assert tr.next_frames[0, 0, 0] == t + k


def test_writer_starts_afresh_after_an_episode():
    writer = NStepWriter(n=2, gamma=1.0)
    run_episode(writer, [1.0, 1.0, 1.0], terminated=False)
    assert [t.ret for t in run_episode(writer, [5.0, 7.0], terminated=True)] == [12.0, 7.0]


def _transition(k: int) -> Transition:
    return Transition(frame(k), None, k % 12, float(k), 0.5, frame(k + 1), None)


def test_buffer_keeps_uint8_and_overwrites_the_oldest():
    buffer = ReplayBuffer(capacity=5, frame_shape=(1, 2, 2), seed=0)
    for k in range(8):
        buffer.add(_transition(k))
    assert len(buffer) == 5 and buffer.frames.dtype == np.uint8 and buffer.frames.nbytes == 5 * 4
    assert sorted(buffer.returns.tolist()) == [3.0, 4.0, 5.0, 6.0, 7.0]  # 0, 1, 2 were overwritten
    batch = buffer.sample(64)
    k = batch.returns.long()
    assert set(k.tolist()) <= {3, 4, 5, 6, 7} and len(set(k.tolist())) == 5
    # every row is one whole transition, not a mix of two
    assert (batch.frames[:, 0, 0, 0].long() == k).all() and (batch.next_frames[:, 0, 0, 0].long() == k + 1).all()
    assert (batch.actions == k % 12).all() and batch.floats is None and not batch.is_demo.any()


def test_sampling_is_seeded():
    def draws(seed):
        buffer = ReplayBuffer(capacity=100, frame_shape=(1, 2, 2), seed=seed)
        for k in range(100):
            buffer.add(_transition(k))
        return [buffer.sample(8).returns.tolist() for _ in range(3)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    with pytest.raises(ValueError, match="empty"):
        ReplayBuffer(3, (1, 2, 2)).sample(1)


def test_floats_travel_with_their_frames():
    buffer = ReplayBuffer(capacity=4, frame_shape=(1, 2, 2), float_dim=3, seed=0)
    for k in range(4):
        floats = np.full(3, k, dtype=np.float32)
        buffer.add(Transition(frame(k), floats, 0, float(k), 1.0, frame(k + 1), floats + 1))
    batch = buffer.sample(16)
    assert (batch.floats[:, 0] == batch.returns).all() and (batch.next_floats[:, 2] == batch.returns + 1).all()


def test_demonstrations_fill_their_fraction_of_each_batch():
    online = ReplayBuffer(10, (1, 2, 2), seed=0)
    demos = ReplayBuffer(10, (1, 2, 2), seed=1, demo=True)
    for k in range(10):
        online.add(_transition(k))
        demos.add(_transition(100 + k))
    batch = sample_mixed(online, demos, 16, demo_fraction=0.25)
    assert len(batch) == 16 and batch.is_demo.tolist() == [True] * 4 + [False] * 12
    assert (batch.returns[batch.is_demo] >= 100).all() and (batch.returns[~batch.is_demo] < 100).all()
    assert not sample_mixed(online, demos, 16, 0.0).is_demo.any()
    assert sample_mixed(online, demos, 16, 1.0).is_demo.all()
    assert not sample_mixed(online, None, 16, 0.5).is_demo.any()  # no demonstrations yet: all online
