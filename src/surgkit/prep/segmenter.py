"""A small HF semantic-segmentation model fine-tuned on the annotated frames of some videos, to
produce tool masks for others (``masks.ModelMasks``), the route the paper takes for its clinical
sets (a segmentation model trained on annotated instrument data, applied zero-shot).

:func:`annotated_pairs` collects (frame, exact mask) pairs: an extracted frame whose source frame
has an annotation file. :func:`train_segmenter` fine-tunes a transformers
``SegformerForSemanticSegmentation`` (any config; :func:`tiny_segformer_config` for demos) with
per-pixel cross-entropy on those pairs through Accelerate, inputs resized to ``image_size`` and
ImageNet-normalised exactly as :class:`surgkit.prep.masks.ModelMasks` feeds it at inference, and
saves an HF folder that ``surgkit prep masks --model FOLDER`` opens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import SurgkitError
from surgkit.prep.masks import IMAGENET_MEAN, IMAGENET_STD, AnnotationMasks
from surgkit.prep.seqstore import SequenceReader


def annotated_pairs(
    frames_dir: str | Path, truth: AnnotationMasks, videos: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 frames [n, H, W, 3] and class maps [n, H, W] of the frames with an exact annotation."""
    images, labels = [], []
    for vid in videos:
        reader = SequenceReader(Path(frames_dir) / vid, kind="frames")
        src = reader.meta.get("source_index") or list(range(reader.num_items))
        annotated = truth.available(vid)
        for k, s in enumerate(src):
            if int(s) in annotated:
                frame = reader.read(k, k + 1)[0]
                images.append(frame)
                labels.append(truth.load(vid, int(s), frame.shape[:2])[0])
    if not images:
        raise SurgkitError(f"{frames_dir}: no frame of {len(videos)} videos has an annotation")
    return np.stack(images), np.stack(labels)


def tiny_segformer_config(num_labels: int) -> Any:
    """A small SegFormer (4 stages of one block, widths 16-128, about 0.5 M parameters)."""
    from transformers import SegformerConfig

    return SegformerConfig(
        num_labels=num_labels, depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], num_attention_heads=[1, 2, 4, 8],
        decoder_hidden_size=64, sr_ratios=[8, 4, 2, 1], mlp_ratios=[2, 2, 2, 2],
    )  # fmt: skip


def _inputs(images: np.ndarray, size: int) -> Any:
    import torch

    from surgkit.prep.transforms import resize

    x = (
        torch.from_numpy(np.stack([resize(im, size, size) for im in images])).permute(0, 3, 1, 2).float()
        / 255
    )
    return (x - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def train_segmenter(
    images: np.ndarray,
    labels: np.ndarray,
    out: str | Path,
    *,
    config: Any = None,
    num_labels: int | None = None,
    image_size: int = 64,
    steps: int = 300,
    batch_size: int = 16,
    lr: float = 2e-3,
    seed: int = 0,
    device: str = "cpu",
    balance: bool = True,
) -> Path:
    """Fine-tune a SegFormer on (image, mask) pairs for ``steps`` AdamW steps (cosine decay);
    labels are resized with nearest neighbour to ``image_size``. ``balance``: class weights
    ∝ 1/sqrt(pixel frequency) in the cross-entropy (tools cover a few % of the pixels; unweighted
    short training collapses to background). Returns the saved HF folder."""
    import torch
    import torch.nn.functional as F
    from transformers import SegformerForSemanticSegmentation

    from surgkit.prep.transforms import resize_labels
    from surgkit.utils.training import make_accelerator, seed_everything

    seed_everything(seed)
    k = int(num_labels or max(2, int(labels.max()) + 1))
    model = SegformerForSemanticSegmentation(config or tiny_segformer_config(k))
    x = _inputs(images, image_size)
    y = torch.from_numpy(np.stack([resize_labels(m, image_size, image_size) for m in labels])).long()
    weight = None
    if balance:
        freq = torch.bincount(y.view(-1), minlength=k).double() / y.numel()
        weight = torch.where(freq > 0, freq.clamp_min(1e-6).rsqrt(), torch.zeros_like(freq))
        weight = (weight / weight[freq > 0].mean()).float()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    acc = make_accelerator(device)
    model, opt = acc.prepare(model, opt)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (min(batch_size, len(x)),), generator=gen)
        logits = model(pixel_values=x[idx].to(acc.device)).logits
        logits = F.interpolate(logits, size=(image_size, image_size), mode="bilinear", align_corners=False)
        loss = F.cross_entropy(
            logits, y[idx].to(acc.device), weight=None if weight is None else weight.to(acc.device)
        )
        acc.backward(loss)
        opt.step()
        sched.step()
        opt.zero_grad()
    out = Path(out)
    if acc.is_main_process:
        acc.unwrap_model(model).eval().save_pretrained(out)
    acc.wait_for_everyone()
    return out


COLOUR_FEATURES = ("r", "g", "b", "gray", "saturation")


def _colour(images: np.ndarray, name: str) -> np.ndarray:
    x = images.astype(np.int16)
    if name == "gray":
        return x.sum(-1) // 3
    if name == "saturation":  # max - min over the channels
        return x.max(-1) - x.min(-1)
    return x[..., "rgb".index(name)]


def fit_colour_threshold(images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """The image-processing baseline a skeptic names first: tool = one colour feature above (or
    below) a threshold, the feature, threshold (0..255) and direction chosen for the best
    tool-vs-background Dice on the given (training) frames (exact, from per-value histograms)."""
    truth = (labels > 0).ravel()
    best: dict[str, Any] = {"dice": -1.0}
    n_tool = float(truth.sum())
    for name in COLOUR_FEATURES:
        v = _colour(images, name).ravel()
        tool = np.bincount(v[truth], minlength=256)[:256].astype(np.float64)
        every = np.bincount(v, minlength=256)[:256].astype(np.float64)
        above_tool = tool[::-1].cumsum()[::-1]  # value >= t
        above_all = every[::-1].cumsum()[::-1]
        for sign in (1, -1):
            for th in range(256):
                if sign > 0:  # v > th
                    tp, pos = (above_tool[th + 1], above_all[th + 1]) if th < 255 else (0.0, 0.0)
                else:  # v < th
                    tp, pos = n_tool - above_tool[th], every.sum() - above_all[th]
                d = 2 * tp / max(pos + n_tool, 1.0)
                if d > best["dice"]:
                    best = {"dice": float(d), "feature": name, "threshold": th, "sign": sign}
    return best


def apply_colour_threshold(images: np.ndarray, rule: dict[str, Any]) -> np.ndarray:
    """uint8 [n, H, W] binary masks (1 = tool) of a rule from :func:`fit_colour_threshold`."""
    v = _colour(images, rule["feature"])
    return (rule["sign"] * v > rule["sign"] * rule["threshold"]).astype(np.uint8)
