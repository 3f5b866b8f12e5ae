"""Heatmap oracles: closed-form Grad-CAM, rollout re-derivations, a manual ViT forward (spec §7)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from surgkit.errors import SurgkitError
from surgkit.grounding.heatmaps import chefer_rollout


class _FixedFeatures(torch.nn.Module):
    """A 'trunk' whose layer4 map is a fixed tensor A, whatever the input."""

    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, x):
        return self.a


def _minmax(m):
    lo, hi = m.amin(dim=(-2, -1), keepdim=True), m.amax(dim=(-2, -1), keepdim=True)
    return (m - lo) / (hi - lo)


def test_gradcam_closed_form(tiny_surgvlp):
    """features -> GAP -> Linear: dy/dA is spatially constant, alpha = W^T dy/de / (h w)."""
    g = torch.Generator().manual_seed(1)
    b, k, h, w = 2, tiny_surgvlp.model.image.trunk.out_channels, 3, 5
    a = torch.randn(b, k, h, w, generator=g, dtype=torch.float32)
    t = torch.randn(b, 32, generator=g)
    tiny_surgvlp.model.image.trunk = _FixedFeatures(a)
    maps = tiny_surgvlp.heatmap(torch.zeros(b, 3, 64, 64), t)

    proj = tiny_surgvlp.model.image.proj
    with torch.no_grad():
        e = proj(a.mean(dim=(2, 3)))
        e_hat, t_hat = F.normalize(e, dim=-1), F.normalize(t, dim=-1)
        y = (e_hat * t_hat).sum(-1, keepdim=True)
        dy_de = (t_hat - y * e_hat) / e.norm(dim=-1, keepdim=True)  # gradient of cos(e, t) w.r.t. e
        alpha = dy_de @ proj.weight / (h * w)
        cam = torch.relu((alpha[:, :, None, None] * a).sum(1))
        expected = _minmax(
            F.interpolate(cam[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
        )
    torch.testing.assert_close(maps, expected, atol=1e-6, rtol=0)


def test_gradcam_equals_hooked_autograd_and_is_scale_invariant(tiny_surgvlp):
    """The hook-free implementation equals retain_grad on layer4 through the whole trunk; y and 100 y agree."""
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    t = torch.randn(3, 32, generator=torch.Generator().manual_seed(3))
    maps = tiny_surgvlp.heatmap(x, t)

    image = tiny_surgvlp.model.image
    feats = image.features(x)
    feats.retain_grad()
    y = F.cosine_similarity(image.embed_from_features(feats), t, dim=-1)
    (100.0 * y).sum().backward()
    alpha = feats.grad.mean(dim=(2, 3))
    cam = torch.relu((alpha[:, :, None, None] * feats.detach()).sum(1))
    expected = _minmax(F.interpolate(cam[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0])
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=0)
    assert maps.shape == (3, 64, 64) and float(maps.amin()) == 0.0 and float(maps.amax()) == 1.0


def test_gradcam_constant_map_is_all_zero(tiny_surgvlp):
    tiny_surgvlp.model.image.trunk = _FixedFeatures(
        torch.ones(1, tiny_surgvlp.model.image.trunk.out_channels, 2, 2)
    )
    maps = tiny_surgvlp.heatmap(torch.zeros(1, 3, 64, 64), torch.randn(1, 32))
    assert torch.count_nonzero(maps) == 0


# -- rollout on synthetic tensors -----------------------------------------------------------------
def _rand_layers(n_layers, b=2, heads=3, n=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    attn = [torch.softmax(torch.randn(b, heads, n, n, generator=g), -1) for _ in range(n_layers)]
    grad = [torch.randn(b, heads, n, n, generator=g) for _ in range(n_layers)]
    return attn, grad


def test_rollout_one_layer():
    attn, grad = _rand_layers(1)
    expected = (grad[0] * attn[0]).clamp(min=0).mean(1)[:, 0, 1:]
    # R = I + C, so R[0, 1:] = C[0, 1:] (the identity has no off-diagonal entries)
    torch.testing.assert_close(chefer_rollout(attn, grad), expected)


def test_rollout_two_layers_product_order():
    attn, grad = _rand_layers(2)
    c1 = (grad[0] * attn[0]).clamp(min=0).mean(1)
    c2 = (grad[1] * attn[1]).clamp(min=0).mean(1)
    eye = torch.eye(5)
    expected = ((eye + c2) @ (eye + c1))[:, 0, 1:]
    torch.testing.assert_close(chefer_rollout(attn, grad), expected)
    wrong_order = ((eye + c1) @ (eye + c2))[:, 0, 1:]
    assert not torch.allclose(expected, wrong_order)
    torch.testing.assert_close(chefer_rollout(attn, grad, order="later-right"), wrong_order)
    with pytest.raises(SurgkitError, match="rollout order"):
        chefer_rollout(attn, grad, order="sideways")


def test_rollout_start_layer_semantics():
    attn, grad = _rand_layers(4, seed=5)
    torch.testing.assert_close(chefer_rollout(attn, grad, start_layer=-1), chefer_rollout(attn[3:], grad[3:]))
    torch.testing.assert_close(chefer_rollout(attn, grad, start_layer=2), chefer_rollout(attn[2:], grad[2:]))
    assert not torch.allclose(chefer_rollout(attn, grad, 0), chefer_rollout(attn, grad, -1))
    with pytest.raises(SurgkitError, match="start_layer"):
        chefer_rollout(attn, grad, start_layer=4)


# -- rollout end to end on a tiny HF CLIP -----------------------------------------------------------
def _manual_vit(model, pixels):
    """A hand-written CLIP ViT forward from the HF weights that records its own attention probabilities."""
    vm, cfg = model.vision_model, model.config.vision_config
    p = cfg.patch_size
    x = F.conv2d(pixels, vm.embeddings.patch_embedding.weight, stride=p).flatten(2).transpose(1, 2)
    cls = vm.embeddings.class_embedding.expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], 1) + vm.embeddings.position_embedding.weight[None]
    x = F.layer_norm(x, (x.shape[-1],), vm.pre_layrnorm.weight, vm.pre_layrnorm.bias, vm.pre_layrnorm.eps)
    probs = []
    heads = cfg.num_attention_heads
    for layer in vm.encoder.layers:
        at = layer.self_attn
        y = layer.layer_norm1(x)
        b, n, d = y.shape

        shape = (b, n, heads, d // heads)
        q, k, v = (proj(y).view(shape).transpose(1, 2) for proj in (at.q_proj, at.k_proj, at.v_proj))
        a = torch.softmax(q @ k.transpose(-1, -2) * (d // heads) ** -0.5, dim=-1)
        a.retain_grad()
        probs.append(a)
        x = x + at.out_proj((a @ v).transpose(1, 2).reshape(b, n, d))
        h = layer.mlp.fc2(layer.mlp.activation_fn(layer.mlp.fc1(layer.layer_norm2(x))))
        x = x + h
    pooled = vm.post_layernorm(x[:, 0])
    return model.visual_projection(pooled), probs


def _loop_rollout(probs, grads, start=0):
    """Straightforward per-image loop: R = I; R = R + mean_h(clamp(g * a)) @ R."""
    out = []
    for i in range(probs[0].shape[0]):
        n = probs[0].shape[-1]
        r = torch.eye(n)
        for layer in range(start, len(probs)):
            cam = (grads[layer][i] * probs[layer][i]).clamp(min=0).mean(0)
            r = r + cam @ r
        out.append(r[0, 1:])
    return torch.stack(out)


def test_hf_attentions_equal_manual_vit_and_rollout_equals_loop(tiny_clip):
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    t = F.normalize(torch.randn(2, tiny_clip.model.config.projection_dim), dim=-1)
    scale = tiny_clip.score_scale

    emb_hf, attn_hf = tiny_clip.vision_attentions(x)
    score_hf = scale * F.cosine_similarity(emb_hf, t, dim=-1)
    grads_hf = torch.autograd.grad(score_hf.sum(), attn_hf)

    emb_m, probs = _manual_vit(tiny_clip.model, x.clone().requires_grad_(True))
    score_m = scale * F.cosine_similarity(emb_m, t, dim=-1)
    score_m.sum().backward()
    for a_hf, a_m in zip(attn_hf, probs, strict=True):
        torch.testing.assert_close(a_hf, a_m, atol=1e-6, rtol=0)
    torch.testing.assert_close(score_hf, score_m, atol=1e-6, rtol=0)
    expected = _loop_rollout([p.detach() for p in probs], [p.grad for p in probs])
    ours = chefer_rollout(attn_hf, grads_hf)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)

    # retain_grad + backward gives the same gradients as autograd.grad
    emb2, attn2 = tiny_clip.vision_attentions(x)
    for a in attn2:
        a.retain_grad()
    (scale * F.cosine_similarity(emb2, t, dim=-1)).sum().backward()
    for g1, a in zip(grads_hf, attn2, strict=True):
        torch.testing.assert_close(g1, a.grad, atol=1e-7, rtol=0)

    maps = tiny_clip.heatmap(x, t)
    grid = expected.reshape(2, 4, 4)
    ref = _minmax(F.interpolate(grid[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0])
    torch.testing.assert_close(maps, ref, atol=1e-5, rtol=0)


def test_rollout_batch_independence_and_frozen_params(tiny_clip):
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(6))
    t = torch.randn(3, tiny_clip.model.config.projection_dim)
    batched = tiny_clip.heatmap(x, t)
    single = torch.cat([tiny_clip.heatmap(x[i : i + 1], t[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    for p in tiny_clip.model.parameters():
        p.requires_grad_(False)
    with torch.no_grad():  # the explainer enables gradients itself
        frozen = tiny_clip.heatmap(x, t)
    torch.testing.assert_close(frozen, batched, atol=1e-6, rtol=0)


def test_rollout_settings_change_the_map_and_are_described(tiny_clip_dir):
    from surgkit.grounding.clip import HFClipAdapter
    from surgkit.grounding.protocol import HeatmapOptions

    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(7))
    t = torch.randn(1, 16)
    adapter = HFClipAdapter.from_pretrained(tiny_clip_dir)
    assert (
        adapter.describe_heatmap()["blocks"] == "all" and adapter.describe_heatmap()["order"] == "later-left"
    )
    full = adapter.heatmap(x, t)
    last = adapter.configure(heatmap=HeatmapOptions(rollout_start=-1)).heatmap(x, t)
    assert adapter.describe_heatmap()["blocks"] == "last"
    cosine = adapter.configure(heatmap=HeatmapOptions(rollout_target="cosine")).heatmap(x, t)
    assert adapter.describe_heatmap()["target"] == "cos" and adapter.score_scale == 1.0
    reverse = adapter.configure(heatmap=HeatmapOptions(rollout_order="later-right")).heatmap(x, t)
    assert (full - last).abs().max() > 1e-3
    assert (full - cosine).abs().max() > 1e-6  # rollout is not scale invariant
    assert (full - reverse).abs().max() > 1e-3


def test_gradcam_layer3_equals_retain_grad_at_layer3(tiny_surgvlp):
    from surgkit.grounding.protocol import HeatmapOptions

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    t = torch.randn(2, 32, generator=torch.Generator().manual_seed(5))
    maps = tiny_surgvlp.configure(heatmap=HeatmapOptions(gradcam_layer="layer3")).heatmap(x, t)
    assert tiny_surgvlp.describe_heatmap()["layer"] == "image.trunk.layer3"
    trunk = tiny_surgvlp.model.image.trunk
    a3 = trunk.layer3(trunk.layer2(trunk.layer1(trunk.maxpool(trunk.relu(trunk.bn1(trunk.conv1(x)))))))
    a3.retain_grad()
    y = F.cosine_similarity(tiny_surgvlp.model.image.proj(trunk.layer4(a3).mean(dim=(2, 3))), t, dim=-1)
    y.sum().backward()
    cam = torch.relu((a3.grad.mean(dim=(2, 3))[:, :, None, None] * a3.detach()).sum(1))
    expected = _minmax(F.interpolate(cam[:, None], size=(64, 64), mode="bilinear", align_corners=False)[:, 0])
    torch.testing.assert_close(maps, expected, atol=1e-5, rtol=0)
    layer4 = tiny_surgvlp.configure(heatmap=HeatmapOptions()).heatmap(x, t)
    assert (layer4 - maps).abs().max() > 1e-2


def test_sdpa_attention_is_refused(tiny_clip):
    tiny_clip.model.set_attn_implementation("sdpa")
    with pytest.raises(SurgkitError, match="eager"):
        tiny_clip.heatmap(torch.randn(1, 3, 32, 32), torch.randn(1, 16))


def test_inference_mode_is_refused(tiny_clip):
    with torch.inference_mode(), pytest.raises(SurgkitError, match="inference_mode"):
        tiny_clip.heatmap(torch.randn(1, 3, 32, 32), torch.randn(1, 16))
