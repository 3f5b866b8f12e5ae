"""Fine-tuning augmentation of the official SurgVISTA downstream code (spec surgvista.md §8).

Per training clip, in the official order (``_aug_frame`` of the downstream datasets):

1. **RandAugment** ``rand-m7-n4-mstd0.5-inc1`` on the uint8 frames (timm's video variant): 4 ops drawn
   with replacement from the 15 "increasing" ops, each applied with probability 0.5 at a magnitude
   drawn from N(7, 0.5) clipped to [0, 10]; **one draw per clip**, the same op and arguments for
   every frame. Geometric ops use bicubic resampling (``--train_interpolation bicubic``) and grey
   fill (128, 128, 128).
2. ``/255`` and ImageNet mean/std.
3. **Random resized crop** (scale [0.7, 1], log-uniform ratio [0.75, 1.3333], 10 tries then a
   central crop; VideoMAE ``_get_param_spatial_crop``) of the whole clip, bilinear resize to the
   model size, then a **horizontal flip** with probability 0.5.
4. **Random erasing** (probability 0.25, ``pixel`` mode, one box, ``cube``: the same box in every
   frame, fresh N(0, 1) noise per frame; area [0.02, 1/3], log-ratio [0.3, 1/0.3], 100 tries).

Per batch (single-label tasks): **Mixup 0.8 / CutMix 1.0** (timm ``Mixup``, mode ``batch``, switch
probability 0.5, mix probability 1, ``correct_lam``) with **label smoothing 0.1** folded into the
soft targets, and :func:`soft_target_cross_entropy`.

All randomness comes from an explicit ``numpy.random.Generator`` (per clip: seeded by run seed,
epoch and sample index, so a clip's augmentation does not depend on the process count).
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import torch
import torch.nn.functional as F

from surgkit.errors import SurgkitError

MAX_LEVEL = 10.0
FILL = (128, 128, 128)
INCREASING_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
                  "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                  "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")  # fmt: skip
PLAIN_OPS = ("AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd", "Color",
             "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")  # fmt: skip


# ------------------------------------------------------------------------------------ RandAugment


@dataclasses.dataclass(frozen=True)
class RandAugmentSpec:
    """Parsed ``rand-m<M>-n<N>-mstd<S>-inc<0|1>`` (timm's grammar; defaults m10, n2, mstd0, inc0)."""

    magnitude: float = 10.0
    num_ops: int = 2
    magnitude_std: float = 0.0
    increasing: bool = False

    @classmethod
    def parse(cls, text: str) -> RandAugmentSpec:
        parts = text.split("-")
        if parts[0] != "rand":
            raise SurgkitError(f"RandAugment spec must start with 'rand', got '{text}'")
        kw = {}
        for part in parts[1:]:
            m = re.fullmatch(r"(mstd|inc|m|n)(\d+(?:\.\d+)?)", part)
            if m is None:
                raise SurgkitError(
                    f"RandAugment spec '{text}': cannot read '{part}' (m<int>, n<int>, mstd<float>, inc<0|1>)"
                )
            key, val = m.groups()
            if key == "m":
                kw["magnitude"] = float(int(float(val)))
            elif key == "n":
                kw["num_ops"] = int(float(val))
            elif key == "mstd":
                kw["magnitude_std"] = float(val)
            else:
                kw["increasing"] = bool(int(float(val)))
        return cls(**kw)


def _negate(v: float, rng: np.random.Generator) -> float:
    return -v if rng.random() > 0.5 else v


def _op_args(name: str, level: float, rng: np.random.Generator) -> tuple:
    """The arguments of op ``name`` at ``level`` (timm's ``*_level_to_arg`` maps)."""
    if name in ("AutoContrast", "Equalize", "Invert"):
        return ()
    if name == "Rotate":
        return (_negate(level / MAX_LEVEL * 30.0, rng),)
    if name in ("ShearX", "ShearY"):
        return (_negate(level / MAX_LEVEL * 0.3, rng),)
    if name in ("TranslateXRel", "TranslateYRel"):
        return (_negate(level / MAX_LEVEL * 0.45, rng),)
    if name == "Posterize":
        return (int(level / MAX_LEVEL * 4),)
    if name == "PosterizeIncreasing":
        return (4 - int(level / MAX_LEVEL * 4),)
    if name == "Solarize":
        return (int(level / MAX_LEVEL * 256),)
    if name == "SolarizeIncreasing":
        return (256 - int(level / MAX_LEVEL * 256),)
    if name == "SolarizeAdd":
        return (int(level / MAX_LEVEL * 110),)
    if name.endswith("Increasing"):  # Color/Contrast/Brightness/Sharpness: 1 ± 0.9·level/10
        return (1.0 + _negate(level / MAX_LEVEL * 0.9, rng),)
    return (level / MAX_LEVEL * 1.8 + 0.1,)  # Color/Contrast/Brightness/Sharpness: [0.1, 1.9]


def _apply_op(name: str, img, args: tuple):
    """One op on a PIL image (bicubic resampling and grey fill for the geometric ops)."""
    from PIL import Image, ImageEnhance, ImageOps

    geo = dict(resample=Image.BICUBIC, fillcolor=FILL)
    if name == "AutoContrast":
        return ImageOps.autocontrast(img)
    if name == "Equalize":
        return ImageOps.equalize(img)
    if name == "Invert":
        return ImageOps.invert(img)
    if name == "Rotate":
        return img.rotate(args[0], **geo)
    if name.startswith("Posterize"):
        return img if args[0] >= 8 else ImageOps.posterize(img, args[0])
    if name.startswith("Solarize") and name != "SolarizeAdd":
        return ImageOps.solarize(img, args[0])
    if name == "SolarizeAdd":
        lut = [min(255, i + args[0]) if i < 128 else i for i in range(256)]
        return img.point(lut * 3)
    enhance = {"Color": ImageEnhance.Color, "Contrast": ImageEnhance.Contrast,
               "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness}  # fmt: skip
    base = name.removesuffix("Increasing")
    if base in enhance:
        return enhance[base](img).enhance(args[0])
    if name == "ShearX":
        return img.transform(img.size, Image.AFFINE, (1, args[0], 0, 0, 1, 0), **geo)
    if name == "ShearY":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, args[0], 1, 0), **geo)
    if name == "TranslateXRel":
        return img.transform(img.size, Image.AFFINE, (1, 0, args[0] * img.size[0], 0, 1, 0), **geo)
    if name == "TranslateYRel":
        return img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, args[0] * img.size[1]), **geo)
    raise SurgkitError(f"unknown RandAugment op '{name}'")


