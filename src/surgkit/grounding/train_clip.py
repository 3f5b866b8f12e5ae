"""The embedded default VLM: a small CLIP trained contrastively on the synthetic world's image-caption pairs.

The real surgical VLMs cannot be downloaded by the toolkit, so the benchmark ships a model that has
actually learned something: a small ``transformers.CLIPModel`` (ViT image tower, eager attention)
trained with the symmetric InfoNCE loss of CLIP on (frame, caption) pairs of the synthetic world,
saved as a normal HF CLIP folder so it is loaded exactly like a real checkpoint.

* Pairs: the world's caption records (``vlm/captions.jsonl``) and its 1-fps CholecT50 frames, each
  with short captions derived from the triplet labels, phrased *unlike* the benchmark prompts.
* Captions shared by several images in a batch are all positives (multi-positive soft targets).
* Split: the world's ``train`` videos (``world.json``; without one, all but the last ``holdout``
  share of the videos); the other videos are never trained on; the training videos are written to
  ``surgkit_training.json`` in the model folder and ``surgkit ground bench`` refuses to benchmark the
  model on its training videos unless ``--allow-leakage`` is given.
* Resumable: checkpoints (safetensors + JSON) every ``save_every`` steps in ``<out>.train/``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from surgkit.errors import SurgkitError
from surgkit.grounding.frames import GroundingFrame, triplet_names, video_number
from surgkit.grounding.geometry import CLIP_MEAN, CLIP_STD, Preprocess
from surgkit.grounding.prompts import instrument_prompts, normalise_label, triplet_prompts, verb_prompts
from surgkit.vocab import CHOLEC80_TOOLS, INSTRUMENTS, TRIPLET_COMPONENTS


@dataclasses.dataclass
class TrainSettings:
    size: str = "tiny"
    steps: int = 300
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup: int = 20
    holdout: float = 0.34
    seed: int = 0
    device: str = "auto"
    save_every: int = 100
    max_pairs: int | None = None


CAPTION_KINDS: dict[str, float] = {"scene": 0.5, "action": 0.3, "world": 0.2}  # sampling weight per step


def caption_variants(
    triplets: list[tuple[int, int, int]], instruments: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Short captions by kind, phrased unlike the benchmark templates.

    ``scene`` lists the visible instruments (shared by every frame with the same set, so those frames
    are positives of each other), ``action`` describes one triplet each.
    """
    names = sorted({triplet_names(c)[0] for c in triplets} | {normalise_label(i) for i in instruments})
    actions = []
    for comp in triplets:
        i, v, t = triplet_names(comp)
        if v == "null verb":
            actions.append(f"the {i} is idle in the field of view")
        else:
            actions += [f"the {i} is used to {v} the {t}", f"{v} the {t} with the {i}"]
    scene = " and ".join(names) if names else "no instrument"
    return {"scene": [scene], "action": actions}


def _caption_file(world: Path) -> Path | None:
    for name in ("vlm/captions.jsonl", "captions.jsonl"):
        if (world / name).is_file():
            return world / name
    return None


