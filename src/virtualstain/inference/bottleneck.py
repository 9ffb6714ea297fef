"""The network's bottleneck features of image tiles: what the input check compares with training.

The bottleneck is found from the network itself, whatever its architecture: a forward pass of a small input with a
hook on every module records each module's output; the bottleneck is the output with the fewest spatial elements
(the deepest point of an encoder), then the most channels, then the last to run (for a network that never
downsamples, the deepest layer of that width). Features are that output averaged over its spatial axes. The
forward pass stops there, so the decoder never runs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


class _Reached(Exception):
    """Raised by the hook to stop the forward pass at the bottleneck."""


def find_bottleneck(network: nn.Module, in_channels: int, size: tuple[int, ...]) -> str:
    """Name of the module (``network.named_modules()``) whose output is the bottleneck, for inputs of ``size``."""
    seen: list[tuple[int, int, int, str]] = []  # (spatial elements, -channels, -order, name)
    handles = []

    def hook(name: str):
        def record(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and output.ndim == len(size) + 2:
                seen.append((math.prod(output.shape[2:]), -output.shape[1], -len(seen), name))
        return record

    for name, module in network.named_modules():
        if name:
            handles.append(module.register_forward_hook(hook(name)))
    device = next(network.parameters()).device
    try:
        with torch.no_grad():
            network(torch.zeros((1, in_channels, *size), device=device))
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise ValueError("the network has no module with a feature-map output")
    return min(seen)[3]


def bottleneck_features(network: nn.Module, module_name: str, tiles: np.ndarray, batch: int = 32) -> np.ndarray:
    """``(N, C_b)`` float64: the bottleneck output of each ``(N, C, [Z,] T, T)`` tile averaged over space."""
    module = dict(network.named_modules())[module_name]
    captured: list[torch.Tensor] = []

    def stop(_module, _inputs, output):
        captured.append(output.detach().float().mean(dim=tuple(range(2, output.ndim))).cpu())
        raise _Reached

    handle = module.register_forward_hook(stop)
    device = next(network.parameters()).device
    try:
        with torch.no_grad():
            for i in range(0, len(tiles), batch):
                try:
                    network(torch.from_numpy(np.ascontiguousarray(tiles[i:i + batch])).to(device))
                except _Reached:
                    pass
    finally:
        handle.remove()
    return torch.cat(captured).double().numpy() if captured else np.zeros((0, 0))