def rand_augment_plan(spec: RandAugmentSpec, rng: np.random.Generator) -> list[tuple[str, tuple]]:
    """The ops one clip gets: ``num_ops`` draws with replacement, each kept with probability 0.5."""
    ops = INCREASING_OPS if spec.increasing else PLAIN_OPS
    plan = []
    for k in rng.integers(len(ops), size=spec.num_ops):
        if rng.random() > 0.5:
            continue  # AugmentOp prob 0.5
        level = spec.magnitude
        if spec.magnitude_std > 0:
            level = rng.normal(level, spec.magnitude_std)
        level = min(MAX_LEVEL, max(0.0, level))
        plan.append((ops[int(k)], _op_args(ops[int(k)], level, rng)))
    return plan


def rand_augment_clip(frames: np.ndarray, spec: RandAugmentSpec, rng: np.random.Generator) -> np.ndarray:
    """RandAugment a uint8 ``T×H×W×3`` clip: one plan, applied identically to every frame."""
    from PIL import Image

    plan = rand_augment_plan(spec, rng)
    if not plan:
        return frames
    out = []
    for f in frames:
        img = Image.fromarray(f)
        for name, args in plan:
            img = _apply_op(name, img, args)
        out.append(np.asarray(img))
    return np.stack(out)


# ---------------------------------------------------------------------------- crop, flip, erasing


