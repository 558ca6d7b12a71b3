"""The networks: the agent's image encoder and A_head, the Level 1 BC model and the Level 0 vision model.

Layer layouts and state_dict key names follow the IQN agent exactly (see the contract in shared/spec):
whatever is exported from here must load with strict=True into the agent's `img_head` and `A_head`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .actions import N_ACTIONS
from .convs import CONVS, conv_sizes

LEAKY_SLOPE = 0.01  # nn.LeakyReLU's default, as in the agent
FLOAT_INPUT_DIM = 184
FLOAT_FEATURE_DIM = 256
NORMALIZATIONS = ("iqn", "01")
# Level 0 task -> the extra metrics its loss() reports besides the loss itself.
VISION_TASK_METRICS = {"autoencoder": ("recon",), "vae": ("recon", "kl"), "simclr": ("acc",)}
VISION_TASKS = tuple(VISION_TASK_METRICS)


def denormalize(x: torch.Tensor, mode: str) -> torch.Tensor:
    """The inverse of `normalize`, clipped and rounded to uint8 pixels."""
    x = x.float() * 128.0 + 128.0 if mode == "iqn" else x.float() * 255.0
    return x.round().clamp(0, 255).to(torch.uint8)


def normalize(x: torch.Tensor, mode: str) -> torch.Tensor:
    """uint8 (or float holding 0..255) frames -> float32 network input.

    "iqn": exactly the agent's (x - 128) / 128; "01": x / 255.
    """
    if mode not in NORMALIZATIONS:
        raise ValueError(f"unknown image normalization {mode!r}; choose one of {', '.join(NORMALIZATIONS)}")
    x = x.to(torch.float32)
    return (x - 128.0) / 128.0 if mode == "iqn" else x / 255.0


# ------------------------------------------------------------------------------------------- encoder


def build_encoder() -> nn.Sequential:
    """The agent's img_head: 4 convolutions with LeakyReLU, then Flatten (keys 0.*, 2.*, 4.*, 6.*)."""
    layers: list[nn.Module] = []
    for c_in, c_out, k, s in CONVS:
        # In place: the activation then costs no second copy of each conv map (the largest memory of a batch,
        # times n_stack); the state_dict and the function are the agent's either way.
        layers += [nn.Conv2d(c_in, c_out, kernel_size=k, stride=s), nn.LeakyReLU(LEAKY_SLOPE, inplace=True)]
    return nn.Sequential(*layers, nn.Flatten())


def encoder_output_dim(height: int, width: int) -> int:
    """Width of the encoder's flattened output: 64x64 -> 512, 120x160 -> 5632."""
    h, w = conv_sizes(height, width)[-1]
    return CONVS[-1][1] * h * w


def build_float_feature_extractor() -> nn.Sequential:
    """The agent's float_feature_extractor (keys 0.*, 2.*)."""
    return nn.Sequential(
        nn.Linear(FLOAT_INPUT_DIM, FLOAT_FEATURE_DIM),
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Linear(FLOAT_FEATURE_DIM, FLOAT_FEATURE_DIM),
        nn.LeakyReLU(LEAKY_SLOPE),
    )


class ActionHead(nn.Sequential):
    """The agent's A_head: Linear(D, dense // 2), LeakyReLU, Linear(dense // 2, 12).

    The optional inner dropout sits inside slot 1 together with the LeakyReLU; slot 1 holds no parameters, so
    the state_dict keys stay exactly 0.weight 0.bias 2.weight 2.bias.
    """

    def __init__(self, in_features: int, dense_hidden_dimension: int = 1024, dropout: float = 0.0):
        hidden = dense_hidden_dimension // 2
        super().__init__(
            nn.Linear(in_features, hidden),
            nn.Sequential(nn.LeakyReLU(LEAKY_SLOPE), nn.Dropout(dropout)),
            nn.Linear(hidden, N_ACTIONS),
        )

    @property
    def in_features(self) -> int:
        return self[0].in_features


