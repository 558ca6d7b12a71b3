"""The models against the agent's network (tests/iqn_reference.py): layout, strict loads, forward parity."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from iqn_reference import VARIANTS, IQNNetwork, agent_input
from support.models import bc_model
from tmpretrain.export import ExportError, export_actions_head, export_encoder
from tmpretrain.models import (
    FLOAT_FEATURE_DIM,
    FLOAT_INPUT_DIM,
    VISION_TASK_METRICS,
    ActionHead,
    StackFusion,
    VisionModel,
    augment,
    build_encoder,
    build_float_feature_extractor,
    encoder_output_dim,
    normalize,
)


def test_normalize():
    x = torch.tensor([0, 1, 127, 128, 129, 255], dtype=torch.uint8)
    assert torch.equal(normalize(x, "iqn"), (x.float() - 128) / 128)
    assert normalize(x, "iqn").dtype == torch.float32
    assert normalize(x, "iqn")[3] == 0 and normalize(x, "iqn")[0] == -1
    assert torch.allclose(normalize(x, "01"), x.float() / 255)
    assert torch.equal(normalize(x.float(), "iqn"), normalize(x, "iqn"))
    with pytest.raises(ValueError, match="normalization"):
        normalize(x, "imagenet")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_encoder_dims_match_agent(variant):
    h, w, e = VARIANTS[variant]
    agent = IQNNetwork(h, w, e)
    assert encoder_output_dim(h, w) == agent.conv_head_output_dim == {"64x64": 512, "120x160": 5632}[variant]
    assert build_encoder()(torch.zeros(2, 1, h, w)).shape == (2, agent.conv_head_output_dim)
    ours = build_encoder().state_dict()
    assert list(ours) == list(agent.img_head.state_dict())
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in agent.img_head.state_dict().items()}
    ffe = build_float_feature_extractor()
    agent.float_feature_extractor.load_state_dict(ffe.state_dict(), strict=True)
    assert agent.dense_input_dimension == encoder_output_dim(h, w) + FLOAT_FEATURE_DIM


@pytest.mark.parametrize("hw", [(33, 64), (64, 20), (0, 0)])
def test_encoder_too_small(hw):
    with pytest.raises(ValueError, match="too small"):
        encoder_output_dim(*hw)


def test_leaky_relu_slope():
    acts = [m for m in build_encoder() if isinstance(m, nn.LeakyReLU)]
    assert len(acts) == 4 and all(a.negative_slope == 0.01 for a in acts)


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("use_floats", [False, True])
def test_export_loads_strictly_into_agent_with_forward_parity(tmp_path, variant, use_floats):
    h, w, e = VARIANTS[variant]
    torch.manual_seed(0)
    agent = IQNNetwork(h, w, e).eval()
    model = bc_model(image_hw=(h, w), n_offsets=3, use_floats=use_floats).eval()
    assert model.head_input_dim == agent.dense_input_dimension

    enc_state = export_encoder(model.encoder, tmp_path / "encoder.pt")
    export_actions_head(model.heads[1], tmp_path / "actions_head.pt", agent.dense_input_dimension)
    enc = torch.load(tmp_path / "encoder.pt", weights_only=True)
    head = torch.load(tmp_path / "actions_head.pt", weights_only=True)
    assert type(enc) is dict and type(head) is dict
    assert list(enc) == [
        "0.weight",
        "0.bias",
        "2.weight",
        "2.bias",
        "4.weight",
        "4.bias",
        "6.weight",
        "6.bias",
    ]
    assert list(head) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    for t in [*enc.values(), *head.values()]:
        assert t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous()
    assert all(torch.equal(enc_state[k], enc[k]) for k in enc)

    agent.img_head.load_state_dict(enc, strict=True)
    agent.A_head.load_state_dict(head, strict=True)

    frames = torch.randint(0, 256, (3, 1, h, w), dtype=torch.uint8)
    with torch.no_grad():
        ours = model.encoder(normalize(frames, "iqn"))
        theirs = agent.img_head(agent_input(frames))
        assert torch.equal(ours, theirs)
        # The exported head on the agent's features equals our offset-1 head on ours (floats zero or given).
        floats = torch.randn(3, FLOAT_INPUT_DIM)
        if use_floats:
            agent.float_feature_extractor.load_state_dict(model.float_feature_extractor.state_dict(), strict=True)
            feats = torch.cat([theirs, agent.float_feature_extractor(floats)], dim=1)
        else:
            feats = torch.cat([theirs, torch.zeros(3, FLOAT_FEATURE_DIM)], dim=1)
        logits = model(normalize(frames, "iqn"), floats if use_floats else None)
        assert torch.allclose(logits[:, 1], agent.A_head(feats), atol=1e-5)
        if not use_floats:
            # The float-slot columns are zero: the agent's real float features contribute nothing at transfer.
            with_floats = torch.cat([theirs, agent.float_feature_extractor(floats)], dim=1)
            assert torch.allclose(agent.A_head(with_floats), logits[:, 1], atol=1e-5)
        q, _ = agent(agent_input(frames), floats, num_quantiles=2)
        assert q.shape == (6, 12) and torch.isfinite(q).all()


def test_head_with_wrong_width_fails_export(tmp_path):
    agent = IQNNetwork(64, 64, 128)
    narrow = ActionHead(512)  # a head trained on image features only: width 512, the agent expects 768
    with pytest.raises(ExportError, match="768"):
        export_actions_head(narrow, tmp_path / "actions_head.pt", agent.dense_input_dimension)
    assert not (tmp_path / "actions_head.pt").exists()
    linear = bc_model(use_actions_head=False).heads[0]
    with pytest.raises(ExportError):
        export_actions_head(linear, tmp_path / "actions_head.pt", agent.dense_input_dimension)
    with pytest.raises(ExportError, match="shape"):
        export_actions_head(ActionHead(768, dense_hidden_dimension=256), tmp_path / "h.pt", 768)


def test_export_strips_wrapper_prefixes(tmp_path):
    enc = build_encoder()
    wrapped = nn.Module()
    wrapped.module = nn.Module()
    wrapped.module._orig_mod = enc  # what DDP around torch.compile gives
    assert all(k.startswith("module._orig_mod.") for k in wrapped.state_dict())
    export_encoder(wrapped, tmp_path / "encoder.pt")
    loaded = torch.load(tmp_path / "encoder.pt", weights_only=True)
    assert list(loaded) == list(enc.state_dict())
    IQNNetwork(64, 64, 128).img_head.load_state_dict(loaded, strict=True)
    assert torch.equal(loaded["0.weight"], enc[0].weight.detach())
    lit = nn.Module()
    lit.model = ActionHead(768)  # a LightningModule holding the head as self.model
    export_actions_head(lit, tmp_path / "actions_head.pt", 768)
    IQNNetwork(64, 64, 128).A_head.load_state_dict(torch.load(tmp_path / "actions_head.pt"), strict=True)


def test_export_encoder_rejects_wrong_layout(tmp_path):
    with pytest.raises(ExportError, match="missing"):
        export_encoder(nn.Sequential(nn.Conv2d(1, 16, 4, 2)), tmp_path / "encoder.pt")


def test_a_stacked_model_starts_as_the_single_frame_one_and_every_frame_reaches_it():
    torch.manual_seed(0)
    model = bc_model(n_stack=3).eval()
    single = bc_model(n_stack=1).eval()
    single.encoder.load_state_dict(model.encoder.state_dict())
    single.heads.load_state_dict(model.heads.state_dict())
    x = torch.randn(2, 3, 64, 64)
    # At init the fusion passes the newest frame's features through: the single-frame model's logits.
    assert model(x).shape == (2, 1, 12)
    torch.testing.assert_close(model(x), single(x[:, 2:]))
    # The older frames' weights start at zero but get gradients, so after one step every frame reaches the output.
    model.train()
    model(x).square().sum().backward()
    grad = model.stack_fusion.weight.grad
    assert grad.shape == (3, model.img_feature_dim) and bool((grad.abs().sum(dim=1) > 0).all())
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad if p.grad is not None else 0.0
    model.eval()
    base = model(x)
    for i in range(3):
        x2 = x.clone()
        x2[:, i] += 0.5 * torch.randn(2, 64, 64)
        assert not torch.allclose(model(x2), base), f"frame {i} does not reach the output"
    with pytest.raises(ValueError, match="expects input"):
        model(torch.randn(2, 1, 64, 64))
    assert isinstance(single.stack_fusion, nn.Identity)
    # The head width does not depend on n_stack, and the fusion is small: a weight per frame and feature, a bias.
    assert model.head_input_dim == single.head_input_dim == 768
    assert sum(p.numel() for p in model.stack_fusion.parameters()) == 4 * model.img_feature_dim


def test_stack_fusion_is_a_weighted_sum_per_feature():
    fusion = StackFusion(3, 4)
    with torch.no_grad():
        fusion.weight.copy_(torch.tensor([[1.0, 0, 0, 2], [0, 1, 0, 0], [-1, 0, 3, 0]]))
        fusion.bias.copy_(torch.tensor([0.5, 0, 0, 0]))
    frames = torch.arange(24, dtype=torch.float32).view(2, 12)  # two windows: 3 frames x 4 features, oldest first
    f = frames.view(2, 3, 4)
    expected = torch.stack(
        [f[:, 0, 0] - f[:, 2, 0] + 0.5, f[:, 1, 1], 3 * f[:, 2, 2], 2 * f[:, 0, 3]], dim=1
    )  # by hand, feature by feature
    torch.testing.assert_close(fusion(frames), expected)


def test_offsets_and_head_kinds():
    model = bc_model(n_offsets=4)
    assert len(model.heads) == 4 and all(isinstance(h, ActionHead) for h in model.heads)
    assert model(torch.randn(5, 1, 64, 64)).shape == (5, 4, 12)
    linear = bc_model(n_offsets=2, use_actions_head=False)
    assert all(isinstance(h, nn.Linear) and h.in_features == 512 for h in linear.heads)
    assert linear.head_input_dim == 512
    assert bc_model(use_actions_head=False, use_floats=True).head_input_dim == 768
    assert bc_model(use_floats=True).float_feature_extractor is not None and bc_model().float_feature_extractor is None
    with pytest.raises(ValueError, match="float"):
        bc_model(use_floats=True)(torch.randn(2, 1, 64, 64))


def test_dropout_modules_present_and_active():
    model = bc_model(dropout=0.3, action_head_dropout=0.4, n_offsets=2)
    assert isinstance(model.feature_dropout, nn.Dropout) and model.feature_dropout.p == 0.3
    inner = [m for m in model.heads[0].modules() if isinstance(m, nn.Dropout)]
    assert [m.p for m in inner] == [0.4]
    assert list(model.heads[0].state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    x = torch.randn(4, 1, 64, 64)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    plain = bc_model()
    plain.train()
    assert torch.equal(plain(x), plain(x))


def test_zero_float_columns_stay_zero_under_adamw():
    torch.manual_seed(0)
    model = bc_model(n_offsets=2, dropout=0.2, action_head_dropout=0.2)
    for head in model.heads:
        assert torch.count_nonzero(head[0].weight[:, 512:]) == 0
        assert torch.count_nonzero(head[0].weight[:, :512]) > 0
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    before = model.heads[0][0].weight[:, :512].detach().clone()
    for _ in range(3):
        x, y = torch.randn(8, 1, 64, 64), torch.randint(0, 12, (8, 2))
        loss = nn.functional.cross_entropy(model(x).reshape(-1, 12), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for head in model.heads:
        assert torch.count_nonzero(head[0].weight[:, 512:]) == 0
    assert not torch.equal(model.heads[0][0].weight[:, :512], before)  # the rest did train


def test_channels_last_input():
    model = bc_model(n_stack=2).eval()
    x = torch.randn(3, 2, 64, 64)
    ref = model(x)
    model_cl = model.to(memory_format=torch.channels_last)
    out = model_cl(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(out, ref, atol=1e-5)


# ------------------------------------------------------------------------------------------- Level 0


@pytest.mark.parametrize("task", ["autoencoder", "vae", "simclr"])
def test_vision_model_learns(task):
    torch.manual_seed(0)
    hw = (60, 80)  # odd conv sizes on the way down: the decoder must still give back exactly 60 x 80
    model = VisionModel(
        image_hw=hw, task=task, latent_dim=16, vae_beta=1e-3, simclr_temperature=0.2, simclr_projection_dim=16
    )
    coarse = torch.randint(0, 256, (8, 1, 6, 8)).float()  # smooth frames, like real ones
    frames = nn.functional.interpolate(coarse, size=hw, mode="bilinear", align_corners=False).to(torch.uint8)
    x = normalize(frames, "iqn")
    if task != "simclr":
        z = model.mu(model.encoder(x)) if task == "vae" else model.encoder(x)
        assert model.decoder(z).shape == (8, 1, *hw)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        gen = torch.Generator().manual_seed(1)  # same augmentations / noise each step
        loss, extra = model.loss(x, gen)
        assert torch.isfinite(loss)
        assert all(torch.isfinite(torch.as_tensor(v)) for v in extra.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8, losses
    assert set(extra) == {"autoencoder": {"recon"}, "vae": {"recon", "kl"}, "simclr": {"acc"}}[task]
    assert set(extra) == set(VISION_TASK_METRICS[task])  # what pretrain checks metric names against
    assert model.encoder.state_dict().keys() == build_encoder().state_dict().keys()


def test_vision_model_unknown_task_and_shape():
    with pytest.raises(ValueError, match="task"):
        VisionModel(image_hw=(64, 64), task="mae")
    with pytest.raises(ValueError, match="expects input"):
        VisionModel(image_hw=(64, 64)).loss(torch.zeros(2, 1, 60, 80))


def test_augment_is_seeded_and_per_sample():
    x = torch.linspace(-1, 1, 64 * 64).reshape(1, 1, 64, 64).repeat(4, 1, 1, 1)
    a = augment(x, torch.Generator().manual_seed(3))
    b = augment(x, torch.Generator().manual_seed(3))
    c = augment(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.allclose(a[0], a[1])  # different parameters for samples that were identical


def test_checkpointed_stack_computes_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    plain = bc_model(n_stack=3, n_offsets=2, checkpoint_stack=False)
    ckpt = bc_model(n_stack=3, n_offsets=2, checkpoint_stack=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(8, 3, 64, 64)
    outs = []
    for model in (plain, ckpt):
        model.train()
        out = model(x)
        out.square().sum().backward()
        outs.append(out.detach())
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6), name
