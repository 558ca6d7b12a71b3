"""A stand-in for the agent's IQN network, written from the contract (shared/spec/iqn_contract.md) only.

It deliberately shares no code with tmpretrain.models: the tests load our exports into this network with
strict=True and compare forward passes, as the agent would.
"""

from __future__ import annotations

import math

import torch
from torch import nn

VARIANTS = {
    # name: (H, W, iqn embedding E)
    "64x64": (64, 64, 128),
    "120x160": (120, 160, 64),
}


def agent_input(frames_uint8: torch.Tensor) -> torch.Tensor:
    """The agent's RL-time input convention: uint8 grayscale, seen as (x - 128) / 128."""
    return (frames_uint8.float() - 128) / 128


class IQNNetwork(nn.Module):
    def __init__(
        self,
        height: int,
        width: int,
        iqn_embedding_dimension: int,
        dense_hidden_dimension: int = 1024,
        float_inputs_dim: int = 184,
        float_hidden_dim: int = 256,
        n_actions: int = 12,
    ):
        super().__init__()
        act = nn.LeakyReLU
        self.iqn_embedding_dimension = iqn_embedding_dimension
        self.img_head = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=(4, 4), stride=2),
            act(inplace=True),
            nn.Conv2d(16, 32, kernel_size=(4, 4), stride=2),
            act(inplace=True),
            nn.Conv2d(32, 64, kernel_size=(3, 3), stride=2),
            act(inplace=True),
            nn.Conv2d(64, 32, kernel_size=(3, 3), stride=1),
            act(inplace=True),
            nn.Flatten(),
        )
        with torch.no_grad():
            conv_head_output_dim = self.img_head(torch.zeros(1, 1, height, width)).shape[1]
        self.conv_head_output_dim = conv_head_output_dim
        self.float_feature_extractor = nn.Sequential(
            nn.Linear(float_inputs_dim, float_hidden_dim),
            act(inplace=True),
            nn.Linear(float_hidden_dim, float_hidden_dim),
            act(inplace=True),
        )
        dense_input_dimension = conv_head_output_dim + float_hidden_dim
        self.dense_input_dimension = dense_input_dimension
        self.A_head = nn.Sequential(
            nn.Linear(dense_input_dimension, dense_hidden_dimension // 2),
            act(inplace=True),
            nn.Linear(dense_hidden_dimension // 2, n_actions),
        )
        self.V_head = nn.Sequential(
            nn.Linear(dense_input_dimension, dense_hidden_dimension // 2),
            act(inplace=True),
            nn.Linear(dense_hidden_dimension // 2, 1),
        )
        self.iqn_fc = nn.Sequential(nn.Linear(iqn_embedding_dimension, dense_input_dimension), act(inplace=True))

    def forward(self, img: torch.Tensor, float_inputs: torch.Tensor, num_quantiles: int, tau=None):
        """img: already (x - 128) / 128, (B, 1, H, W). Returns (Q (B * num_quantiles, n_actions), tau)."""
        batch_size = img.shape[0]
        img_outputs = self.img_head(img)
        float_outputs = self.float_feature_extractor(float_inputs)
        concatenated = torch.cat((img_outputs, float_outputs), 1)
        if tau is None:
            tau = torch.rand(batch_size * num_quantiles, 1, device=img.device)
        i = torch.arange(1, self.iqn_embedding_dimension + 1, device=img.device, dtype=torch.float32)
        quantile_net = self.iqn_fc(torch.cos(math.pi * i[None, :] * tau))
        concatenated = concatenated.repeat(num_quantiles, 1) * quantile_net
        A = self.A_head(concatenated)
        V = self.V_head(concatenated)
        return V + A - A.mean(dim=-1, keepdim=True), tau
