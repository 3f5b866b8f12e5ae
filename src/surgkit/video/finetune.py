"""Fine-tuning SurgVISTA on phase, action, triplet and CVS recognition (spec surgvista.md §8).

Model: encoder (pre-trained ``norm`` dropped) → mean over all tokens → ``fc_norm`` (eps 1e-6) →
dropout 0.5 → zero-initialised head. Data: :class:`surgkit.data.torch.ClipDataset` over a surgkit
reader's dataset: online clips of 16 frames at a 4-step interval at 1 fps ending at the labelled
frame (phase, triplet, cvs), or 16 frames spread over the clip (action).

Recipe defaults (official scripts): AdamW (0.9, 0.999), weight decay 0.05 (none on 1-D/bias),
layer-wise lr decay 0.75 (``scale = 0.75^(depth+1 − layer_id)``; patch embedding 0, block i → i+1,
head/fc_norm → depth+1), lr 5e-4 scaled by ``batch/64``, per-step cosine with warm-up, drop path
0.1, label smoothing 0.1 (single-label tasks), BCE for multi-label tasks (triplet, CVS criteria).
Augmentation: random resized crop (scale 0.7-1, ratio 3/4-4/3) and horizontal flip, one draw per
clip. **Not reproduced**: RandAugment, mixup/cutmix, random erasing (documented in docs/video.md).

Integrity: the best epoch is chosen on the **validation** split only. When the dataset's official
split has none (Cholec80 40/40, where the official code selects on test), surgkit warns loudly and
keeps the last epoch; it never looks at test before the end. The split is checked for
train/test leakage (:func:`surgkit.data.leakage.guard_split`) first. Test predictions are saved per
frame (``predictions_test.csv`` + ``scores_test.safetensors``) and metrics come from
:mod:`surgkit.metrics`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from surgkit.errors import SurgkitError

TASKS = {"phase": "phase", "action": "clip", "triplet": "triplet", "cvs": "cvs"}
MULTI_LABEL = {"triplet", "cvs"}
# spec §8 per-task recipe (the CLI starts from these; FinetuneSettings' own defaults are the phase recipe)
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "phase": {"epochs": 50, "warmup_epochs": 5, "base_lr": 5e-4},
    "triplet": {"epochs": 20, "warmup_epochs": 2, "base_lr": 5e-4, "label_smoothing": 0.0},
    "action": {"epochs": 500, "warmup_epochs": 50, "base_lr": 5e-4},
    "cvs": {"epochs": 20, "warmup_epochs": 2, "base_lr": 5e-5, "label_smoothing": 0.0},
}


@dataclasses.dataclass
class FinetuneSettings:
    """A fine-tuning run; saved as ``run_dir/settings.json``."""

    dataset: str  # surgkit.data reader name (cholec80, cholect50, endoscapes, surgicalactions160, ...)
    root: str
    task: str = "phase"
    run_dir: str = "surgvista-finetune"
    init: str | None = None  # surgkit SurgVISTA folder (pretraining/encoder/classifier); None = random init
    size: str = "tiny"  # preset when init is None
    model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    split_scheme: str = "official"
    split_file: str | None = None  # JSON {"train": [ids], "val": [...], "test": [...]} or a synth world.json
    split_variant: str | None = None
    fold: int = 0
    num_frames: int = 16
    interval: int = 4
    fps: float = 1.0
    epochs: int = 50
    warmup_epochs: float = 5.0
    batch_size: int = 8
    base_lr: float = 5e-4
    min_lr: float = 1e-6
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    drop_path_rate: float = 0.1
    fc_drop_rate: float = 0.5
    label_smoothing: float = 0.1
    augment: bool = True
    train_samples_per_epoch: int | None = None  # random subset of labelled frames per epoch (speed)
    eval_frame_stride: int = 1  # evaluate every k-th labelled frame of each val/test video
    seed: int = 0
    device: str = "auto"
    mixed_precision: str = "auto"
    num_workers: int = 0
    # video files → 1-fps frames once: "auto" = <run_dir>/frames_1fps, a folder, or "none"
    frame_cache: str | None = "auto"
    torch_threads: int | None = None  # intra-op CPU threads for this run (None = torch's default)
    allow_leakage: bool = False

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise SurgkitError(f"unknown fine-tuning settings: {', '.join(unknown)}")
        return cls(**d)


# ------------------------------------------------------------------------------------------- model


def layer_id(name: str, depth: int) -> int:
    """Layer index for lr decay: patch embedding 0, ``blocks.i`` → i+1, everything else depth+1."""
    name = name.removeprefix("encoder.")
    if name.startswith(("patch_embed", "pos_embed")):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    return depth + 1


def llrd_param_groups(model, weight_decay: float, layer_decay: float) -> list[dict[str, Any]]:
    """Param groups with ``lr_scale = layer_decay^(depth+1 − layer_id)`` and no decay on 1-D/bias."""
    depth = model.config.depth
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        lid = layer_id(name, depth)
        no_wd = p.ndim == 1 or name.endswith(".bias")
        g = groups.setdefault((lid, no_wd), {"params": [], "weight_decay": 0.0 if no_wd else weight_decay,
                                             "lr_scale": layer_decay ** (depth + 1 - lid)})  # fmt: skip
        g["params"].append(p)
    return list(groups.values())


def build_classifier(settings: FinetuneSettings, num_classes: int, label_names: tuple[str, ...]):
    """A classifier from ``settings.init`` (any SurgVISTA folder) or a random preset."""
    from surgkit.video.config import classifier_config, preset
    from surgkit.video.model import SurgVistaForClassification, load_model

    common = dict(num_classes=num_classes, multi_label=settings.task in MULTI_LABEL, label_names=label_names,
                  drop_path_rate=settings.drop_path_rate, fc_drop_rate=settings.fc_drop_rate,
                  num_frames=settings.num_frames, **settings.model_overrides)  # fmt: skip
    torch.manual_seed(settings.seed)
    if settings.init is None:
        return SurgVistaForClassification(classifier_config(preset(settings.size), **common)), "random init"
    src = load_model(settings.init)
    encoder = getattr(src, "encoder", src)
    model = SurgVistaForClassification(classifier_config(encoder.config, **common))
    model.load_encoder(encoder)
    return model, f"encoder from {settings.init}"


# -------------------------------------------------------------------------------------------- data


def load_split(settings: FinetuneSettings):
    """Dataset, split (train/val/test ids) and class names for the task."""
    from surgkit.data import load
    from surgkit.data.splits import make_splits
    from surgkit.vocab import CVS_CRITERIA

    if settings.task not in TASKS:
        raise SurgkitError(f"unknown task '{settings.task}' (choose from {', '.join(TASKS)})")
    ds = load(settings.dataset, settings.root)
    if settings.split_file:
        split = split_from_file(settings.split_file, list(ds.videos))
    else:
        splits = make_splits(ds, settings.split_scheme, variant=settings.split_variant, seed=settings.seed)
        if not 0 <= settings.fold < len(splits):
            raise SurgkitError(f"fold {settings.fold} does not exist ({len(splits)} folds)")
        split = splits[settings.fold]
    split.check_disjoint()
    if not split.train:
        raise SurgkitError(f"{settings.root}: the {split.scheme} split has no training videos with data "
                           f"({'; '.join(split.notes) or 'check the split lists'})")  # fmt: skip
    if settings.task == "cvs":
        _cvs_to_unit_interval(ds)
    if settings.task == "phase":
        names = tuple(ds.classes.get("phase", ()))
    elif settings.task == "triplet":
        from surgkit.vocab import TRIPLET_COMPONENTS

        names = tuple(f"triplet_{i}" for i in range(len(TRIPLET_COMPONENTS)))
    elif settings.task == "cvs":
        names = tuple(CVS_CRITERIA)
    else:
        names = tuple(ds.classes.get("action", ())) or tuple(
            f"class_{i}" for i in range(max(c.label for c in ds.clips.values()) + 1)
        )
    if not names:
        raise SurgkitError(f"{settings.root}: dataset '{settings.dataset}' has no {settings.task} classes")
    return ds, split, names


def cache_video_frames(ds, settings: FinetuneSettings, img_size: int) -> None:
    """Serve video files from 1-fps frames extracted once (``surgkit.prep.frames``), keyed by source frame.

    Each video gets ``extra["frames"] = {source frame of output frame k: image k}``, the source
    frame taken from prep's ``sequence.json`` (``source_index``, sample and hold: at 29.97 fps
    second 1 is frame 29, not ``round(29.97) = 30``), so labels are those of the frame actually
    extracted. :class:`~surgkit.data.torch.ClipDataset` reads it as a sparse frame list: an online
    clip steps over listed (1-fps) frames without seeking in the video. A video whose extraction
    did not finish keeps its video file (the lazy reader reports problems with the file named).
    """
    if settings.frame_cache == "none" or settings.fps != 1.0:
        return
    videos = [v for v in ds.videos.values() if v.path is not None and Path(v.path).is_file() and v.fps]
    if not videos:
        return
    from surgkit.prep.video import video_id_of
    from surgkit.video.clips import build_frame_cache, cached_frames, frame_cache_dir

    cache = frame_cache_dir(settings.frame_cache, settings.run_dir, img_size)
    build_frame_cache([v.path for v in videos], cache, fps=1, img_size=img_size, workers=settings.num_workers)
    for v in videos:
        found = cached_frames(cache / video_id_of(v.path))
        if found is not None:
            index, files = found
            v.extra["frames"] = dict(zip(index, files, strict=True))


def split_from_file(path: str | Path, known: list[str]):
    """A :class:`~surgkit.data.splits.Split` from a JSON file (own lists, or ``splits.lap`` of a synth world.json)."""
    from surgkit.data.splits import Split

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SurgkitError(f"{path}: split file not found") from None
    except json.JSONDecodeError as e:
        raise SurgkitError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None
    if "splits" in data:  # synth world.json
        data = data["splits"].get("lap", data["splits"])
    parts = {k: [_match_id(str(v), known) for v in data.get(k, [])] for k in ("train", "val", "test")}
    unknown = sorted(set(sum(parts.values(), [])) - set(known))
    if unknown:
        raise SurgkitError(f"{path}: video ids not in the dataset: {unknown[:5]}")
    if not parts["train"]:
        raise SurgkitError(f"{path}: empty train list")
    return Split(f"file:{path.name}", "custom", parts["train"], parts["val"], parts["test"])


def _cvs_to_unit_interval(ds) -> None:
    """Cholec80-CVS scores criteria 0/1/2; BCE targets must lie in [0, 1], so those become score/2."""
    import dataclasses as dc

    if any(c.scale == "0-2" for c in ds.cvs):
        ds.cvs = [dc.replace(c, criteria=tuple(v / 2 for v in c.criteria), scale="0-2 divided by 2")
                  if c.scale == "0-2" else c for c in ds.cvs]  # fmt: skip
        ds.notes.append("CVS criteria scored 0/1/2 were divided by 2 to serve as BCE targets in [0, 1]")


def _match_id(vid: str, known: list[str]) -> str:
    """``vid`` itself, or the one dataset id with the same video number (world.json 'video01' ↔ CholecT50 'VID01')."""
    import re

    if vid in known:
        return vid
    m = re.search(r"(\d+)$", vid)
    same = [k for k in known if m and (n := re.search(r"(\d+)$", k)) and int(n.group(1)) == int(m.group(1))]
    return same[0] if len(same) == 1 else vid


def clip_dataset(ds, settings: FinetuneSettings, ids, img_size: int, train: bool, stride: int = 1):
    from surgkit.data.torch import ClipDataset

    data = ClipDataset(ds, TASKS[settings.task], video_ids=ids, num_frames=settings.num_frames,
                       stride=settings.interval, fps=settings.fps, size=(img_size, img_size), layout="CTHW",
                       transform=random_resized_flip if (train and settings.augment) else None)  # fmt: skip
    if stride > 1:  # every k-th labelled frame of each video (keeps per-video sequences for the metrics)
        keep, seen = [], {}
        for s in data.samples:
            seen[s[0]] = seen.get(s[0], -1) + 1
            if seen[s[0]] % stride == 0:
                keep.append(s)
        data.samples = keep
    return data


def random_resized_flip(x: torch.Tensor) -> torch.Tensor:
    """One random resized crop (scale 0.7-1, ratio 3/4-4/3) and a 50 % h-flip for a whole ``T×C×H×W`` clip."""
    t, c, h, w = x.shape
    area = h * w * float(torch.empty(1).uniform_(0.7, 1.0))
    ratio = math.exp(float(torch.empty(1).uniform_(math.log(3 / 4), math.log(4 / 3))))
    cw, ch = min(w, int(round(math.sqrt(area * ratio)))), min(h, int(round(math.sqrt(area / ratio))))
    x0, y0 = int(torch.randint(0, w - cw + 1, (1,))), int(torch.randint(0, h - ch + 1, (1,)))
    x = F.interpolate(x[:, :, y0 : y0 + ch, x0 : x0 + cw], size=(h, w), mode="bilinear", align_corners=False)
    return x.flip(-1) if bool(torch.rand(1) < 0.5) else x


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "video": torch.stack([i["video"] for i in items]),
        "label": torch.stack([i["label"] for i in items]),
        "video_id": [i["video_id"] for i in items],
        "frame": torch.tensor([i["frame"] for i in items]),
    }


# -------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(model, loader, device) -> dict[str, Any]:
    """Scores (softmax or sigmoid), labels, video ids and frames of every sample, in loader order."""
    model.eval()
    scores, labels, vids, frames = [], [], [], []
    for batch in loader:
        logits = model(batch["video"].to(device)).float()
        scores.append(torch.sigmoid(logits) if model.config.multi_label else logits.softmax(-1))
        labels.append(batch["label"])
        vids += batch["video_id"]
        frames.append(batch["frame"])
    return {"scores": torch.cat(scores).cpu().numpy(), "labels": torch.cat(labels).numpy(),
            "video_ids": vids, "frames": torch.cat(frames).numpy()}  # fmt: skip


def evaluate_predictions(task: str, pred: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """Task metrics through :mod:`surgkit.metrics`, plus the name of the selection metric."""
    s, y, vids = pred["scores"], pred["labels"], np.asarray(pred["video_ids"])
    if task == "phase":
        from surgkit.metrics import phase

        order = list(dict.fromkeys(vids))
        gs = [y[vids == v][np.argsort(pred["frames"][vids == v])] for v in order]
        ps = [s[vids == v].argmax(1)[np.argsort(pred["frames"][vids == v])] for v in order]
        m = phase.evaluate(gs, ps, num_classes, protocol="strict", video_names=order)
        keys = ("image_accuracy", "video_accuracy", "precision", "recall", "jaccard", "f1")
        return {"primary": "video_accuracy", **{k: m[k] for k in keys if k in m}, "protocol": m["protocol"]}
    if task == "triplet":
        from surgkit.metrics import triplet

        m = triplet.evaluate(y, s, video_ids=vids, mode="video")
        return {"primary": "ivt", **{k: m[k] for k in ("i", "v", "t", "iv", "it", "ivt") if k in m},
                "protocol": m["protocol"]}  # fmt: skip
    from surgkit.metrics import classification

    if task == "cvs":
        m = classification.cvs_metrics(s, y)
        return {
            "primary": "map",
            **{k: v for k, v in m.items() if np.isscalar(v)},
            "protocol": m.get("protocol"),
        }
    m = classification.clip_metrics(np.log(np.clip(s, 1e-12, None)), y, from_logits=True)
    return {
        "primary": "accuracy",
        **{k: v for k, v in m.items() if np.isscalar(v)},
        "protocol": m["protocol"],
    }


def save_predictions(run_dir: Path, name: str, pred: dict[str, Any], label_names: tuple[str, ...]) -> None:
    """Per-frame predictions: CSV (video, frame, label, prediction) + all scores in safetensors."""
    from surgkit.utils.io import save_tensors, write_text

    s, y = pred["scores"], pred["labels"]
    lines = ["video_id,frame,label,prediction"]
    for i, (v, f) in enumerate(zip(pred["video_ids"], pred["frames"], strict=True)):
        if y.ndim == 1:
            lines.append(f"{v},{int(f)},{int(y[i])},{int(s[i].argmax())}")
        else:
            on = " ".join(str(j) for j in np.flatnonzero(y[i] >= 0.5))
            lines.append(f"{v},{int(f)},{on},{' '.join(str(j) for j in np.flatnonzero(s[i] >= 0.5))}")
    write_text(run_dir / f"predictions_{name}.csv", "\n".join(lines) + "\n")
    save_tensors(run_dir / f"scores_{name}.safetensors",
                 {"scores": torch.from_numpy(np.ascontiguousarray(s, np.float32)),
                  "frames": torch.from_numpy(pred["frames"].astype(np.int64))},
                 metadata={"video_ids": json.dumps(pred["video_ids"]), "classes": json.dumps(label_names)})  # fmt: skip


# ------------------------------------------------------------------------------------------ the run


def finetune(
    settings: FinetuneSettings, progress: bool = True, stop_after: int | None = None
) -> dict[str, Any]:
    """Train, select on validation, evaluate on test; resumable per epoch. Returns the summary.

    ``stop_after`` ends the run after that many epochs (keeping the schedule of ``settings.epochs``),
    as a kill would; calling again resumes from the last checkpoint.
    """
    from surgkit.video.pretrain import torch_threads

    with torch_threads(settings.torch_threads):
        return _finetune(settings, progress, stop_after)


def _finetune(settings: FinetuneSettings, progress: bool, stop_after: int | None) -> dict[str, Any]:
    from surgkit.data.leakage import guard_split
    from surgkit.utils.io import write_json
    from surgkit.utils.progress import console, make_progress
    from surgkit.utils.training import latest_checkpoint, load_checkpoint, make_accelerator, save_checkpoint
    from surgkit.video.model import SurgVistaForClassification

    run_dir = Path(settings.run_dir)
    ds, split, names = load_split(settings)
    leaks = guard_split(ds, split, allow=settings.allow_leakage, progress=False)
    model, init_note = build_classifier(settings, len(names), names)
    img = model.config.img_size
    cache_video_frames(ds, settings, img)
    train = clip_dataset(ds, settings, split.train, img, train=True)
    val = clip_dataset(ds, settings, split.val, img, False, settings.eval_frame_stride) if split.val else None
    notes = [f"split {split.scheme} {split.name}: {len(split.train)} train / {len(split.val)} val / "
             f"{len(split.test)} test videos", f"init: {init_note}"] + list(split.notes) + list(ds.notes)  # fmt: skip
    if val is None:
        msg = (f"NO VALIDATION SPLIT for {settings.dataset} ({split.scheme}): no model selection, the LAST "
               "epoch is evaluated. (The official code selects on the test set; surgkit never does.)")  # fmt: skip
        console.print(f"[bold yellow]WARNING:[/] {msg}")
        notes.append(msg)

    acc = make_accelerator(settings.device, settings.mixed_precision)
    g = torch.Generator().manual_seed(settings.seed)
    n_epoch = min(len(train), settings.train_samples_per_epoch or len(train))
    sampler = torch.utils.data.RandomSampler(train, num_samples=n_epoch, generator=g)
    loader = torch.utils.data.DataLoader(train, settings.batch_size, sampler=sampler, drop_last=len(train) > settings.batch_size,
                                         num_workers=settings.num_workers, collate_fn=_collate)  # fmt: skip
    steps_per_epoch = max(1, len(loader))
    lr = settings.base_lr * settings.batch_size * acc.num_processes / 64
    groups = llrd_param_groups(model, settings.weight_decay, settings.layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))
    total, warm = settings.epochs * steps_per_epoch, int(settings.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return step / max(1, warm)
        prog = (step - warm) / max(1, total - warm)
        return (
            settings.min_lr + 0.5 * (lr - settings.min_lr) * (1 + math.cos(math.pi * min(1.0, prog)))
        ) / lr

    lambdas = [lambda step, sc=grp["lr_scale"]: factor(step) * sc for grp in groups]  # layer-wise decay
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
    model, optimizer, loader = acc.prepare(model, optimizer, loader)
    start, history, best = 0, [], {"epoch": None, "value": -math.inf}
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        meta = load_checkpoint(
            ckpt, model, optimizer, scheduler, accelerator=acc, map_location=str(acc.device)
        )
        start, history, best = meta["epoch"], meta["history"], meta["best"]
        g.manual_seed(settings.seed + start)
        console.print(f"resuming fine-tuning from {ckpt} (epoch {start})")
    if acc.is_main_process:
        write_json(run_dir / "settings.json", {**dataclasses.asdict(settings), "notes": notes,
                                               "leakage": [str(p) for p in leaks]})  # fmt: skip
    t0 = time.perf_counter()
    with make_progress(disable=not (progress and acc.is_main_process)) as bar:
        task = bar.add_task("fine-tuning", total=settings.epochs * steps_per_epoch,
                            completed=start * steps_per_epoch, unit="steps")  # fmt: skip
        for epoch in range(start, min(settings.epochs, stop_after or settings.epochs)):
            g.manual_seed(settings.seed + epoch)  # the epoch's sample order does not depend on resumption
            model.train()
            losses = []
            for batch in loader:
                with acc.autocast():
                    logits = model(batch["video"])
                    loss = _loss(logits.float(), batch["label"], settings)
                if not torch.isfinite(loss):
                    raise SurgkitError(f"non-finite loss at epoch {epoch}")
                acc.backward(loss)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                losses.append(loss.item())
                bar.update(task, advance=1, description=f"fine-tuning {settings.task} loss {loss.item():.3f}")
            record = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else float("nan")}
            if val is not None:
                vm = evaluate_predictions(settings.task, predict(acc.unwrap_model(model), _eval_loader(val, settings),
                                                                 acc.device), len(names))  # fmt: skip
                record["val"] = {k: v for k, v in vm.items() if k != "protocol"}
                if vm[vm["primary"]] > best["value"]:
                    best = {"epoch": epoch + 1, "value": float(vm[vm["primary"]]), "metric": vm["primary"]}
                    if acc.is_main_process:
                        acc.unwrap_model(model).save_pretrained(run_dir / "best")
            history.append(record)
            save_checkpoint(run_dir, epoch + 1, model, optimizer, scheduler,
                            {"epoch": epoch + 1, "history": history, "best": best}, accelerator=acc)  # fmt: skip
    final = acc.unwrap_model(model)
    if acc.is_main_process:
        final.save_pretrained(run_dir / "last")
    if val is not None and best["epoch"] is not None:
        final = SurgVistaForClassification.from_pretrained(run_dir / "best").to(acc.device)
    summary: dict[str, Any] = {"task": settings.task, "dataset": settings.dataset, "history": history,
                               "selection": best if val is not None else "last epoch (no validation split)",
                               "seconds": round(time.perf_counter() - t0, 2), "notes": notes}  # fmt: skip
    summary["finished"] = len(history) >= settings.epochs
    if split.test and summary["finished"]:  # the test split is touched once, at the very end
        test = clip_dataset(ds, settings, split.test, img, False, settings.eval_frame_stride)
        pred = predict(final, _eval_loader(test, settings), acc.device)
        metrics = evaluate_predictions(settings.task, pred, len(names))
        summary["test"] = metrics
        if acc.is_main_process:
            save_predictions(run_dir, "test", pred, names)
    if acc.is_main_process:
        write_json(run_dir / "summary.json", _jsonable(summary))
    return summary


def _loss(logits: torch.Tensor, labels: torch.Tensor, settings: FinetuneSettings) -> torch.Tensor:
    if settings.task in MULTI_LABEL:
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    return F.cross_entropy(logits, labels.long(), label_smoothing=settings.label_smoothing)


def _eval_loader(data, settings: FinetuneSettings):
    return torch.utils.data.DataLoader(data, settings.batch_size, shuffle=False, num_workers=settings.num_workers,
                                       collate_fn=_collate)  # fmt: skip


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