def _read_caption_records(cap: Path) -> tuple[list[GroundingFrame], list[dict[str, list[str]]]]:
    from surgkit.vocab import TRIPLET_NAMES

    index = {n: TRIPLET_COMPONENTS[k] for k, n in enumerate(TRIPLET_NAMES)}
    frames, captions = [], []
    for line_no, line in enumerate(cap.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            image = (cap.parent / rec["image"]).resolve()
            trip = [index[t] for t in rec.get("triplets", [])]
            caps = {**caption_variants(trip, rec.get("instruments", [])), "world": [str(rec["caption"])]}
            frame = GroundingFrame(str(rec["video"]), int(rec.get("frame", line_no)), image, triplets=trip,
                                   source=f"{cap}:{line_no}")  # fmt: skip
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise SurgkitError(f"{cap}:{line_no}: bad caption record ({type(e).__name__}: {e})") from None
        frames.append(frame)
        captions.append(caps)
    return frames, captions


def load_pairs(world: str | Path) -> tuple[list[GroundingFrame], list[dict[str, list[str]]], list[str]]:
    """(frames, captions per frame, sources) of a synthetic world root.

    Pairs come from the world's ``vlm/captions.jsonl`` (its caption plus short captions derived from
    the record's triplets) and from the 1-fps CholecT50 frames (derived captions only).
    """
    from surgkit.grounding.frames import frames_from_triplets

    world = Path(world)
    frames: list[GroundingFrame] = []
    captions: list[dict[str, list[str]]] = []
    sources = []
    cap = _caption_file(world)
    if cap is not None:
        f, c = _read_caption_records(cap)
        frames, captions = frames + f, captions + c
        sources.append(f"{cap.relative_to(world)} ({len(f)} pairs)")
    t50 = world / "cholect50"
    if t50.is_dir():
        from surgkit.data import load

        t_frames = [f for f in frames_from_triplets(load("cholect50", t50, require_media=False), keep_empty=True)
                    if f.image is not None]  # fmt: skip
        frames += t_frames
        captions += [caption_variants(f.triplets) for f in t_frames]
        sources.append(f"cholect50 1-fps frames with captions from their triplets ({len(t_frames)} pairs)")
    if not frames:
        raise SurgkitError(f"{world}: no image-caption pairs (expected vlm/captions.jsonl or cholect50/)")
    return frames, captions, sources


def training_videos(world: Path, videos: list[str], holdout: float) -> tuple[list[str], list[str]]:
    """The world's own train split when it has one (``world.json``), else :func:`split_videos`."""
    from surgkit.grounding.sources import world_splits

    if (world / "world.json").is_file():
        splits = world_splits(world)
        train = {video_number(v) for v in splits.get("train", [])}
        if train:
            ordered = _canonical(videos)
            return [v for v in ordered if video_number(v) in train], [
                v for v in ordered if video_number(v) not in train
            ]
    return split_videos(_canonical(videos), holdout)


def _canonical(videos: list[str]) -> list[str]:
    """``VID01``/``video01`` -> ``video01``, unique, sorted by number."""
    return [f"video{n:02d}" for n in sorted({video_number(v) for v in videos})]


def split_videos(videos: list[str], holdout: float) -> tuple[list[str], list[str]]:
    """Sorted by video number; the last ``round(holdout * n)`` videos are held out (at least 1)."""
    ordered = sorted(set(videos), key=video_number)
    if len(ordered) < 2:
        raise SurgkitError(f"need at least 2 videos to hold one out of training, found {len(ordered)}")
    n_out = min(len(ordered) - 1, max(1, round(holdout * len(ordered))))
    return ordered[:-n_out], ordered[-n_out:]


def tokenizer_corpus(captions: list[dict[str, list[str]]]) -> list[str]:
    """Captions plus every benchmark prompt, so the BPE vocabulary covers both."""
    prompts = []
    for ps in (
        instrument_prompts(CHOLEC80_TOOLS),
        instrument_prompts(INSTRUMENTS),
        triplet_prompts(),
        verb_prompts(),
    ):
        prompts += ps.flat()[0]
    return [c for caps in captions for texts in caps.values() for c in texts] + prompts


def contrastive_loss(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, caption_ids: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE with multi-positive targets (pairs with the same caption are positives)."""
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    pos = (caption_ids[:, None] == caption_ids[None, :]).float()
    targets = pos / pos.sum(dim=1, keepdim=True)
    loss_i = -(targets * logits.log_softmax(dim=1)).sum(1).mean()
    loss_t = -(targets * logits.T.log_softmax(dim=1)).sum(1).mean()
    return 0.5 * (loss_i + loss_t)


def train_clip(world: str | Path, out: str | Path, settings: TrainSettings | None = None, progress: bool = True
               ) -> dict[str, Any]:  # fmt: skip
    """Train the small CLIP on the world's training videos and save it as an HF CLIP folder in ``out``."""
    from surgkit.grounding.tiny_clip import SIZES, build_clip, build_tokenizer, save_clip_folder
    from surgkit.utils.progress import make_progress
    from surgkit.utils.training import (
        latest_checkpoint,
        load_checkpoint,
        make_accelerator,
        save_checkpoint,
        seed_everything,
    )

    s = settings or TrainSettings()
    if s.size not in SIZES:
        raise SurgkitError(f"unknown CLIP size '{s.size}' (choose from {', '.join(SIZES)})")
    out = Path(out)
    frames, captions, source = load_pairs(world)
    train_v, held_v = training_videos(Path(world), [f.video for f in frames], s.holdout)
    train_nums = {video_number(v) for v in train_v}
    keep = [k for k, f in enumerate(frames) if video_number(f.video) in train_nums]
    if s.max_pairs is not None:
        keep = keep[: s.max_pairs]
    if not keep:
        raise SurgkitError(f"{world}: no training frames")
    seed_everything(s.seed)
    tokenizer = build_tokenizer(tokenizer_corpus(captions), vocab_size=600)
    model = build_clip(tokenizer, s.size, seed=s.seed).train()
    size = int(model.config.vision_config.image_size)
    pre = Preprocess("resize", size, CLIP_MEAN, CLIP_STD)
    pixels = torch.cat([pre([frames[k].load_image()])[0] for k in keep])
    texts = sorted({c for k in keep for group in captions[k].values() for c in group})
    text_index = {c: j for j, c in enumerate(texts)}
    enc = tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    pair_caps = [
        {kind: [text_index[c] for c in group] for kind, group in captions[k].items() if group} for k in keep
    ]
    kinds, weights = list(CAPTION_KINDS), np.asarray(list(CAPTION_KINDS.values()))

    acc = make_accelerator(s.device)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda t: (
            min(1.0, (t + 1) / max(1, s.warmup)) * 0.5 * (1 + math.cos(math.pi * min(t, s.steps) / s.steps))
        ),
    )
    model, opt = acc.prepare(model, opt)
    run_dir = out.with_name(out.name + ".train")
    start, losses = 0, []
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        meta = load_checkpoint(ckpt, model, opt, sched, accelerator=acc)
        if meta.get("settings") != dataclasses.asdict(s) or meta.get("train_videos") != train_v:
            raise SurgkitError(
                f"{run_dir}: holds a training run with other settings; remove it or use another --out"
            )
        start, losses = int(meta["step"]), list(meta.get("losses", []))
    dev = acc.device
    with make_progress(disable=not progress) as bar:
        task = bar.add_task("train tiny CLIP", total=s.steps, completed=start, unit="steps")
        for step in range(start, s.steps):
            rng = np.random.default_rng(
                [s.seed, step]
            )  # per-step stream: a resumed run draws the same batches
            idx = rng.choice(len(keep), size=min(s.batch_size, len(keep)), replace=False)
            kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]  # one caption kind per batch
            options = [pair_caps[i].get(kind) or pair_caps[i]["scene"] for i in idx]
            cap_ids = torch.as_tensor([o[rng.integers(len(o))] for o in options])
            unwrapped = acc.unwrap_model(model)
            img = unwrapped.visual_projection(
                unwrapped.vision_model(pixel_values=pixels[idx].to(dev)).pooler_output
            )
            t_out = unwrapped.text_model(input_ids=enc["input_ids"][cap_ids].to(dev),
                                         attention_mask=enc["attention_mask"][cap_ids].to(dev))  # fmt: skip
            txt = unwrapped.text_projection(t_out.pooler_output)
            loss = contrastive_loss(img, txt, unwrapped.logit_scale.exp().clamp(max=100.0), cap_ids.to(dev))
            opt.zero_grad()
            acc.backward(loss)
            opt.step()
            sched.step()
            losses.append(round(float(loss.detach()), 5))
            bar.advance(task)
            if (step + 1) % s.save_every == 0 and step + 1 < s.steps:
                save_checkpoint(run_dir, step + 1, model, opt, sched, accelerator=acc,
                                meta={"settings": dataclasses.asdict(s), "train_videos": train_v, "losses": losses})  # fmt: skip
    final = acc.unwrap_model(model).eval().cpu()
    record = {
        "train_videos": train_v,
        "heldout_videos": held_v,
        "pairs": len(keep),
        "captions": len(texts),
        "caption_source": source,
        "settings": dataclasses.asdict(s),
        "loss_first": losses[0] if losses else None,
        "loss_last_mean": float(np.mean(losses[-20:])) if losses else None,
        "losses": losses,
    }
    save_clip_folder(final, tokenizer, out, extra=record)
    return {"out": str(out), **record}
