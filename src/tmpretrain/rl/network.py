"""The agent's IQN network (shared/spec/iqn_contract.md, Linesight's agents/iqn.py), and its init from our exports.

The layers come from tmpretrain.models (the same builders the exports are trained with), so `state_dict()` has
exactly the agent's keys: img_head.*, float_feature_extractor.*, iqn_fc.0.*, A_head.*, V_head.*.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from ..export import ACTIONS_HEAD_FILE, ENCODER_FILE, FLOAT_FEATURES_FILE, load_export
from ..models import (
    FLOAT_FEATURE_DIM,
    FLOAT_INPUT_DIM,
    LEAKY_SLOPE,
    ActionHead,
    build_encoder,
    build_float_feature_extractor,
    encoder_output_dim,
    normalize,
)
from ..params import AGENT_DENSE_HIDDEN

# Where the online network's weights start: the agent's own init, a Level 0 encoder, or a Level 1 encoder + A_head.
INIT_ARMS = ("scratch", "vis", "bc")
# The contract's two variants: image (H, W) -> iqn embedding width E.
IQN_EMBEDDING_DIMS = {(64, 64): 128, (120, 160): 64}


def sample_taus(batch_size: int, n: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """(batch_size, n) quantile fractions in n strata symmetric around 0.5 (Linesight: tau = cat(t, 1 - t)).

    Column q < n/2 holds (q + U) / n, column n/2 + q holds 1 - that: every row is a stratified, antithetic sample.
    """
    if n < 2 or n % 2:
        raise ValueError(f"the number of quantiles must be even (symmetric strata), got {n}")
    u = torch.rand(batch_size, n // 2, generator=generator, device=device)
    t = (torch.arange(n // 2, device=device, dtype=torch.float32) + u) / n
    return torch.cat([t, 1.0 - t], dim=1)


class IQNNetwork(nn.Module):
    """Q quantiles of the 12 actions for a frame, 184 floats and quantile fractions tau.

    forward(img, floats, tau): img normalized (B, 1, H, W) as the agent sees it ((x - 128) / 128, see `obs_to_img`),
    floats (B, 184), tau (B, N) -> (B, N, 12). The agent's own forward flattens quantile-major ((N * B, 12), row
    q * B + b); (B, N, 12) is the same numbers, in the layout the loss wants.
    """

    def __init__(
        self,
        image_hw: tuple[int, int] = (64, 64),
        iqn_embedding_dim: int | None = None,
        dense_hidden_dim: int = AGENT_DENSE_HIDDEN,
    ):
        super().__init__()
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.iqn_embedding_dim = iqn_embedding_dim or IQN_EMBEDDING_DIMS.get(self.image_hw, 128)
        self.dense_input_dim = encoder_output_dim(*self.image_hw) + FLOAT_FEATURE_DIM  # D
        self.img_head = build_encoder()
        self.float_feature_extractor = build_float_feature_extractor()
        self.iqn_fc = nn.Sequential(nn.Linear(self.iqn_embedding_dim, self.dense_input_dim), nn.LeakyReLU(LEAKY_SLOPE))
        self.A_head = ActionHead(self.dense_input_dim, dense_hidden_dim)  # the A_head our BC exports train
        hidden = dense_hidden_dim // 2  # V_head: the A_head's layout with one output
        self.V_head = nn.Sequential(
            nn.Linear(self.dense_input_dim, hidden), nn.LeakyReLU(LEAKY_SLOPE), nn.Linear(hidden, 1)
        )
        self.register_buffer("_cos_i", math.pi * torch.arange(1, self.iqn_embedding_dim + 1), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Linesight's init: orthogonal with the LeakyReLU gain before each activation, iqn_fc x sqrt(2) (cos has
        variance 1/2), gain 1 for the last layer of each head; zero biases."""
        gain = nn.init.calculate_gain("leaky_relu", LEAKY_SLOPE)
        hidden = [*self.img_head, *self.float_feature_extractor, self.A_head[0], self.V_head[0]]
        layers = [(m, gain) for m in hidden if isinstance(m, nn.Conv2d | nn.Linear)]
        layers += [(self.iqn_fc[0], math.sqrt(2.0) * gain), (self.A_head[-1], 1.0), (self.V_head[-1], 1.0)]
        for layer, layer_gain in layers:
            nn.init.orthogonal_(layer.weight, layer_gain)
            nn.init.zeros_(layer.bias)

    def forward(self, img: torch.Tensor, floats: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        features = torch.cat([self.img_head(img), self.float_feature_extractor(floats)], dim=1)  # (B, D)
        embedding = self.iqn_fc(torch.cos(tau[..., None] * self._cos_i))  # (B, N, D)
        mixed = features[:, None, :] * embedding
        advantage, value = self.A_head(mixed), self.V_head(mixed)
        return value + advantage - advantage.mean(dim=-1, keepdim=True)


def obs_to_img(frames: np.ndarray | torch.Tensor, device=None) -> torch.Tensor:
    """uint8 frames (B, 1, H, W) -> the agent's input convention, exactly (x - 128) / 128."""
    return normalize(torch.as_tensor(frames, device=device), "iqn")


def zero_floats(batch_size: int, device=None) -> torch.Tensor:
    """The float inputs of an environment that gives none: the float features then carry no information."""
    return torch.zeros(batch_size, FLOAT_INPUT_DIM, device=device)


# ------------------------------------------------------------------------------------------- init from exports


def _check_export(meta: dict, model_dir: Path, network: IQNNetwork, arm: str) -> None:
    where = f"{model_dir}: rl init {arm!r}"
    if arm == "vis" and meta["level"] != 0:
        raise ExportError(f"{where} wants a Level 0 export (pretrain_vis), this is level {meta['level']}")
    if arm == "bc" and meta["level"] != 1:
        raise ExportError(f"{where} wants a Level 1 export (pretrain_bc), this is level {meta['level']}")
    if tuple(meta["image_size"]) != network.image_hw:
        h, w = meta["image_size"]
        raise ExportError(f"{where}: exported for {h}x{w} frames, the RL network sees {network.image_hw}")
    if meta["image_normalization"] != "iqn":
        raise ExportError(
            f"{where}: the encoder was trained on {meta['image_normalization']!r} normalized frames; the agent "
            f"sees (x - 128) / 128 ('iqn')"
        )
    if arm == "bc" and meta.get("n_stack", 1) != 1:
        raise ExportError(
            f"{where}: a BC run with n_stack {meta['n_stack']} trained its A_head on fused stack features; the "
            f"agent's A_head sees one frame's"
        )


def init_from_export(network: IQNNetwork, arm: str, model_dir: Path | str | None = None) -> list[str]:
    """Load the weights of `arm` into `network` (strict loads: every key, every shape); returns the loaded modules.

    scratch: nothing (the agent's own init). vis: img_head from a Level 0 export. bc: img_head and A_head from a
    Level 1 export made with bc.use_actions_head (and float_feature_extractor when the run used floats).
    V_head and iqn_fc always start from the agent's init. Anything that does not fit is one ExportError line.
    """
    if arm not in INIT_ARMS:
        raise ValueError(f"unknown rl init arm {arm!r}; choose one of {', '.join(INIT_ARMS)}")
    if arm == "scratch":
        return []
    if model_dir is None:
        raise ValueError(f"rl init {arm!r} needs the export directory to load")
    model_dir = Path(model_dir)
    meta, states = load_export(model_dir)
    _check_export(meta, model_dir, network, arm)
    targets = {ENCODER_FILE: network.img_head}
    if arm == "bc":
        if ACTIONS_HEAD_FILE not in states:
            raise ExportError(
                f"{model_dir}: rl init 'bc' needs {ACTIONS_HEAD_FILE} (a bc.use_actions_head: true run); this export "
                f"holds {', '.join(sorted(states))}"
            )
        targets[ACTIONS_HEAD_FILE] = network.A_head
        if FLOAT_FEATURES_FILE in states:
            targets[FLOAT_FEATURES_FILE] = network.float_feature_extractor
    for name, module in targets.items():
        try:
            module.load_state_dict(states[name], strict=True)
        except RuntimeError as exc:  # load_export checked the shapes; this is the last line of defence
            reason = " ".join(str(exc).split())[:200]
            raise ExportError(f"{model_dir / name}: does not load into the agent ({reason})") from None
    return list(targets)
