"""The geometry of the agent's image encoder (img_head), without torch: `validate` checks image sizes with it."""

from __future__ import annotations

# (in_channels, out_channels, kernel, stride) of the agent's img_head convolutions, no padding.
CONVS = ((1, 16, 4, 2), (16, 32, 4, 2), (32, 64, 3, 2), (64, 32, 3, 1))


def _min_side() -> int:
    side = 1  # the last convolution must leave at least one pixel; walk the strides back to the input
    for _, _, k, s in reversed(CONVS):
        side = (side - 1) * s + k
    return side


MIN_IMAGE_SIDE = _min_side()  # 34


def conv_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Spatial size before the encoder and after each of its convolutions (5 entries, input first)."""
    sizes = [(int(height), int(width))]
    for _, _, k, s in CONVS:
        h, w = sizes[-1]
        h, w = (h - k) // s + 1 if h >= k else 0, (w - k) // s + 1 if w >= k else 0
        if h < 1 or w < 1:
            raise ValueError(
                f"image {height}x{width} (HxW) is too small for the agent's encoder: the convolutions need "
                f"at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels"
            )
        sizes.append((h, w))
    return sizes
