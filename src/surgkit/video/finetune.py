"""Fine-tuning SurgVISTA on phase, triplet, CVS and action recognition (spec surgvista.md §8-10).

Model: encoder (pre-trained ``norm`` dropped) → mean over all tokens → ``fc_norm`` (eps 1e-6) →
dropout 0.5 → zero-initialised head. Data: :class:`~surgkit.video.finetune_data.FinetuneClips`.
Recipes: the official presets of :mod:`surgkit.video.protocols` (``--preset``; the CLI picks the
task's preset for the dataset), every field overridable. Optimisation as the official
``run_*_training.py``: AdamW (0.9, 0.999), weight decay 0.05 (none on 1-D/bias), layer-wise lr
decay 0.75 (``0.75^(depth+1 − layer_id)``), lr and ``min_lr`` scaled by ``global_batch/64``, the
official per-step cosine with linear warm-up (:mod:`surgkit.video.schedule`); soft-target CE with
Mixup/CutMix and label smoothing for single-label tasks, BCE for multi-label ones.

**Processes.** One command on one CPU/GPU or many (``accelerate launch`` / ``torchrun``): the model,
optimizer and training loader go through ``accelerator.prepare``; the schedule length is counted
from the loader **after** ``prepare`` (each process sees 1/N of the batches); the 1-fps frame cache is
built by the main process while the others wait; validation and test are sharded across processes
and gathered with ``gather_for_metrics`` (the samples Accelerate repeats to even out the last batch
are dropped), so each sample is evaluated exactly once. The per-process batch times the number of
processes is the global batch, which sets the lr. Per-sample augmentation is seeded by
``(seed, epoch, sample)``, so N processes × batch B draw the same clips and views as 1 × N·B.

**Integrity.** The best epoch is chosen on the **validation** split only. When the split has no
validation videos (Cholec80 40/40, where the official code selects on test), surgkit warns loudly
and keeps the last epoch; test is touched once, at the very end. The split is checked for
train/test leakage (:func:`surgkit.data.leakage.guard_split`) first. Test predictions are saved per
sample (``predictions_test.csv`` + ``scores_test.safetensors``); metrics follow the official protocols
(:func:`surgkit.video.protocols.evaluate_predictions`), each output naming its protocol.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from surgkit.errors import SurgkitError
from surgkit.utils.inputs import read_json
from surgkit.utils.runinfo import guarded_run, settings_run_dir, trainer_settings
from surgkit.video.protocols import (
    PRESETS,
    default_preset,
    evaluate_predictions,
    is_multi_label,
    preset_fields,
)

TASKS = ("phase", "triplet", "cvs", "action")


@dataclasses.dataclass
class FinetuneSettings:
    """A fine-tuning run; saved as ``run_dir/settings.json``. Defaults = the official ``phase`` preset."""

    dataset: str  # surgkit.data reader name (cholec80, cholect50, endoscapes, cholec80_cvs, surgicalactions160, ...)
    root: str
    task: str = "phase"
    preset: str | None = None  # the official preset these fields came from (informational; see from_preset)
    run_dir: str = "surgvista-finetune"
    init: str | None = None  # surgkit SurgVISTA folder (pretraining/encoder/classifier); None = random init
    size: str = "tiny"  # preset when init is None
    model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    split_scheme: str = "official"
    split_file: str | None = None  # JSON {"train": [ids], "val": [...], "test": [...]} or a synth world.json
    split_variant: str | None = None
    fold: int = 0
    cvs_form: str = "4class"  # 4class (Endoscapes) | 6class (Cholec80-CVS) | criteria (3-criteria BCE)
    num_frames: int = 16
    interval: int = 4
    fps: float = 1.0
    epochs: int = 50
    warmup_epochs: float = 5.0
    batch_size: int = 32  # per process; global batch = batch_size × processes
    base_lr: float = 5e-4  # × global_batch / 64
    min_lr: float = 1e-6  # × global_batch / 64 (official)
    layer_decay: float = 0.75
    weight_decay: float = 0.05
    drop_path_rate: float = 0.1
    fc_drop_rate: float = 0.5
    label_smoothing: float = 0.1
    mixup: float = 0.8
    cutmix: float = 1.0
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    augment: bool = True  # random resized crop + flip + random erasing (RandAugment: rand_augment)
    rand_augment: str | None = "rand-m7-n4-mstd0.5-inc1"
    rrc_scale: tuple[float, float] = (0.7, 1.0)
    rrc_ratio: tuple[float, float] = (0.75, 1.3333)
    hflip: bool = True
    reprob: float = 0.25
    cut_black: bool = False  # Cholec80: cut the black margin (frames_cutmargin), as the official scripts
    train_samples_per_epoch: int | None = None  # random subset of labelled frames per epoch (speed)
    eval_frame_stride: int = 1  # evaluate every k-th labelled frame of each val/test video
    seed: int = 0
    device: str = "auto"
    mixed_precision: str = "auto"
    num_workers: int = 0
    # video files → 1-fps frames once: "auto" = <run_dir>/frames_1fps, a folder, or "none"
    frame_cache: str | None = "auto"
    frame_cache_format: str = "png"
    torch_threads: int | None = None  # intra-op CPU threads for this run (None = torch's default)
    allow_leakage: bool = False
    # fingerprints of the leakage guard, computed once per video file: "auto" = beside the frame cache
    leakage_cache: str | None = "auto"

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FinetuneSettings:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise SurgkitError(f"unknown fine-tuning settings: {', '.join(unknown)}")
        d = dict(d)
        for k in ("rrc_scale", "rrc_ratio"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    @classmethod
    def from_preset(
        cls, name: str | None, dataset: str, root: str, task: str | None = None, **fields
    ) -> FinetuneSettings:
        """The official preset ``name`` (default: the task's preset for ``dataset``) with ``fields`` on top."""
        name = name or default_preset(task or "phase", dataset)
        base = preset_fields(name, dataset)
        if task is not None and task != base["task"]:
            raise SurgkitError(f"preset '{name}' is for task '{base['task']}', not '{task}'")
        return cls.from_dict({**base, "preset": name, "dataset": dataset, "root": root, **fields})


def leakage_cache_dir(leakage_cache: str | None, frame_cache: str | None, run_dir: str) -> Path | None:
    """Where the leakage guard keeps its per-video fingerprints: "auto" = ``<frame cache root>/leakage``."""
    if leakage_cache is None or leakage_cache == "none":
        return None
    if leakage_cache != "auto":
        return Path(leakage_cache)
    root = Path(run_dir) / "frames_1fps" if frame_cache in (None, "auto", "none") else Path(frame_cache)
    return root / "leakage"


def multi_label(settings: FinetuneSettings) -> bool:
    return is_multi_label(settings.task, settings.cvs_form)


def mixup_active(settings: FinetuneSettings) -> bool:
    return not multi_label(settings) and (settings.mixup > 0 or settings.cutmix > 0)


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
    """A classifier from ``settings.init`` (any SurgVISTA folder) or a random preset (``model_overrides`` win)."""
    from surgkit.video.config import classifier_config, preset
    from surgkit.video.model import SurgVistaForClassification, load_model

    common = {"num_classes": num_classes, "multi_label": multi_label(settings), "label_names": label_names,
              "drop_path_rate": settings.drop_path_rate, "fc_drop_rate": settings.fc_drop_rate,
              "num_frames": settings.num_frames, **settings.model_overrides}  # fmt: skip
    num_classes = common.pop("num_classes")
    torch.manual_seed(settings.seed)  # identical initial weights on every process
    if settings.init is None:
        return SurgVistaForClassification(
            classifier_config(preset(settings.size), num_classes, **common)
        ), "random init"
    src = load_model(settings.init)
    encoder = getattr(src, "encoder", src)
    model = SurgVistaForClassification(classifier_config(encoder.config, num_classes, **common))
    model.load_encoder(encoder)
    return model, f"encoder from {settings.init}"


# -------------------------------------------------------------------------------------------- data


def load_split(settings: FinetuneSettings):
    """Dataset, split (train/val/test ids) and class names for the task (and CVS form)."""
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
    if settings.task == "phase":
        names = tuple(ds.classes.get("phase", ()))
    elif settings.task == "triplet":
        from surgkit.vocab import TRIPLET_COMPONENTS

        names = tuple(f"triplet_{i}" for i in range(len(TRIPLET_COMPONENTS)))
    elif settings.task == "cvs":
        names = {"criteria": tuple(CVS_CRITERIA), "4class": tuple(f"{k}_criteria_met" for k in range(4)),
                 "6class": tuple(f"cvs_score_{k}" for k in range(6))}.get(settings.cvs_form)  # fmt: skip
        if names is None:
            raise SurgkitError(f"unknown cvs_form '{settings.cvs_form}' (4class, 6class or criteria)")
    else:
        names = tuple(ds.classes.get("action", ())) or tuple(
            f"class_{i}" for i in range(max(c.label for c in ds.clips.values()) + 1)
        )
    if not names:
        raise SurgkitError(f"{settings.root}: dataset '{settings.dataset}' has no {settings.task} classes")
    return ds, split, names


def cache_video_frames(ds, settings: FinetuneSettings, img_size: int, accelerator=None) -> None:
    """Serve video files from 1-fps frames extracted once (``surgkit.prep.frames``), keyed by source frame.

    The main process extracts while the others wait (``wait_for_everyone``); then every process
    attaches the finished folders. Each video gets ``extra["frames"] = {source frame of output
    frame k: image k}``, the source frame taken from prep's ``sequence.json`` (``source_index``,
    sample and hold: at 29.97 fps second 1 is frame 29, not ``round(29.97) = 30``), so labels are
    those of the frame actually extracted. A video whose extraction did not finish keeps its video
    file (the lazy reader reports problems with the file named). ``cut_black`` caches the
    cut-margin frames (height 300, black margin cut) instead.
    """
    if settings.frame_cache == "none" or settings.fps != 1.0:
        return
    videos = [v for v in ds.videos.values() if v.path is not None and Path(v.path).is_file() and v.fps]
    if not videos:
        return
    from surgkit.prep.video import video_id_of
    from surgkit.video.clips import build_frame_cache, cached_frames, frame_cache_dir

    fmt = getattr(settings, "frame_cache_format", "png")
    cut = bool(getattr(settings, "cut_black", False))
    cache = frame_cache_dir(settings.frame_cache, settings.run_dir, img_size, fmt, cut)
    if accelerator is None or accelerator.is_main_process:
        build_frame_cache([v.path for v in videos], cache, fps=1, img_size=img_size, workers=settings.num_workers,
                          fmt=fmt, cut_black=cut)  # fmt: skip
    if accelerator is not None:
        accelerator.wait_for_everyone()
    for v in videos:
        found = cached_frames(cache / video_id_of(v.path))
        if found is not None:
            index, files = found
            v.extra["frames"] = dict(zip(index, files, strict=True))


def split_from_file(path: str | Path, known: list[str]):
    """A :class:`~surgkit.data.splits.Split` from a JSON file (own lists, or ``splits.lap`` of a synth world.json)."""
    from surgkit.data.splits import Split

    path = Path(path)
    data = read_json(path, "split file")
    if "splits" in data:  # synth world.json
        data = data["splits"].get("lap", data["splits"])
    parts = {k: [_match_id(str(v), known) for v in data.get(k, [])] for k in ("train", "val", "test")}
    unknown = sorted(set(sum(parts.values(), [])) - set(known))
    if unknown:
        raise SurgkitError(f"{path}: video ids not in the dataset: {unknown[:5]}")
    if not parts["train"]:
        raise SurgkitError(f"{path}: empty train list")
    return Split(f"file:{path.name}", "custom", parts["train"], parts["val"], parts["test"])


def _match_id(vid: str, known: list[str]) -> str:
    """``vid`` itself, or the one dataset id with the same video number (world.json 'video01' ↔ CholecT50 'VID01')."""
    import re

    if vid in known:
        return vid
    m = re.search(r"(\d+)$", vid)
    same = [k for k in known if m and (n := re.search(r"(\d+)$", k)) and int(n.group(1)) == int(m.group(1))]
    return same[0] if len(same) == 1 else vid


# -------------------------------------------------------------------------------------- evaluation


@torch.no_grad()
def predict(model, loader, accelerator, dataset) -> dict[str, Any]:
    """Scores of every sample of ``dataset`` exactly once, sharded over the processes (``loader`` prepared).

    ``gather_for_metrics`` drops the samples Accelerate repeats to even out the last batch; rows are
    ordered by sample index, so 1 and N processes give the same table.
    """
    model.eval()
    multi = accelerator.unwrap_model(model).config.multi_label
    rows, scores, labels = [], [], []
    for batch in loader:
        logits = model(batch["video"]).float()
        s = torch.sigmoid(logits) if multi else logits.softmax(-1)
        idx, s, y = accelerator.gather_for_metrics((batch["index"], s, batch["label"]))
        rows.append(idx.cpu())
        scores.append(s.cpu())
        labels.append(y.cpu())
    index = torch.cat(rows).numpy()
    order = np.argsort(index, kind="stable")
    index = index[order]
    if len(index) != len(dataset) or np.any(index != np.arange(len(dataset))):
        raise SurgkitError(f"sharded evaluation returned {len(index)} rows for {len(dataset)} samples")
    return {"scores": torch.cat(scores).numpy()[order], "labels": torch.cat(labels).numpy()[order],
            "video_ids": [dataset.samples[i][0] for i in index],
            "frames": np.asarray([_anchor(dataset.samples[i][1]) for i in index])}  # fmt: skip


def _anchor(frame) -> int:
    return int(frame[1]) if isinstance(frame, tuple) else int(frame)


def _evaluate(model, data, settings: FinetuneSettings, acc, num_classes: int) -> tuple[dict, dict]:
    loader = acc.prepare(_eval_loader(data, settings))
    pred = predict(model, loader, acc, data)
    fps = settings.fps / max(1, settings.eval_frame_stride)
    return pred, evaluate_predictions(settings.task, pred, num_classes, settings.cvs_form, fps)


# ------------------------------------------------------------------------------------------ the run


# one writer per run folder; resuming it with other settings is refused unless ``overwrite``
@guarded_run("surgkit video finetune", trainer_settings, folder_of=settings_run_dir)
def finetune(
    settings: FinetuneSettings,
    progress: bool = True,
    stop_after: int | None = None,
    launch: Any = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train, select on validation, evaluate on test; resumable per epoch. Returns the summary.

    ``stop_after`` ends the run after that many epochs (keeping the schedule of ``settings.epochs``),
    as a kill would; calling again resumes from the last checkpoint. ``launch``
    (:class:`surgkit.utils.launch.LaunchOptions`): mixed precision, gradient accumulation (global batch
    = batch_size × processes × grad_accum, as the official ``update_freq``) and the trackers that get
    every step's loss, lr, grad norm and throughput and every epoch's validation metrics
    (also ``run_dir/train_log.jsonl``).
    """
    from surgkit.utils.launch import LaunchOptions
    from surgkit.video.pretrain import torch_threads

    launch = launch or LaunchOptions()
    if launch.mixed_precision is not None:
        settings = dataclasses.replace(settings, mixed_precision=launch.mixed_precision)
    with torch_threads(settings.torch_threads):
        return _finetune(settings, progress, stop_after, launch)


def _datasets(ds, split, settings: FinetuneSettings, img: int):
    from surgkit.video.finetune_data import FinetuneClips

    def make(ids, train, stride=1):
        return FinetuneClips(ds, settings.task, ids, img, settings.num_frames, settings.interval, settings.fps,
                             train=train, settings=settings, cvs_form=settings.cvs_form, stride=stride)  # fmt: skip

    train = make(split.train, True)
    val = make(split.val, False, settings.eval_frame_stride) if split.val else None
    return make, train, val


def _check(settings: FinetuneSettings) -> None:
    if settings.task not in TASKS:
        raise SurgkitError(f"unknown task '{settings.task}' (choose from {', '.join(TASKS)})")
    if settings.preset is not None and settings.preset not in PRESETS:
        raise SurgkitError(
            f"unknown fine-tuning preset '{settings.preset}' (choose from {', '.join(PRESETS)})"
        )
    if mixup_active(settings) and settings.batch_size % 2:
        raise SurgkitError(f"mixup/cutmix needs an even batch size per process, got {settings.batch_size}")


def _finetune(
    settings: FinetuneSettings, progress: bool, stop_after: int | None, launch: Any
) -> dict[str, Any]:
    from surgkit.data.leakage import guard_split
    from surgkit.utils.distributed import grad_norm, prepared_updates_per_epoch
    from surgkit.utils.io import write_json
    from surgkit.utils.progress import console, make_progress
    from surgkit.utils.tracking import start_run
    from surgkit.utils.training import latest_checkpoint, load_checkpoint, make_accelerator, save_checkpoint
    from surgkit.video.augment import Mixup
    from surgkit.video.finetune_data import collate
    from surgkit.video.masking import sample_seed
    from surgkit.video.model import SurgVistaForClassification
    from surgkit.video.schedule import cosine_schedule, scale_lr, schedule_scheduler

    _check(settings)
    run_dir = Path(settings.run_dir)
    ds, split, names = load_split(settings)
    leaks = guard_split(ds, split, allow=settings.allow_leakage, progress=False,
                        cache_dir=leakage_cache_dir(settings.leakage_cache, settings.frame_cache, settings.run_dir))  # fmt: skip
    acc = make_accelerator(settings.device, settings.mixed_precision, launch=launch)
    accum = acc.gradient_accumulation_steps
    model, init_note = build_classifier(settings, len(names), names)
    img = model.config.img_size
    cache_video_frames(ds, settings, img, acc)  # main process extracts, the others wait
    make, train, val = _datasets(ds, split, settings, img)
    notes = [f"split {split.scheme} {split.name}: {len(split.train)} train / {len(split.val)} val / "
             f"{len(split.test)} test videos", f"init: {init_note}"] + list(split.notes) + list(ds.notes)  # fmt: skip
    if val is None:
        msg = (f"NO VALIDATION SPLIT for {settings.dataset} ({split.scheme}): no model selection, the LAST "
               "epoch is evaluated. (The official code selects on the test set; surgkit never does.)")  # fmt: skip
        if acc.is_main_process:
            console.print(f"[bold yellow]WARNING:[/] {msg}")
        notes.append(msg)

    g = torch.Generator().manual_seed(settings.seed)
    n_epoch = min(len(train), settings.train_samples_per_epoch or len(train))
    sampler = torch.utils.data.RandomSampler(train, num_samples=n_epoch, generator=g)
    drop_last = mixup_active(settings) or n_epoch > settings.batch_size * acc.num_processes * accum
    loader = torch.utils.data.DataLoader(train, settings.batch_size, sampler=sampler, drop_last=drop_last,
                                         num_workers=settings.num_workers, collate_fn=collate)  # fmt: skip
    global_batch = settings.batch_size * acc.num_processes * accum
    lr, min_lr = scale_lr(settings.base_lr, global_batch, 64), scale_lr(settings.min_lr, global_batch, 64)
    groups = llrd_param_groups(model, settings.weight_decay, settings.layer_decay)
    optimizer = torch.optim.AdamW(groups, lr=1.0, betas=(0.9, 0.999))
    model, optimizer, loader = acc.prepare(model, optimizer, loader)
    steps_per_epoch = prepared_updates_per_epoch(
        loader, accum
    )  # after prepare: each process sees 1/N of the batches
    total, warm = settings.epochs * steps_per_epoch, int(settings.warmup_epochs * steps_per_epoch)
    lrs = cosine_schedule(lr, min_lr, total, warm)
    scheduler = schedule_scheduler(optimizer, lrs)
    mix = Mixup(len(names), settings.mixup, settings.cutmix, settings.mixup_prob, settings.mixup_switch_prob,
                settings.label_smoothing) if mixup_active(settings) else None  # fmt: skip
    start, history, best = 0, [], {"epoch": None, "value": -math.inf}
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        meta = load_checkpoint(
            ckpt, model, optimizer, scheduler, accelerator=acc, map_location=str(acc.device)
        )
        start, history, best = meta["epoch"], meta["history"], meta["best"]
        if acc.is_main_process:
            console.print(f"resuming fine-tuning from {ckpt} (epoch {start})")
    if acc.is_main_process:
        write_json(run_dir / "settings.json", {**dataclasses.asdict(settings), "notes": notes,
                                               "leakage": [str(p) for p in leaks]})  # fmt: skip
    log = start_run(run_dir, "video-finetune", {**dataclasses.asdict(settings), "launch": dataclasses.asdict(launch),
                    "processes": acc.num_processes, "global_batch": global_batch, "steps_per_epoch": steps_per_epoch},
                    report_to=launch.report_to, accelerator=acc, resume_step=start * steps_per_epoch)  # fmt: skip
    t0 = time.perf_counter()
    stop = min(settings.epochs, stop_after or settings.epochs)
    step = start * steps_per_epoch
    with make_progress(disable=not (progress and acc.is_main_process)) as bar:
        task = bar.add_task("fine-tuning", total=settings.epochs * steps_per_epoch,
                            completed=start * steps_per_epoch, unit="steps")  # fmt: skip
        for epoch in range(start, stop):
            g.manual_seed(settings.seed + epoch)  # the epoch's sample order does not depend on resumption
            train.set_epoch(epoch)
            model.train()
            losses, epoch_lrs, micro = [], [], []
            for k, batch in enumerate(loader):
                x, y = batch["video"], batch["label"]
                if mix is not None:
                    rng = np.random.default_rng(sample_seed(settings.seed, epoch, k * acc.num_processes
                                                            + acc.process_index, "mixup"))  # fmt: skip
                    x, y = mix(x, y, rng)
                epoch_lrs.append(
                    optimizer.param_groups[0]["lr"] / optimizer.param_groups[0].get("lr_scale", 1.0)
                )
                with acc.accumulate(model):  # grad_accum micro-batches per update (no-op for 1)
                    with acc.autocast():
                        logits = model(x)
                        loss = _loss(logits.float(), y, settings)
                    if not torch.isfinite(loss):
                        raise SurgkitError(f"non-finite loss at epoch {epoch + 1} (lower the lr?)")
                    acc.backward(loss)
                    norm = grad_norm(acc, model.parameters()) if acc.sync_gradients else None
                    optimizer.step()  # skipped by Accelerate between accumulation boundaries
                    optimizer.zero_grad(set_to_none=True)
                losses.append(loss.detach())
                micro.append(loss.detach())
                if acc.sync_gradients:
                    scheduler.step()
                    step += 1
                    step_loss = acc.reduce(torch.stack(micro).mean(), reduction="mean").item()
                    micro = []
                    log.log(
                        {"loss": step_loss, "lr": epoch_lrs[-1], "grad_norm": norm},
                        step,
                        samples=global_batch,
                    )
                bar.update(
                    task, advance=1 / accum, description=f"fine-tuning {settings.task} loss {loss.item():.3f}"
                )
            mean_loss = (
                acc.reduce(torch.stack(losses).mean(), reduction="mean").item() if losses else float("nan")
            )
            record = {"epoch": epoch + 1, "train_loss": mean_loss, "lr": epoch_lrs}
            if val is not None:
                _, vm = _evaluate(model, val, settings, acc, len(names))
                record["val"] = {k: v for k, v in vm.items() if k != "protocol" and np.isscalar(v)}
                log.log(
                    {k: v for k, v in record["val"].items() if isinstance(v, int | float)},
                    step,
                    prefix="eval/",
                )
                if vm[vm["primary"]] > best["value"]:
                    best = {"epoch": epoch + 1, "value": float(vm[vm["primary"]]), "metric": vm["primary"]}
                    if acc.is_main_process:
                        acc.unwrap_model(model).save_pretrained(run_dir / "best")
            history.append(record)
            save_checkpoint(run_dir, epoch + 1, model, optimizer, scheduler,
                            {"epoch": epoch + 1, "history": history, "best": best}, accelerator=acc)  # fmt: skip
    log.finish()
    if acc.is_main_process:
        acc.unwrap_model(model).save_pretrained(run_dir / "last")
    acc.wait_for_everyone()
    summary: dict[str, Any] = {"task": settings.task, "dataset": settings.dataset, "preset": settings.preset,
                               "history": history, "processes": acc.num_processes, "global_batch": global_batch,
                               "steps_per_epoch": steps_per_epoch, "lr": lr, "min_lr": min_lr,
                               "selection": best if val is not None else "last epoch (no validation split)",
                               "seconds": round(time.perf_counter() - t0, 2), "notes": notes,
                               "recipe": _recipe(settings, mix is not None)}  # fmt: skip
    summary["finished"] = len(history) >= settings.epochs
    if split.test and summary["finished"]:  # the test split is touched once, at the very end
        final = model
        if val is not None and best["epoch"] is not None:
            best_model = SurgVistaForClassification.from_pretrained(run_dir / "best")
            acc.unwrap_model(model).load_state_dict(best_model.state_dict())
        test = make(split.test, False, settings.eval_frame_stride)
        pred, metrics = _evaluate(final, test, settings, acc, len(names))
        summary["test"] = metrics
        if acc.is_main_process:
            from surgkit.video.protocols import save_predictions

            save_predictions(run_dir, "test", pred, names)
    if acc.is_main_process:
        write_json(run_dir / "summary.json", _jsonable(summary))
    acc.wait_for_everyone()
    return summary


def _recipe(settings: FinetuneSettings, mixed: bool) -> dict[str, Any]:
    """The protocol choices of the run, written into every summary."""
    return {
        "preset": settings.preset,
        "loss": "BCE" if multi_label(settings) else ("soft-target CE (mixup/cutmix + smoothing)" if mixed
                                                     else f"CE, label smoothing {settings.label_smoothing}"),  # fmt: skip
        "mixup": settings.mixup if mixed else 0.0, "cutmix": settings.cutmix if mixed else 0.0,
        "rand_augment": settings.rand_augment, "random_resized_crop": list(settings.rrc_scale) if settings.augment else None,
        "random_erasing": settings.reprob if settings.augment else 0.0, "cut_black": settings.cut_black,
        "clip": f"{settings.num_frames} frames, interval {settings.interval} at {settings.fps:g} fps"
                + (" (online, label of the last frame)" if settings.task in ("phase", "triplet") else ""),
        "eval_transform": "resize to img_size² (aspect not kept)",
        "lr_scaling": "base_lr and min_lr × global_batch / 64", "schedule": "official cosine_scheduler, linear warm-up",
        "selection": "validation split only",
    }  # fmt: skip


def _loss(logits: torch.Tensor, labels: torch.Tensor, settings: FinetuneSettings) -> torch.Tensor:
    from surgkit.video.augment import soft_target_cross_entropy

    if multi_label(settings):
        return F.binary_cross_entropy_with_logits(logits, labels.float())
    if labels.ndim == 2:  # mixup/cutmix soft targets (smoothing already inside)
        return soft_target_cross_entropy(logits, labels)
    return F.cross_entropy(logits, labels.long(), label_smoothing=settings.label_smoothing)


def _eval_loader(data, settings: FinetuneSettings):
    from surgkit.video.finetune_data import collate

    return torch.utils.data.DataLoader(data, settings.batch_size, shuffle=False, num_workers=settings.num_workers,
                                       collate_fn=collate)  # fmt: skip


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
