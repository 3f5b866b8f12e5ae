"""The demo model's parts against independent computations: the CLIP tower (image rebuilt from the
processor's patches, features = CLIP run directly, memoised features identical and invalidated when a
weight changes), the cached resized images (same pixels as the processor's own resize), the completion-only
loss (= cross-entropy over the full logits) and length-bucketed batches."""

import os
import random

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402

from surgkit.reasoning.batching import LengthBucketSampler, padding_efficiency  # noqa: E402
from surgkit.reasoning.tiny_vlm import CLIP_MEAN, CLIP_STD, TinyVLMConfig, build_tiny_vlm  # noqa: E402
from surgkit.reasoning.vlm import load_processor, load_vlm  # noqa: E402

CORPUS = ["What surgical phase is shown?", "<think>Level 1: a grasper.</think><answer>yes</answer>"] * 4


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory):
    """A tiny random CLIP folder and a ``clip`` tiny VLM built on it (84x84 input, 9 image tokens)."""
    from transformers import CLIPConfig, CLIPModel

    d = tmp_path_factory.mktemp("clipvlm")
    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2),
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=48,
            patch_size=12,
        ),
        projection_dim=16,
    )  # fmt: skip
    CLIPModel(cfg).save_pretrained(d / "clip")
    vlm_cfg = TinyVLMConfig(kind="clip", hidden_size=48, intermediate_size=96, image_pixels=84 * 84)
    folder = build_tiny_vlm(
        d / "vlm", CORPUS, TinyVLMConfig(**{**vlm_cfg.__dict__, "vision_tower": str(d / "clip")})
    )
    rng = np.random.default_rng(0)
    paths = []
    for k, (w, h) in enumerate([(84, 84), (84, 84), (120, 90)]):
        paths.append(d / f"img{k}.png")
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return d, folder, paths


def _inputs(proc, paths):
    images = [Image.open(p).convert("RGB") for p in paths]
    text = ["<|vision_start|><|image_pad|><|vision_end|>hi"] * len(images)
    return proc(images=images, text=text, return_tensors="pt", padding=True)


def test_clip_tower_reads_the_processor_patches_and_runs_clip(clip_model):
    from transformers import CLIPVisionModel

    d, folder, paths = clip_model
    model, proc = load_vlm(folder, device="cpu")
    tower = model.model.visual
    x = _inputs(proc, paths[:1])
    img = tower.images(x["pixel_values"], x["image_grid_thw"])[0]
    # oracle: the processor's resize of the same image, normalised with the CLIP statistics, channels first
    rgb = np.asarray(Image.open(paths[0]).convert("RGB"), dtype=np.float32) / 255.0  # 84x84: no resize
    want = (rgb - np.array(CLIP_MEAN, dtype=np.float32)) / np.array(CLIP_STD, dtype=np.float32)
    assert torch.allclose(img, torch.from_numpy(want).permute(2, 0, 1), atol=1e-5)
    # features: CLIP loaded independently from its folder, run on the image resized to its input size
    clip = CLIPVisionModel.from_pretrained(d / "clip").eval()
    with torch.no_grad():
        h = clip(pixel_values=F.interpolate(img[None], size=(48, 48), mode="bilinear")).last_hidden_state
    grid = h[0, 1:].T.reshape(32, 4, 4)
    pooled = F.adaptive_avg_pool2d(grid, (3, 3)).flatten(1).T  # 9 merged tokens, row-major
    want_feats = torch.cat([pooled, h[0, :1].expand(9, -1)], dim=1)
    got = tower.clip_features(img[None], (3, 3))[0]
    assert torch.allclose(got, want_feats, atol=1e-5)
    with torch.no_grad():
        out = tower(x["pixel_values"], x["image_grid_thw"]).last_hidden_state
    assert torch.allclose(out, tower.proj(want_feats), atol=1e-5)


def test_clip_features_memoised_identical_and_invalidated(clip_model):
    d, folder, paths = clip_model
    model, proc = load_vlm(folder, device="cpu")
    tower = model.model.visual
    calls = []
    tower.clip.register_forward_hook(lambda m, i, o: calls.append(i))
    assert not any(p.requires_grad for p in tower.clip.parameters())  # frozen after loading too
    x = _inputs(proc, paths)
    with torch.no_grad():
        first = tower(x["pixel_values"], x["image_grid_thw"]).last_hidden_state
        again = tower(x["pixel_values"], x["image_grid_thw"]).last_hidden_state
    assert len(calls) == 2  # two image sizes on the first call, none on the second
    assert torch.equal(first, again)
    with torch.no_grad():  # any in-place weight change drops the memo
        next(tower.clip.parameters()).mul_(2.0)
        changed = tower(x["pixel_values"], x["image_grid_thw"]).last_hidden_state
    assert len(calls) == 4 and not torch.allclose(changed, first)
    tower.clip.requires_grad_(True)  # a trainable tower is never memoised
    with torch.no_grad():
        tower(x["pixel_values"], x["image_grid_thw"])
        tower(x["pixel_values"], x["image_grid_thw"])
    assert len(calls) == 8