def random_resized_crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """``(top, left, h, w)``: VideoMAE ``_get_param_spatial_crop`` (10 tries, log-uniform ratio, central fallback)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = rng.uniform(*scale) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def resized_crop_flip(
    clip: torch.Tensor, size: int, scale, ratio, hflip: bool, rng: np.random.Generator
) -> torch.Tensor:
    """Random resized crop of a ``C×T×H×W`` clip to ``size``² (bilinear), then a 50 % horizontal flip."""
    top, left, h, w = random_resized_crop_box(clip.shape[-2], clip.shape[-1], scale, ratio, rng)
    out = F.interpolate(clip[..., top : top + h, left : left + w], size=(size, size), mode="bilinear",
                        align_corners=False)  # fmt: skip
    return out.flip(-1) if hflip and rng.random() < 0.5 else out


def random_erase_cube(clip: torch.Tensor, prob: float, rng: np.random.Generator) -> torch.Tensor:
    """Random erasing, ``pixel`` mode, one box shared by all frames of a ``C×T×H×W`` clip (noise per frame)."""
    if prob <= 0 or rng.random() > prob:
        return clip
    c, t, height, width = clip.shape
    area = height * width
    log_ratio = (math.log(0.3), math.log(1 / 0.3))
    for _ in range(100):
        target = rng.uniform(0.02, 1 / 3) * area
        aspect = math.exp(rng.uniform(*log_ratio))
        h = int(round(math.sqrt(target * aspect)))
        w = int(round(math.sqrt(target / aspect)))
        if w < width and h < height:
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            clip = clip.clone()
            noise = torch.from_numpy(rng.standard_normal((c, t, h, w)).astype(np.float32))
            clip[:, :, top : top + h, left : left + w] = noise.to(clip.dtype)
            return clip
    return clip


# ------------------------------------------------------------------------------------ mixup/cutmix


@dataclasses.dataclass
class Mixup:
    """timm ``Mixup`` in ``batch`` mode for clips ``B×C×T×H×W`` and integer labels → soft targets."""

    num_classes: int
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    prob: float = 1.0
    switch_prob: float = 0.5
    label_smoothing: float = 0.1

    @property
    def active(self) -> bool:
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def _params(self, rng: np.random.Generator) -> tuple[float, bool]:
        lam, use_cutmix = 1.0, False
        if self.active and rng.random() < self.prob:
            if self.mixup_alpha > 0 and self.cutmix_alpha > 0:
                use_cutmix = rng.random() < self.switch_prob
                alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
            else:
                use_cutmix = self.cutmix_alpha > 0
                alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
            lam = float(rng.beta(alpha, alpha))
        return lam, use_cutmix

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, rng: np.random.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[0] % 2:
            raise SurgkitError(f"mixup/cutmix needs an even batch, got {x.shape[0]} (use an even batch size)")
        lam, use_cutmix = self._params(rng)
        if lam != 1.0:
            if use_cutmix:
                (yl, yh, xl, xh), lam = cutmix_box(x.shape[-2], x.shape[-1], lam, rng)
                x = x.clone()
                x[..., yl:yh, xl:xh] = x.flip(0)[..., yl:yh, xl:xh]
            else:
                x = x * lam + x.flip(0) * (1.0 - lam)
        return x, smooth_mix_targets(y, self.num_classes, lam, self.label_smoothing)


def cutmix_box(
    height: int, width: int, lam: float, rng: np.random.Generator
) -> tuple[tuple[int, int, int, int], float]:
    """timm ``rand_bbox`` (a box of side ratio √(1−λ) around a uniform centre, clipped) and the corrected λ."""
    ratio = math.sqrt(1 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = int(rng.integers(0, height)), int(rng.integers(0, width))
    yl, yh = int(np.clip(cy - cut_h // 2, 0, height)), int(np.clip(cy + cut_h // 2, 0, height))
    xl, xh = int(np.clip(cx - cut_w // 2, 0, width)), int(np.clip(cx + cut_w // 2, 0, width))
    return (yl, yh, xl, xh), 1.0 - (yh - yl) * (xh - xl) / float(height * width)


def smooth_mix_targets(y: torch.Tensor, num_classes: int, lam: float, smoothing: float) -> torch.Tensor:
    """``λ·onehot_s(y) + (1−λ)·onehot_s(flip(y))`` with ``on = 1 − s + s/K``, ``off = s/K``."""
    off = smoothing / num_classes
    on = 1.0 - smoothing + off
    y1 = torch.full((len(y), num_classes), off, device=y.device).scatter_(1, y.long()[:, None], on)
    y2 = torch.full((len(y), num_classes), off, device=y.device).scatter_(1, y.long().flip(0)[:, None], on)
    return y1 * lam + y2 * (1.0 - lam)


def soft_target_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_b Σ_k −t_bk · log_softmax(z_b)_k`` (timm ``SoftTargetCrossEntropy``)."""
    return torch.sum(-target * F.log_softmax(logits, dim=-1), dim=-1).mean()