# ------------------------------------------------------------------------------------------- Level 1


class StackFusion(nn.Module):
    """A window's n_stack frame features (B, n_stack * F, oldest first) -> (B, F): per feature, a weighted sum over
    the frames plus a bias, i.e. a learned temporal filter per feature (a difference of two frames is motion).

    It starts as the newest frame alone (weight 1 on it, 0 on the older ones), so a stacked model begins as the
    single-frame one and learns from the older frames what helps; the older frames' weights get gradients from the
    first step. n_stack * F + F parameters: a dense Linear(n_stack * F, F) + LeakyReLU here (786k parameters at
    64x64, 130 times the Linear head) fitted the training split within 6 epochs and overfit from there, whatever
    its init (docs/experiments/n-stack.md)."""

    def __init__(self, n_stack: int, features: int):
        super().__init__()
        self.n_stack, self.features = n_stack, features
        weight = torch.zeros(n_stack, features)
        weight[-1] = 1.0
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.view(x.shape[0], self.n_stack, self.features) * self.weight).sum(dim=1) + self.bias


class BCModel(nn.Module):
    """Behavioral cloning: frames (+ optional floats) -> action logits at each time offset.

    Input x: float (B, n_stack, H, W), already normalized. The encoder (the agent's img_head, F outputs) is
    shared by the n_stack frames; with n_stack > 1 their features are fused by `StackFusion` (a per-feature
    weighted sum over the frames), so the heads' input width does not depend on n_stack. A stacked model's head
    sees fused rather than raw img_head features, so its transfer to the single-frame agent is approximate.

    A_head heads (use_actions_head) always take the agent's width D = F + 256: with use_floats, features are
    concat(img features, float_feature_extractor(floats)); without, the 256 float slots are zeros and the
    head's first-layer columns for them start at zero. They then receive no gradient (their inputs are zero)
    and weight decay keeps zeros at zero, so the exported head loads strictly into the agent's A_head and, at
    transfer, the agent's float features initially contribute nothing. Plain Linear heads take F (F + 256 with
    floats).

    `checkpoint_stack` (n_stack > 1, training): recompute each stack slot's encoder activations in backward
    instead of keeping them, so memory does not grow with n_stack (one extra encoder forward per step).

    `floats` is ignored when use_floats is False. `feature_dropout` (dropout) acts on the head input;
    `action_head_dropout` sits between the two Linear layers of each A_head.
    Output: logits (B, n_offsets, 12).
    """

    def __init__(
        self,
        *,
        image_hw: tuple[int, int],
        n_stack: int,
        n_offsets: int,
        use_actions_head: bool,
        dense_hidden_dimension: int,
        dropout: float,
        action_head_dropout: float,
        use_floats: bool,
        checkpoint_stack: bool = False,
    ):
        super().__init__()
        self.checkpoint_stack = checkpoint_stack
        if n_stack < 1 or n_offsets < 1:
            raise ValueError(f"n_stack and n_offsets must be >= 1, got {n_stack} and {n_offsets}")
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.n_stack, self.n_offsets = n_stack, n_offsets
        self.use_actions_head, self.use_floats = use_actions_head, use_floats
        self.img_feature_dim = encoder_output_dim(*self.image_hw)
        feat = self.img_feature_dim

        self.encoder = build_encoder()
        if n_stack == 1:
            self.stack_fusion: nn.Module = nn.Identity()
        else:
            self.stack_fusion = StackFusion(n_stack, feat)
        self.float_feature_extractor = build_float_feature_extractor() if use_floats else None
        self.feature_dropout = nn.Dropout(dropout)

        if use_actions_head:
            self.head_input_dim = feat + FLOAT_FEATURE_DIM
            heads = [
                ActionHead(self.head_input_dim, dense_hidden_dimension, action_head_dropout) for _ in range(n_offsets)
            ]
            if not use_floats:
                with torch.no_grad():
                    for head in heads:
                        head[0].weight[:, feat:] = 0.0
        else:
            self.head_input_dim = feat + (FLOAT_FEATURE_DIM if use_floats else 0)
            heads = [nn.Linear(self.head_input_dim, N_ACTIONS) for _ in range(n_offsets)]
        self.heads = nn.ModuleList(heads)

    def features(self, x: torch.Tensor, floats: torch.Tensor | None = None) -> torch.Tensor:
        """The heads' input (B, head_input_dim)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (self.n_stack, *self.image_hw):
            raise ValueError(
                f"BCModel expects input (B, {self.n_stack}, {self.image_hw[0]}, {self.image_hw[1]}), "
                f"got {tuple(x.shape)}"
            )
        b = x.shape[0]
        h, w = self.image_hw
        if self.checkpoint_stack and self.n_stack > 1 and self.training and torch.is_grad_enabled():
            # One stack slot at a time, its activations recomputed in backward instead of kept: peak memory is
            # that of n_stack = 1, for one more encoder forward. Same features, same layout as below.
            slots = [checkpoint(self.encoder, x[:, k : k + 1], use_reentrant=False) for k in range(self.n_stack)]
            img = torch.cat(slots, dim=1)
        else:
            img = self.encoder(x.reshape(b * self.n_stack, 1, h, w)).reshape(b, -1)  # a window's frames in a row
        img = self.stack_fusion(img)
        if self.float_feature_extractor is not None:
            if floats is None:
                raise ValueError("BCModel was built with use_floats=True but no float inputs were given")
            feats = torch.cat([img, self.float_feature_extractor(floats.to(img.dtype))], dim=1)
        elif self.use_actions_head:
            feats = torch.cat([img, img.new_zeros(b, FLOAT_FEATURE_DIM)], dim=1)
        else:
            feats = img
        return self.feature_dropout(feats)

    def forward(self, x: torch.Tensor, floats: torch.Tensor | None = None) -> torch.Tensor:
        feats = self.features(x, floats)
        return torch.stack([head(feats) for head in self.heads], dim=1)


# ------------------------------------------------------------------------------------------- Level 0


def _rand(shape, like: torch.Tensor, generator: torch.Generator | None, normal: bool = False) -> torch.Tensor:
    """Uniform [0, 1) (or standard normal) noise from `generator` (on its device), moved to like's device."""
    device = generator.device if generator is not None else like.device
    fn = torch.randn if normal else torch.rand
    return fn(shape, generator=generator, device=device).to(device=like.device, dtype=like.dtype)


