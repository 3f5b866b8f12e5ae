"""The embedded default VLM: a small CLIP trained contrastively on the synthetic world's image-caption pairs.

The real surgical VLMs cannot be downloaded by the toolkit, so the benchmark ships a model that has
actually learned something: a small ``transformers.CLIPModel`` (ViT image tower, eager attention)
trained with CLIP's symmetric InfoNCE loss on (frame, caption) pairs of the synthetic world, saved
as a normal HF CLIP folder so it is loaded exactly like a real checkpoint.

* Pairs and captions: :mod:`surgkit.grounding.captions` (four caption kinds, none a benchmark
  template; one kind per batch, drawn with :data:`CAPTION_KINDS` weights). Targets are
  multi-positive: every image a caption is true of is a positive of it.
* Images go through the model's own official preprocessing (what the benchmark uses by default);
  ``flip`` mirrors a share of the training images (the instruments' sides change, their looks do not).
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from surgkit.errors import SurgkitError
from surgkit.grounding.captions import (
    ACTION_PHRASES,
    INSTRUMENT_PHRASES,
    action_text,
    load_pairs,
    positives,
    tokenizer_corpus,
)
from surgkit.grounding.frames import video_number
from surgkit.grounding.prompts import normalise_label
from surgkit.utils.io import to_json
from surgkit.utils.lock import locked
from surgkit.utils.runinfo import first_difference
from surgkit.vocab import CHOLEC80_TOOLS, INSTRUMENTS

if TYPE_CHECKING:
    from surgkit.utils.launch import LaunchOptions


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
    flip: float = 0.0  # share of training images mirrored left-right
    loss: str = "softmax"  # softmax (CLIP InfoNCE, multi-positive) or sigmoid (SigLIP, one label per pair)
    local: float = 0.0  # share of batches made of neighbouring frames of one video (same scene, other tools)
    presence: float = 1.0  # weight of the instrument-presence term (every instrument caption vs every image)
    action_presence: float = 0.0  # weight of the triplet-presence term (every action caption vs every image)
    action_vocab: str = "seen"  # its triplets: seen, all (CholecT50's 94) or all-idle (100)
    action_loss: str = "bce"  # that term: bce (each triplet present or not) or softmax (over the vocabulary)
    corpus: bool = True  # also train on the world's pretraining corpus (corpus/, surgeries that are no video)


# chosen on the demo world's val video among 8 recipes (docs/grounding.md, "Demo"): with the corpus and
# verb captions, val triplet accuracy 0.176 and ARS 0.283 (the best) at instrument accuracy 0.928
CAPTION_KINDS: dict[str, float] = {"instrument": 0.4, "scene": 0.1, "action": 0.3, "verb": 0.2, "world": 0.0}


def presence_names() -> list[str]:
    """The instruments of the presence term: every class of the benchmark's instrument pools (Cholec80's 7
    tools, CholecT50's 6), so a tool the world never shows (the specimen bag) is learned as absent rather
    than left at its random initial embedding, where zero-shot argmax can pick it."""
    names = [normalise_label(i) for i in (*CHOLEC80_TOOLS, *INSTRUMENTS)]
    return list(dict.fromkeys(names))


ACTION_VOCABS = ("seen", "all", "all-idle")
ACTION_LOSSES = ("bce", "softmax")


def action_vocabulary(vocab: str, pairs) -> list[tuple[str, str, str]]:
    """Triplets of the triplet-presence term: ``seen`` in the training frames, ``all`` non-null
    CholecT50 triplets (the ones no training frame shows are then learned as absent, not left where
    the text tower happens to put them) or ``all-idle`` (also the six null triplets, "the grasper is
    idle": every frame with an instrument then has a positive)."""
    from surgkit.grounding.frames import triplet_names
    from surgkit.vocab import NULL_TRIPLETS, TRIPLET_COMPONENTS

    if vocab == "seen":
        return sorted({t for p in pairs for t in p.triplets if t[1] != "null verb"})
    if vocab in ("all", "all-idle"):
        null = set() if vocab == "all-idle" else set(NULL_TRIPLETS)
        return sorted(triplet_names(c) for k, c in enumerate(TRIPLET_COMPONENTS) if k not in null)
    raise SurgkitError(f"unknown action vocabulary '{vocab}' (seen, all or all-idle)")


def action_term(kind: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The triplet-presence loss: ``bce`` (mean binary cross-entropy over images x triplets) or
    ``softmax`` (-Σ_t y_t/|y| log softmax(logits)_t, y the frame's triplets, averaged over the frames
    with at least one triplet of the vocabulary)."""
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, labels)
    if kind != "softmax":
        raise SurgkitError(f"unknown action loss '{kind}' (bce or softmax)")
    has = labels.sum(1) > 0
    if not has.any():
        return logits.sum() * 0.0
    y = labels[has] / labels[has].sum(1, keepdim=True)
    return -(y * logits[has].log_softmax(dim=1)).sum(1).mean()


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


def contrastive_loss(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, positives: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE with multi-positive targets.

    ``positives``: (B, B) with entry (a, b) true when caption b is true of image a, or (B,) caption
    ids (equal captions are positives). Each image's target spreads evenly over its positive
    captions, each caption's over its positive images; with distinct captions this is CLIP's loss.
    """
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T
    pos = positives[:, None] == positives[None, :] if positives.ndim == 1 else positives.bool()
    pos = pos.float()
    loss_i = -((pos / pos.sum(1, keepdim=True)) * logits.log_softmax(dim=1)).sum(1).mean()
    loss_t = -((pos.T / pos.T.sum(1, keepdim=True)) * logits.T.log_softmax(dim=1)).sum(1).mean()
    return 0.5 * (loss_i + loss_t)


def sigmoid_loss(
    img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, positives: torch.Tensor
) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al. 2023): every (image, caption) pair of the batch is a
    binary decision, label +1 where the caption is true of the image and -1 elsewhere;
    -Σ_ij log σ(z_ij (scale · cos_ij + bias)) / B. Suits frames with several true captions."""
    logits = scale * F.normalize(img, dim=-1) @ F.normalize(txt, dim=-1).T + bias
    z = positives.float() * 2 - 1
    return F.softplus(-z * logits).sum() / img.shape[0]


def batch_loss(
    kind: str, img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None,
    positives: torch.Tensor,
) -> torch.Tensor:  # fmt: skip
    """The caption loss of a batch: ``softmax`` (multi-positive InfoNCE), ``sigmoid`` (SigLIP) or
    ``both`` (InfoNCE keeps images apart, the pairwise term learns how often captions hold)."""
    if kind == "sigmoid":
        return sigmoid_loss(img, txt, scale, bias, positives)
    loss = contrastive_loss(img, txt, scale, positives)
    if kind == "both":
        loss = loss + sigmoid_loss(img, txt, scale, bias, positives) / img.shape[0]
    return loss


class _Trained(torch.nn.Module):
    """The CLIP model plus the training-only sigmoid bias (not part of the saved model).

    ``forward`` encodes this process's images and captions (and the instrument-presence phrases)
    in one call, so that under DDP every parameter's gradient is synchronised."""

    def __init__(self, clip: torch.nn.Module, bias: bool):
        super().__init__()
        self.clip = clip
        self.bias = torch.nn.Parameter(torch.tensor(-5.0)) if bias else None

    def _text(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.clip.text_projection(
            self.clip.text_model(input_ids=ids, attention_mask=mask).pooler_output
        )

    def forward(self, pixel_values, input_ids, attention_mask, presence_ids=None, presence_mask=None):
        image = self.clip.visual_projection(self.clip.vision_model(pixel_values=pixel_values).pooler_output)
        out = {"image": image, "text": self._text(input_ids, attention_mask)}
        if presence_ids is not None:
            out["presence"] = self._text(presence_ids, presence_mask)
        return out


def _batch(
    pairs, keep, texts, s: TrainSettings, step: int
) -> tuple[np.ndarray, list[int], np.ndarray, np.ndarray]:
    """The deterministic batch of a step: image indices, caption ids, positives, flips."""
    rng = np.random.default_rng([s.seed, step])  # per-step stream: a resumed run draws the same batches
    size = min(s.batch_size, len(keep))
    if (
        rng.random() < s.local
    ):  # the frames of one video nearest to a random moment: the scene cannot tell them apart
        centre = pairs[keep[rng.integers(len(keep))]]
        same = [  # one video (or one corpus surgery: surgery002 is not video02)
            j
            for j, k in enumerate(keep)
            if (pairs[k].corpus, video_number(pairs[k].frame.video))
            == (centre.corpus, video_number(centre.frame.video))
        ]
        near = sorted(same, key=lambda j: (abs(pairs[keep[j]].seconds - centre.seconds), j))
        idx = np.asarray(near[:size])
    else:
        idx = rng.choice(len(keep), size=size, replace=False)
    kinds, weights = list(CAPTION_KINDS), np.asarray(list(CAPTION_KINDS.values()))
    kind = kinds[rng.choice(len(kinds), p=weights / weights.sum())]  # one caption kind per batch
    chosen = []
    for i in idx:
        caps = pairs[keep[i]].captions
        options = caps.get(kind) or caps["scene"]
        chosen.append(options[rng.integers(len(options))])
    pos = positives(chosen, [pairs[keep[i]] for i in idx])
    flips = rng.random(len(idx)) < s.flip
    return idx, [texts[c.text] for c in chosen], pos, flips


def _run_dir(out: str | Path) -> Path:
    """``<out>.train``: checkpoints and logs of the run that writes the model folder ``out``."""
    return Path(out).with_name(Path(out).name + ".train")


@locked("surgkit ground train-clip", folder_of=lambda a: _run_dir(a["out"]))  # one writer per run
def train_clip(world: str | Path, out: str | Path, settings: TrainSettings | None = None, progress: bool = True,
               launch: LaunchOptions | None = None) -> dict[str, Any]:  # fmt: skip
    """Train the small CLIP on the world's training videos and save it as an HF CLIP folder in ``out``.

    Runs unchanged under ``accelerate launch`` / ``torchrun``: every process draws the same global
    batch of ``batch_size`` pairs and encodes its contiguous part; the embeddings of the whole batch
    are gathered (:func:`surgkit.utils.distributed.gather_global_batch`) so the contrastive loss keeps
    all ``batch_size`` negatives, and the update equals the one-process update. Per-step loss, lr,
    grad norm and throughput go to ``<out>.train/train_log.jsonl`` and the ``launch.report_to`` trackers.
    """
    from surgkit.grounding.clip import official_preprocess
    from surgkit.grounding.tiny_clip import SIZES, build_clip, build_tokenizer, save_clip_folder
    from surgkit.utils.distributed import (
        batch_counts,
        counted_once,
        gather_global_batch,
        grad_norm,
        split_global_batch,
    )
    from surgkit.utils.launch import LaunchOptions
    from surgkit.utils.progress import make_progress
    from surgkit.utils.tracking import start_run
    from surgkit.utils.training import (
        latest_checkpoint,
        load_checkpoint,
        make_accelerator,
        save_checkpoint,
        seed_everything,
    )

    s = settings or TrainSettings()
    launch = launch or LaunchOptions()
    if s.size not in SIZES:
        raise SurgkitError(f"unknown CLIP size '{s.size}' (choose from {', '.join(SIZES)})")
    if not 0.0 <= s.flip <= 1.0:
        raise SurgkitError(f"flip must be a share in [0, 1], got {s.flip}")
    if s.presence < 0 or s.action_presence < 0 or not 0.0 <= s.local <= 1.0:
        raise SurgkitError(
            f"presence and action_presence must be >= 0 and local a share in [0, 1] (got {s.presence}, "
            f"{s.action_presence}, {s.local})"
        )
    if s.loss not in ("softmax", "sigmoid", "both"):
        raise SurgkitError(f"unknown loss '{s.loss}' (softmax, sigmoid or both)")
    if s.action_vocab not in ACTION_VOCABS or s.action_loss not in ACTION_LOSSES:
        raise SurgkitError(f"unknown action vocabulary '{s.action_vocab}' or action loss '{s.action_loss}' "
                           f"(vocabularies: {', '.join(ACTION_VOCABS)}; losses: {', '.join(ACTION_LOSSES)})")  # fmt: skip
    out = Path(out)
    pairs, source = load_pairs(world, corpus=s.corpus)
    train_v, held_v = training_videos(Path(world), [p.frame.video for p in pairs if not p.corpus], s.holdout)
    train_nums = {video_number(v) for v in train_v}
    # the train videos' frames, then the corpus (surgeries that are none of the world's videos)
    keep = [k for k, p in enumerate(pairs) if not p.corpus and video_number(p.frame.video) in train_nums]
    keep += [k for k, p in enumerate(pairs) if p.corpus]
    if s.max_pairs is not None:
        keep = keep[: s.max_pairs]
    corpus_pairs = sum(pairs[k].corpus for k in keep)
    if not keep:
        raise SurgkitError(f"{world}: no training frames")
    seed_everything(s.seed)
    tokenizer = build_tokenizer(tokenizer_corpus(pairs), vocab_size=600)
    clip = build_clip(tokenizer, s.size, seed=s.seed)
    pre = official_preprocess(None, int(clip.config.vision_config.image_size))
    model = _Trained(clip, bias=s.presence > 0 or s.action_presence > 0 or s.loss != "softmax").train()
    pixels = torch.cat([pre([pairs[k].frame.load_image()])[0].half() for k in keep])  # half: memory
    names = presence_names()
    presence_texts = [[p.format(i=n) for n in names] for p in INSTRUMENT_PHRASES]
    actions = action_vocabulary(s.action_vocab, [pairs[k] for k in keep])
    action_texts = [[action_text(p, a) for a in actions] for p in ACTION_PHRASES]
    texts_list = sorted({c.text for k in keep for caps in pairs[k].captions.values() for c in caps}
                        | {t for row in presence_texts + action_texts for t in row})  # fmt: skip
    texts = {c: j for j, c in enumerate(texts_list)}
    enc = tokenizer(texts_list, padding=True, truncation=True, max_length=77, return_tensors="pt")

    acc = make_accelerator(s.device, launch=launch)
    if acc.gradient_accumulation_steps > 1:
        raise SurgkitError(
            "train-clip: --grad-accum > 1 would change the contrastive loss (its negatives are the whole "
            "batch); lower --batch-size or add processes instead"
        )
    world, rank = acc.num_processes, acc.process_index
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda t: (
            min(1.0, (t + 1) / max(1, s.warmup)) * 0.5 * (1 + math.cos(math.pi * min(t, s.steps) / s.steps))
        ),
    )
    model, opt = acc.prepare(model, opt)
    run_dir = _run_dir(out)
    start, losses = 0, []
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        meta = load_checkpoint(ckpt, model, opt, sched, accelerator=acc)
        diff = first_difference(
            {"settings": meta.get("settings"), "train_videos": meta.get("train_videos")},
            json.loads(to_json({"settings": dataclasses.asdict(s), "train_videos": train_v})),
        )
        if diff is not None:
            raise SurgkitError(
                f"{run_dir}: holds a training run with other settings ({diff[0]}={diff[1]!r}, this run has "
                f"{diff[2]!r}); remove it or use another --out"
            )
        start, losses = int(meta["step"]), list(meta.get("losses", []))
    dev = acc.device
    config = {"settings": dataclasses.asdict(s), "launch": dataclasses.asdict(launch), "processes": world,
              "train_videos": train_v, "pairs": len(keep)}  # fmt: skip
    log = start_run(run_dir, "ground-train-clip", config, report_to=launch.report_to, accelerator=acc,
                    resume_step=start)  # fmt: skip
    with make_progress(disable=not (progress and acc.is_main_process)) as bar:
        task = bar.add_task("train tiny CLIP", total=s.steps, completed=start, unit="steps")
        for step in range(start, s.steps):
            idx, cap_ids, pos, flips = _batch(pairs, keep, texts, s, step)
            counts = batch_counts(len(idx), world)
            mine = split_global_batch(np.arange(len(idx)), world, rank, 1)[0].indices  # this process's part
            x = pixels[idx[mine]].float()
            if flips[mine].any():
                x = torch.where(torch.as_tensor(flips[mine])[:, None, None, None], x.flip(-1), x)
            ids = torch.as_tensor(cap_ids)[mine]
            phrase = presence_texts[
                int(np.random.default_rng([s.seed, step, 1]).integers(len(presence_texts)))
            ]
            pid = torch.as_tensor([texts[t] for t in phrase]) if s.presence > 0 else None
            n_inst = 0 if pid is None else len(pid)
            if s.action_presence > 0 and actions:  # the triplet phrases ride along with the instrument ones
                row = action_texts[int(np.random.default_rng([s.seed, step, 2]).integers(len(action_texts)))]
                aid = torch.as_tensor([texts[t] for t in row])
                pid = aid if pid is None else torch.cat([pid, aid])
            with acc.autocast():
                out_ = model(pixel_values=x.to(dev), input_ids=enc["input_ids"][ids].to(dev),
                             attention_mask=enc["attention_mask"][ids].to(dev),
                             presence_ids=None if pid is None else enc["input_ids"][pid].to(dev),
                             presence_mask=None if pid is None else enc["attention_mask"][pid].to(dev))  # fmt: skip
                # through the DDP wrapper (gradients synchronised); the whole batch for the losses
                img = gather_global_batch(acc, out_["image"], counts).float()
                txt = gather_global_batch(acc, out_["text"], counts).float()
                trained = acc.unwrap_model(model)
                scale = counted_once(acc, trained.clip.logit_scale.exp().clamp(max=100.0))
                bias = None if trained.bias is None else counted_once(acc, trained.bias)
                loss = batch_loss(s.loss, img, txt, scale, bias, torch.as_tensor(pos).to(dev))
                if pid is not None:  # every process computes the same phrase embeddings: count them once
                    p_txt = counted_once(acc, out_["presence"].float())
                    logits = scale * F.normalize(img, dim=-1) @ F.normalize(p_txt, dim=-1).T + bias
                    if n_inst:
                        labels = torch.tensor([[n in pairs[keep[i]].instruments for n in names] for i in idx],
                                              dtype=torch.float32)  # fmt: skip
                        loss = loss + s.presence * F.binary_cross_entropy_with_logits(
                            logits[:, :n_inst], labels.to(dev))  # fmt: skip
                    if len(pid) > n_inst:
                        labels = torch.tensor([[a in pairs[keep[i]].triplets for a in actions] for i in idx],
                                              dtype=torch.float32)  # fmt: skip
                        loss = loss + s.action_presence * action_term(s.action_loss, logits[:, n_inst:],
                                                                      labels.to(dev))  # fmt: skip
            opt.zero_grad()
            acc.backward(loss * world)  # DDP averages: the update is d(loss)/d(weights) of the whole batch
            norm = grad_norm(acc, model.parameters())
            opt.step()
            sched.step()
            losses.append(round(float(loss.detach()), 5))
            log.log({"loss": float(loss.detach()), "lr": sched.get_last_lr()[0], "grad_norm": norm}, step + 1,
                    samples=len(idx))  # fmt: skip
            bar.advance(task)
            if (step + 1) % s.save_every == 0 and step + 1 < s.steps:
                save_checkpoint(run_dir, step + 1, model, opt, sched, accelerator=acc,
                                meta={"settings": dataclasses.asdict(s), "train_videos": train_v, "losses": losses})  # fmt: skip
    log.finish()
    final = acc.unwrap_model(model).clip.eval().cpu()
    record = {
        "train_videos": train_v,
        "heldout_videos": held_v,
        "pairs": len(keep),
        "corpus_pairs": corpus_pairs,
        "corpus_surgeries": len({pairs[k].frame.video for k in keep if pairs[k].corpus}),
        "captions": len(texts_list),
        "caption_source": source,
        "caption_kinds": CAPTION_KINDS,
        "settings": dataclasses.asdict(s),
        "loss_first": losses[0] if losses else None,
        "loss_last_mean": float(np.mean(losses[-20:])) if losses else None,
        "losses": losses,
        "processes": world,
        "launch": dataclasses.asdict(launch),
        "train_log": str(run_dir / "train_log.jsonl"),
    }
    acc.wait_for_everyone()
    if acc.is_main_process:
        save_clip_folder(final, tokenizer, out, extra=record)
    acc.wait_for_everyone()
    return {"out": str(out), **record}
