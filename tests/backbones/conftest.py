"""Golden fixtures of the reference Video Swin / I3D code (read from ../shared/fixtures, README inside)
and an independent description of the published checkpoint layouts."""

from __future__ import annotations

import functools
import itertools

import pytest
import torch

from tests.conftest import SHARED

DATA = SHARED / "fixtures"


def load_fixture(name: str, file: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    from tests.conftest import shared_fixtures

    return load_file(str(shared_fixtures(name) / file))


@functools.lru_cache
def reference_relative_index(window: tuple[int, int, int]) -> torch.Tensor:
    """Brute force over token pairs: (dd + Wd-1)(2Wh-1)(2Ww-1) + (dh + Wh-1)(2Ww-1) + (dw + Ww-1)."""
    wd, wh, ww = window
    tokens = list(itertools.product(range(wd), range(wh), range(ww)))
    idx = torch.empty(len(tokens), len(tokens), dtype=torch.long)
    for i, (d1, h1, w1) in enumerate(tokens):
        for j, (d2, h2, w2) in enumerate(tokens):
            idx[i, j] = (
                (d1 - d2 + wd - 1) * (2 * wh - 1) * (2 * ww - 1)
                + (h1 - h2 + wh - 1) * (2 * ww - 1)
                + (w1 - w2 + ww - 1)
            )
    return idx


def published_swin_shapes(embed, depths, heads, window, patch=(2, 4, 4), num_classes=400, mlp_ratio=4):
    """{key: shape} of a published MMAction2 Video Swin checkpoint's state_dict (README 'key layout')."""
    rows = (2 * window[0] - 1) * (2 * window[1] - 1) * (2 * window[2] - 1)
    n = window[0] * window[1] * window[2]
    shapes = {
        "backbone.patch_embed.proj.weight": (embed, 3, *patch),
        "backbone.patch_embed.proj.bias": (embed,),
        "backbone.patch_embed.norm.weight": (embed,),
        "backbone.patch_embed.norm.bias": (embed,),
    }
    for i, (depth, h) in enumerate(zip(depths, heads, strict=True)):
        c = embed * 2**i
        for j in range(depth):
            p = f"backbone.layers.{i}.blocks.{j}."
            shapes.update({
                p + "norm1.weight": (c,), p + "norm1.bias": (c,),
                p + "attn.relative_position_bias_table": (rows, h), p + "attn.relative_position_index": (n, n),
                p + "attn.qkv.weight": (3 * c, c), p + "attn.qkv.bias": (3 * c,),
                p + "attn.proj.weight": (c, c), p + "attn.proj.bias": (c,),
                p + "norm2.weight": (c,), p + "norm2.bias": (c,),
                p + "mlp.fc1.weight": (mlp_ratio * c, c), p + "mlp.fc1.bias": (mlp_ratio * c,),
                p + "mlp.fc2.weight": (c, mlp_ratio * c), p + "mlp.fc2.bias": (c,),
            })  # fmt: skip
        if i < len(depths) - 1:
            p = f"backbone.layers.{i}.downsample."
            shapes.update(
                {
                    p + "norm.weight": (4 * c,),
                    p + "norm.bias": (4 * c,),
                    p + "reduction.weight": (2 * c, 4 * c),
                }
            )
    c = embed * 2 ** (len(depths) - 1)
    shapes.update({"backbone.norm.weight": (c,), "backbone.norm.bias": (c,)})
    if num_classes:
        shapes.update({"cls_head.fc_cls.weight": (num_classes, c), "cls_head.fc_cls.bias": (num_classes,)})
    return shapes


def filled_state(shapes: dict[str, tuple[int, ...]], window=None) -> dict[str, torch.Tensor]:
    """A state dict with a distinct constant per tensor (a swapped key shows), real index buffers."""
    state = {}
    for i, (k, shape) in enumerate(sorted(shapes.items())):
        if k.endswith("relative_position_index"):
            state[k] = reference_relative_index(window).clone()
        elif k.endswith("num_batches_tracked"):
            state[k] = torch.tensor(0)
        else:
            state[k] = torch.full(shape, 0.001 * (i + 1))
    return state


@pytest.fixture(scope="session")
def swin_fixture():
    return (
        load_fixture("videoswin", "weights_official.safetensors"),
        load_fixture("videoswin", "inputs.safetensors"),
        load_fixture("videoswin", "outputs.safetensors"),
        load_fixture("videoswin", "outputs_float64.safetensors"),
    )


@pytest.fixture(scope="session")
def i3d_fixture():
    """(rgb state, flow state composed as the README says, inputs, outputs, outputs float64), float32."""
    rgb = load_fixture("i3d", "weights_rgb.safetensors")
    flow = {**rgb, **load_fixture("i3d", "weights_flow_overrides.safetensors")}

    def f32(state):
        return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}

    return (
        f32(rgb),
        f32(flow),
        f32(load_fixture("i3d", "inputs.safetensors")),
        load_fixture("i3d", "outputs.safetensors"),
        load_fixture("i3d", "outputs_float64.safetensors"),
    )