def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """SimCLR view of a normalized batch (B, C, H, W), parameters drawn per sample from `generator`.

    Random crop-resize (zoom 1.0-1.25x) with translation, brightness/contrast jitter, small Gaussian noise.
    """
    b = x.shape[0]
    x = x.float()
    scale = 0.8 + 0.2 * _rand((b,), x, generator)  # fraction of the frame kept
    shift = (1.0 - scale + 0.1)[:, None] * (2.0 * _rand((b, 2), x, generator) - 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = 0.8 + 0.4 * _rand((b, 1, 1, 1), x, generator)
    brightness = 0.2 * _rand((b, 1, 1, 1), x, generator) - 0.1
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast + mean + brightness
    return x + 0.02 * _rand(x.shape, x, generator, normal=True)


class _Decoder(nn.Module):
    """Mirror of the encoder: Linear to the conv map, then transposed convolutions back to exactly H x W."""

    def __init__(self, in_dim: int, image_hw: tuple[int, int]):
        super().__init__()
        self.sizes = conv_sizes(*image_hw)
        h, w = self.sizes[-1]
        self.map_shape = (CONVS[-1][1], h, w)
        self.fc = nn.Linear(in_dim, CONVS[-1][1] * h * w)
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(c_out, c_in, k, s) for c_in, c_out, k, s in reversed(CONVS))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.fc(z), LEAKY_SLOPE).reshape(z.shape[0], *self.map_shape)
        for i, (deconv, size) in enumerate(zip(self.deconvs, reversed(self.sizes[:-1]), strict=True)):
            x = deconv(x, output_size=list(size))  # output_size picks the output_padding that undoes the floor
            if i < len(self.deconvs) - 1:
                x = F.leaky_relu(x, LEAKY_SLOPE)
        return x