def test_cached_resized_images_give_the_processors_pixels(clip_model, tmp_path):
    from surgkit.reasoning.train import resized_images

    d, folder, paths = clip_model
    proc = load_processor(folder)
    rows = [{"images": [str(p)]} for p in paths]
    cached = resized_images(rows, proc, tmp_path / "cache")
    assert cached[2]["images"][0] != str(paths[2])  # 120x90 is shrunk to the 84x84 budget: a copy
    assert cached[0]["images"][0] == str(paths[0])  # already at the processor's size: kept
    a = _inputs(proc, paths)
    b = _inputs(proc, [r["images"][0] for r in cached])
    assert torch.equal(a["image_grid_thw"], b["image_grid_thw"])
    assert torch.equal(a["pixel_values"], b["pixel_values"])
    # min_pixels = max_pixels: 120x90 -> 84x56 (smart_resize's floor, 4704 < 7056 pixels), which the
    # processor would enlarge again to 112x84 if handed the copy: no copy then (the bug of the first cache)
    proc.image_processor.size = {"shortest_edge": 84 * 84, "longest_edge": 84 * 84}
    assert resized_images(rows, proc, tmp_path / "cache2")[2]["images"][0] == str(paths[2])


def test_completion_loss_equals_cross_entropy_over_full_logits(clip_model):
    from surgkit.reasoning.train import completion_loss

    d, folder, paths = clip_model
    model, proc = load_vlm(folder, device="cpu")
    x = _inputs(proc, paths)
    labels = x["input_ids"].clone()
    labels[:, :-2] = -100  # the last two tokens of each row are "the completion"
    labels[1, -1] = -100
    loss, _ = completion_loss(model, {**x, "labels": labels})
    logits = model(**x).logits[:, :-1]
    y = labels[:, 1:]
    want = F.cross_entropy(logits[y != -100], y[y != -100])
    assert torch.allclose(loss, want, atol=1e-5)
    loss_n, _ = completion_loss(model, {**x, "labels": labels}, num_items_in_batch=10)
    assert torch.allclose(loss_n, want * int((y != -100).sum()) / 10, atol=1e-5)


def test_length_buckets_cover_every_example_once_with_less_padding():
    rng = random.Random(0)
    lengths = [rng.choice([20, 60, 100]) + rng.randrange(10) for _ in range(203)]
    s = LengthBucketSampler(lengths, batch_size=16, seed=3)
    e0, e1 = list(s), list(s)
    assert sorted(e0) == sorted(e1) == list(range(203))
    assert e0 != e1  # another batch order each epoch
    assert list(LengthBucketSampler(lengths, 16, 3)) == e0  # deterministic per seed
    batches = [e0[k : k + 16] for k in range(0, 203, 16)]
    assert len(batches[-1]) == 203 % 16  # the partial batch last: loader boundaries stay aligned
    runs = sorted(sorted(lengths[i] for i in b) for b in batches[:-1])
    assert [n for r in runs for n in r] == sorted(lengths)[: 16 * 12]  # full batches: runs of sorted lengths
    shuffled = list(range(203))
    rng.shuffle(shuffled)
    random_batches = [shuffled[k : k + 16] for k in range(0, 203, 16)]
    assert padding_efficiency(lengths, batches) > 0.9 > padding_efficiency(lengths, random_batches)


def test_trl_builds_grpo_reference_model_of_a_clip_vlm(clip_model):
    """GRPO with beta > 0 (no LoRA) has TRL build a reference model from the folder by architecture name;
    the CLIP VLM's architecture is not in ``transformers``, so TRL reads ``config.auto_map`` (which must
    exist, empty, and is never saved) and falls back to AutoModelForCausalLM -- it used to raise."""
    import json

    from trl.trainer.utils import create_model_from_path

    from surgkit.reasoning.tiny_vlm import ClipQwen2VLForConditionalGeneration

    _, folder, _ = clip_model
    ref = create_model_from_path(str(folder))
    assert isinstance(ref, ClipQwen2VLForConditionalGeneration)
    assert not any(p.requires_grad for p in ref.model.visual.clip.parameters())
    assert "auto_map" not in json.loads((folder / "config.json").read_text())


def test_megabatch_buckets_sort_within_random_chunks_of_k_batches():
    rng = random.Random(1)
    lengths = [rng.choice([20, 60, 100]) + rng.randrange(10) for _ in range(203)]
    s = LengthBucketSampler(lengths, batch_size=16, seed=3, megabatch=4)
    e0, e1 = list(s), list(s)
    assert sorted(e0) == sorted(e1) == list(range(203)) and e0 != e1
    batches = [e0[k : k + 16] for k in range(0, 203, 16)]
    assert [len(b) for b in batches] == [16] * 12 + [11]  # one partial batch, last
    # oracle: the same permutation cut into chunks of 4 x 16, each sorted by length and cut into batches
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(203, generator=g).tolist()
    want = []
    for c in range(0, 203, 64):
        chunk = sorted(perm[c : c + 64], key=lambda i: lengths[i])
        want += [sorted(chunk[k : k + 16]) for k in range(0, len(chunk), 16)]
    assert sorted(sorted(b) for b in batches) == sorted(want)
    shuffled = list(range(203))
    rng.shuffle(shuffled)
    random_batches = [shuffled[k : k + 16] for k in range(0, 203, 16)]
    whole = LengthBucketSampler(lengths, 16, 3).batches(0)
    eff = [padding_efficiency(lengths, b) for b in (random_batches, batches, whole)]
    assert eff[0] < eff[1] < eff[2]
    with pytest.raises(ValueError, match="megabatch"):
        LengthBucketSampler(lengths, 16, megabatch=0)
