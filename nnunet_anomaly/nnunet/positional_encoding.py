"""The reference's positional-encoding input channels, inside the network.

``CombinedEnc(dims, 32, 12)`` of the reference concatenates to the image D CoordConv channels
(``linspace(-1, 1)`` per axis) and 64 random Fourier features (sin and cos of ``2 pi B u`` with
``B ~ N(0, 1) * 12``, 32 x D, fixed seed 42, ``u`` in [0, 1) per axis). Doing this inside the
network (:class:`PositionalEncodingNetwork`) keeps nnU-Net's planner, data loader and predictor
seeing one input channel. The encoding is computed for the input's spatial shape, i.e. per
sliding-window patch; with the whole image as the patch (the paper's setting) it is per image.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn

__all__ = ["positional_encoding", "num_encoding_channels", "PositionalEncodingNetwork",
           "build_positional_encoding_network"]

ENCODING_SEED = 42
ENCODING_SCALE = 12.0
NUM_FREQUENCIES = 32


def num_encoding_channels(spatial_dims: int, num_frequencies: int = NUM_FREQUENCIES) -> int:
    """Channels added: D coordinates plus sin and cos of each frequency.

    Examples
    --------
    >>> num_encoding_channels(3), num_encoding_channels(2)
    (67, 66)
    """
    return spatial_dims + 2 * num_frequencies


@lru_cache(maxsize=8)
def _encoding(shape: tuple, num_frequencies: int, scale: float, seed: int) -> np.ndarray:
    dims = len(shape)
    coords = np.stack(np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float64) for n in shape], indexing="ij"))
    unit = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) / n for n in shape], indexing="ij"))
    frequencies = np.random.default_rng(seed).standard_normal((num_frequencies, dims)) * scale
    phase = 2 * np.pi * np.tensordot(frequencies, unit, axes=(1, 0))
    return np.concatenate([coords, np.sin(phase), np.cos(phase)]).astype(np.float32)


def positional_encoding(shape, *, num_frequencies: int = NUM_FREQUENCIES, scale: float = ENCODING_SCALE,
                        seed: int = ENCODING_SEED) -> np.ndarray:
    """CoordConv + random-Fourier-feature channels for a spatial `shape`: ``(D + 2F, *shape)`` float32.

    Examples
    --------
    >>> enc = positional_encoding((4, 6))
    >>> enc.shape, enc.dtype.name
    ((66, 4, 6), 'float32')
    >>> enc[0, :, 0].tolist()  # first coordinate channel runs from -1 to 1 along axis 0
    [-1.0, -0.3333333432674408, 0.3333333432674408, 1.0]
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be 2D or 3D with positive sizes, got {shape}")
    return _encoding(shape, num_frequencies, float(scale), int(seed)).copy()


class PositionalEncodingNetwork(nn.Module):
    """Wrap a network built for ``C + D + 2F`` input channels so that it takes ``C`` channels.

    ``decoder`` is forwarded so that nnU-Net's ``set_deep_supervision_enabled`` keeps working.

    Examples
    --------
    >>> inner = nn.Conv2d(1 + num_encoding_channels(2), 1, 1)
    >>> PositionalEncodingNetwork(inner, spatial_dims=2)(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(self, network: nn.Module, *, spatial_dims: int, num_frequencies: int = NUM_FREQUENCIES,
                 scale: float = ENCODING_SCALE, seed: int = ENCODING_SEED):
        super().__init__()
        self.network = network
        self.spatial_dims = spatial_dims
        self.num_frequencies = num_frequencies
        self.scale = scale
        self.seed = seed
        self._cache_key = None
        self._cache = None

    @property
    def decoder(self):
        return self.network.decoder

    def encoding_for(self, x: torch.Tensor) -> torch.Tensor:
        key = (tuple(x.shape[2:]), x.device, x.dtype)
        if key != self._cache_key:  # computed once per patch shape and device, like the reference's cache
            enc = positional_encoding(key[0], num_frequencies=self.num_frequencies, scale=self.scale, seed=self.seed)
            self._cache = torch.from_numpy(enc).to(device=x.device, dtype=x.dtype)
            self._cache_key = key
        return self._cache

    def forward(self, x: torch.Tensor):
        enc = self.encoding_for(x)
        return self.network(torch.cat([x, enc.expand(x.shape[0], *enc.shape)], dim=1))


def build_positional_encoding_network(configuration_manager, num_input_channels: int, num_output_channels: int,
                                      enable_deep_supervision: bool = True) -> PositionalEncodingNetwork:
    """nnU-Net's planned network with ``D + 64`` extra input channels, wrapped to take the planned input.

    A drop-in body for a trainer's static ``build_network_architecture``: it depends only on the plans,
    so nnU-Net's predictor rebuilds the same network from the checkpoint's trainer name.
    """
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    spatial_dims = len(configuration_manager.patch_size)
    network = get_network_from_plans(
        configuration_manager.network_arch_class_name, configuration_manager.network_arch_init_kwargs,
        configuration_manager.network_arch_init_kwargs_req_import,
        num_input_channels + num_encoding_channels(spatial_dims), num_output_channels, allow_init=True,
        deep_supervision=enable_deep_supervision)
    return PositionalEncodingNetwork(network, spatial_dims=spatial_dims)