class VisionModel(nn.Module):
    """Level 0: pretrain the agent's img_head on frames alone.

    - autoencoder: encoder -> Linear to the conv map -> transposed convolutions -> exactly H x W;
      MSE in normalized space.
    - vae: mu / logvar = Linear(F, latent); z = mu + eps * std; decoder from z; loss = MSE + beta * KL, with
      KL summed over latent dimensions and averaged over the batch.
    - simclr: two augmented views per frame, projection MLP, NT-Xent with temperature; reports "acc", the
      top-1 retrieval accuracy of each view's positive among the other 2B - 1 views.
    """

    def __init__(
        self,
        *,
        image_hw: tuple[int, int],
        task: str = "autoencoder",
        latent_dim: int = 128,
        vae_beta: float = 1e-3,
        simclr_temperature: float = 0.2,
        simclr_projection_dim: int = 64,
    ):
        super().__init__()
        if task not in VISION_TASKS:
            raise ValueError(f"unknown vision task {task!r}; choose one of {', '.join(VISION_TASKS)}")
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.task = task
        self.vae_beta, self.temperature = vae_beta, simclr_temperature
        feat = encoder_output_dim(*self.image_hw)
        self.encoder = build_encoder()
        if task == "autoencoder":
            self.decoder = _Decoder(feat, self.image_hw)
        elif task == "vae":
            self.mu = nn.Linear(feat, latent_dim)
            self.logvar = nn.Linear(feat, latent_dim)
            self.decoder = _Decoder(latent_dim, self.image_hw)
        else:
            hidden = 512
            self.projection = nn.Sequential(
                nn.Linear(feat, hidden), nn.LeakyReLU(LEAKY_SLOPE), nn.Linear(hidden, simclr_projection_dim)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The decoder's picture of normalized frames x (B, 1, H, W): autoencoder, or VAE at the mean latent."""
        if self.task == "autoencoder":
            return self.decoder(self.encoder(x))
        if self.task == "vae":
            return self.decoder(self.mu(self.encoder(x)))
        raise ValueError(f"{self.task} has no decoder")

    def loss(
        self, x: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """x: normalized float (B, 1, H, W). Returns (loss, extra metrics as detached 0-dim tensors)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != (1, *self.image_hw):
            h, w = self.image_hw
            raise ValueError(f"VisionModel expects input (B, 1, {h}, {w}), got {tuple(x.shape)}")
        if self.task == "autoencoder":
            recon = F.mse_loss(self.decoder(self.encoder(x)).float(), x.float())
            return recon, {"recon": recon.detach()}
        if self.task == "vae":
            h = self.encoder(x)
            mu, logvar = self.mu(h).float(), self.logvar(h).float().clamp(-20.0, 20.0)
            z = mu + torch.exp(0.5 * logvar) * _rand(mu.shape, mu, generator, normal=True)
            recon = F.mse_loss(self.decoder(z).float(), x.float())
            kl = (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
            return recon + self.vae_beta * kl, {"recon": recon.detach(), "kl": kl.detach()}
        return self._simclr(x, generator)

    def _simclr(self, x: torch.Tensor, generator: torch.Generator | None):
        b = x.shape[0]
        views = torch.cat([augment(x, generator), augment(x, generator)], dim=0).to(x.dtype)
        z = F.normalize(self.projection(self.encoder(views)).float(), dim=1)
        sim = z @ z.t() / self.temperature
        sim = sim.masked_fill(torch.eye(2 * b, dtype=torch.bool, device=sim.device), float("-inf"))
        target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(sim.device)
        loss = F.cross_entropy(sim, target)
        acc = (sim.argmax(dim=1) == target).float().mean()
        return loss, {"acc": acc.detach()}
