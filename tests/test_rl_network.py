"""The RL network is the agent's: its state_dict loads strictly into the independent stand-in (iqn_reference.py),
which then computes the same Q values; it starts from real Level 0 / Level 1 exports, and refuses what does not fit."""

from __future__ import annotations

import pytest
import torch

from iqn_reference import IQNNetwork as ReferenceIQN
from iqn_reference import agent_input
from tmpretrain.errors import ExportError
from tmpretrain.export import ACTIONS_HEAD_FILE, ENCODER_FILE, load_export
from tmpretrain.rl.network import IQNNetwork, init_from_export, obs_to_img, sample_taus


@pytest.mark.parametrize(("hw", "embedding"), [((64, 64), 128), ((120, 160), 64)])
def test_state_dict_is_the_agents(hw, embedding):
    ours, reference = IQNNetwork(hw), ReferenceIQN(*hw, embedding)
    assert ours.iqn_embedding_dim == embedding
    theirs = reference.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    reference.load_state_dict(ours.state_dict(), strict=True)
    ours.load_state_dict(theirs, strict=True)


def test_same_q_values_as_the_reference_for_the_same_input_and_taus():
    torch.manual_seed(0)
    ours = IQNNetwork((64, 64)).eval()
    reference = ReferenceIQN(64, 64, 128).eval()
    reference.load_state_dict(ours.state_dict(), strict=True)
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (3, 1, 64, 64), generator=g, dtype=torch.uint8)
    floats = torch.randn(3, 184, generator=g)
    taus = sample_taus(3, 8, g)  # (B, N)
    with torch.no_grad():
        q = ours(obs_to_img(frames), floats, taus)  # (B, N, 12)
        # The agent's layout: quantile-major rows q * B + b, tau (N * B, 1).
        q_ref, _ = reference(agent_input(frames), floats, 8, tau=taus.t().reshape(-1, 1))
    assert q.shape == (3, 8, 12)
    torch.testing.assert_close(q, q_ref.reshape(8, 3, 12).transpose(0, 1))
    assert q.std() > 0  # not a degenerate comparison of constants


def test_init_is_linesights_orthogonal_with_zero_biases():
    net = IQNNetwork((64, 64))
    w = net.A_head[-1].weight  # (12, 512), gain 1: orthonormal rows
    torch.testing.assert_close(w @ w.t(), torch.eye(12), atol=1e-5, rtol=0)
    assert all((m.bias == 0).all() for m in (net.img_head[0], net.iqn_fc[0], net.V_head[0]))


# ------------------------------------------------------------------------------------------- init from agent_exports


def _same(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(module.state_dict()[k], v) for k, v in state.items())


def test_scratch_loads_nothing():
    torch.manual_seed(0)
    net = IQNNetwork((64, 64))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert init_from_export(net, "scratch") == []
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


@pytest.mark.parametrize("arm", ["vis", "bc"])
def test_init_from_a_real_export(agent_exports, arm):
    torch.manual_seed(0)
    net = IQNNetwork((64, 64))
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    loaded = init_from_export(net, arm, agent_exports[arm])
    _, states = load_export(agent_exports[arm])
    assert loaded == ([ENCODER_FILE, ACTIONS_HEAD_FILE] if arm == "bc" else [ENCODER_FILE])
    assert _same(net.img_head, states[ENCODER_FILE]) and not _same(net.img_head, _prefixed(fresh, "img_head."))
    head = states[ACTIONS_HEAD_FILE] if arm == "bc" else _prefixed(fresh, "A_head.")
    assert _same(net.A_head, head)
    for untouched in ("V_head.", "iqn_fc.", "float_feature_extractor."):  # always the agent's own init
        assert _same(getattr(net, untouched[:-1]), _prefixed(fresh, untouched))
    # The whole network still loads strictly into the agent's layout.
    ReferenceIQN(64, 64, 128).load_state_dict(net.state_dict(), strict=True)


def _prefixed(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}


def test_init_refuses_what_does_not_fit(agent_exports):
    net = IQNNetwork((64, 64))
    with pytest.raises(ExportError, match=r"needs actions_head\.pt"):
        init_from_export(net, "bc", agent_exports["bc_linear"])  # a Linear-head BC run: no A_head to transfer
    with pytest.raises(ExportError, match="wants a Level 0 export"):
        init_from_export(net, "vis", agent_exports["bc"])
    with pytest.raises(ExportError, match="wants a Level 1 export"):
        init_from_export(net, "bc", agent_exports["vis"])
    with pytest.raises(ExportError, match="exported for 64x64 frames"):
        init_from_export(IQNNetwork((120, 160)), "vis", agent_exports["vis"])
    with pytest.raises(ExportError, match="trained on '01' normalized frames"):
        init_from_export(net, "vis", agent_exports["vis_01"])
    with pytest.raises(ExportError, match="n_stack 2"):
        init_from_export(net, "bc", agent_exports["bc_stack2"])
    with pytest.raises(ExportError, match="not found"):
        init_from_export(net, "vis", agent_exports["vis"].parent / "nowhere")
    with pytest.raises(ValueError, match="unknown rl init arm"):
        init_from_export(net, "whole", agent_exports["bc"])
