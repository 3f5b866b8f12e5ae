"""SurgVISTA pretraining: masked video reconstruction + image-teacher distillation (spec §4, §6).

One command on one CPU, one GPU or many (``accelerate launch``). The recipe defaults are those of
the official ``pretrain.sh``: AdamW (0.9, 0.95), eps 1e-8, weight decay 0.05 (no decay on 1-D
parameters and biases; the quirk that mask tokens *are* decayed is kept), base lr 1.5e-4 and
min lr 1e-4, both scaled by ``global_batch / 256``, per-step linear warm-up then cosine, tube mask
0.85, loss ``1.0·L_rec + 0.05·L_distill``, drop path 0.1.

Determinism and resumption. The sample plan is a pure function of ``(seed, draw id)``: draw ``d``
(``d = (step·accum + micro)·global_micro_batch + k``) picks a dataset by weight, an anchor, a
crop and a tube mask from its own generator. Rank ``r`` takes the slice ``k ∈ [r·B, (r+1)·B)``.
The same global batch therefore gives the same samples on 1 or N processes, and a resumed run
continues with exactly the samples, optimizer, scheduler and RNG state an uninterrupted one has.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from surgkit.errors import SurgkitError
from surgkit.utils.inputs import read_json
from surgkit.utils.runinfo import guarded_run, settings_run_dir, trainer_settings
from surgkit.utils.threads import torch_threads
from surgkit.video.clips import ClipReader, ClipSource, discover_sources, online_clip_steps
from surgkit.video.config import PRESETS, SurgVistaConfig, check_fields, preset
from surgkit.video.masking import sample_generator, sample_seed, tube_mask
from surgkit.video.schedule import cosine_schedule, scale_lr, schedule_scheduler


@dataclasses.dataclass
class DataSpec:
    """One pretraining dataset: a folder of videos/frame folders and its mixing weight."""

    path: str
    weight: float = 1.0
    frame_fps: float = 1.0  # fps of frame folders (videos carry their own)
    exclude: list[str] = dataclasses.field(
        default_factory=list
    )  # video ids (file stems / folder names) to leave out


@dataclasses.dataclass
class PretrainSettings:
    """Everything a pretraining run needs; saved as ``run_dir/settings.json``."""

    data: list[DataSpec]
    run_dir: str = "surgvista-pretrain"
    model: str = "tiny"  # preset name (tiny/small/base/large) or a surgkit SurgVISTA folder to continue from
    model_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    # required: an image-expert checkpoint (.pth needs trust_pickle), a surgkit teacher folder, an HF ViT
    # folder, "none" (reconstruction only) or "random" (a random frozen ViT; tests only)
    teacher: str | None = None
    teacher_precision: str = (
        "auto"  # auto = fp16 autocast on GPU (official), fp32 on CPU | fp32 | fp16 | bf16
    )
    teacher_num_heads: int | None = None  # for teacher files of a non-standard width
    trust_pickle: bool = False  # allow reading .pth teacher / model files (torch.load weights_only=True)
    num_frames: int = 16
    interval: int = 4
    step_fps: float = 1.0
    # "uniform": every 1-fps frame of the concatenated datasets equally likely, each once per epoch
    # (official); "weighted": a dataset by DataSpec.weight, then a video by length, then a frame
    sampling: str = "uniform"
    augment: bool = True
    batch_size: int = 8  # per device and micro-step
    grad_accum: int = 1
    steps: int = 100  # optimizer steps
    warmup_steps: int = 10
    base_lr: float = 1.5e-4
    base_min_lr: float = 1e-4
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    mixed_precision: str = "auto"
    device: str = "auto"
    seed: int = 0
    save_every: int = 50
    log_every: int = 10
    num_workers: int = 0
    # video files → 1-fps frame folders once: "auto" = <run_dir>/frames_1fps, a folder, or "none" (seek)
    frame_cache: str | None = "auto"
    frame_cache_format: str = "png"  # png (lossless, as the official 1-fps frames) | jpg
    torch_threads: int | None = None  # intra-op CPU threads for this run (None = torch's default)
    # teacher tokens computed once per 1-fps frame ("auto" = <run_dir>/teacher_cache, a folder, or None =
    # on the fly); needs augment=False (the teacher must see the same frame every time)
    teacher_cache: str | None = None
    test_data: list[str] = dataclasses.field(
        default_factory=list
    )  # downstream test sets for the leakage guard
    allow_leakage: bool = False
    leakage_cache: str | None = "auto"  # guard fingerprints once per video: "auto" = beside the frame cache

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PretrainSettings:
        d = dict(d)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise SurgkitError(f"unknown pretraining settings: {', '.join(unknown)}")
        data = [DataSpec(**x) if isinstance(x, dict) else DataSpec(str(x)) for x in d.pop("data", [])]
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        return cls(data=data, **d)

    @classmethod
    def from_file(cls, path: str | Path) -> PretrainSettings:
        path = Path(path)
        try:
            return cls.from_dict(read_json(path, "settings file"))
        except TypeError as e:
            raise SurgkitError(f"{path}: {e}") from None


# ------------------------------------------------------------------------------------------ sampling


class PretrainClips(torch.utils.data.Dataset):
    """Serves ``(clip 3×T×S×S, tube mask N)`` for a draw key ``(source_index, anchor, draw_id)``."""

    def __init__(self, sources: list[ClipSource], config: SurgVistaConfig, settings: PretrainSettings):
        self.sources, self.config, self.settings = sources, config, settings
        self.reader: ClipReader | None = None

    def __len__(self) -> int:
        return sum(s.num_steps for s in self.sources)

    def __getitem__(self, key: tuple[int, int, int]) -> dict[str, torch.Tensor]:
        src_i, anchor, draw = key
        if self.reader is None:  # one reader per worker process
            self.reader = ClipReader(self.config.img_size, self.config.mean, self.config.std)
        s = self.settings
        steps = online_clip_steps(anchor, s.num_frames, s.interval)
        rng = np.random.default_rng(sample_seed(s.seed, draw, 0, "crop")) if s.augment else None
        clip = self.reader.clip(self.sources[src_i], steps, rng)
        mask = tube_mask(self.config.grid, self.config.mask_ratio, sample_generator(s.seed, draw, 0, "mask"))
        return {"video": clip, "mask": mask, "draw": torch.tensor(draw), "src": torch.tensor(src_i),
                "steps": torch.tensor(steps)}  # fmt: skip


def plan_draws(
    sources: list[ClipSource], groups: list[list[int]], weights: list[float], seed: int, draws: range
) -> list[tuple[int, int, int]]:
    """``sampling="weighted"`` keys for ``draws``: dataset by weight, then a video ∝ its length, then a uniform anchor."""
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    lengths = [np.asarray([sources[i].num_steps for i in g], dtype=np.float64) for g in groups]
    keys = []
    for d in draws:
        rng = np.random.default_rng(sample_seed(seed, d, 0, "pick"))
        gi = int(rng.choice(len(groups), p=w))
        p = lengths[gi] / lengths[gi].sum()
        src = groups[gi][int(rng.choice(len(p), p=p))]
        keys.append((src, int(rng.integers(sources[src].num_steps)), d))
    return keys


class UniformPlan:
    """``sampling="uniform"`` (official): one sample per 1-fps frame of the concatenated datasets.

    Epoch ``e`` visits every frame once in the order of a permutation seeded by ``(seed, e)``;
    draw ``d`` is position ``d mod N`` of epoch ``d // N`` (N = all frames). A pure function of
    ``(seed, d)``, so independent of the process count and of resumption.
    """

    def __init__(self, sources: list[ClipSource], seed: int):
        self.offsets = np.concatenate([[0], np.cumsum([s.num_steps for s in sources])]).astype(np.int64)
        self.seed, self._epoch, self._perm = seed, None, None

    @property
    def num_frames(self) -> int:
        return int(self.offsets[-1])

    def keys(self, draws: range) -> list[tuple[int, int, int]]:
        out = []
        for d in draws:
            epoch, pos = divmod(d, self.num_frames)
            if epoch != self._epoch:
                rng = np.random.default_rng(sample_seed(self.seed, epoch, 0, "epoch-order"))
                self._epoch, self._perm = epoch, rng.permutation(self.num_frames)
            g = int(self._perm[pos])
            src = int(np.searchsorted(self.offsets, g, side="right") - 1)
            out.append((src, g - int(self.offsets[src]), d))
        return out


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


# ------------------------------------------------------------------------------------- optimisation


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Official grouping: no decay for ndim 1, ``.bias`` and the exact names pos_embed/cls_token/mask_token."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim == 1 or name.endswith(".bias") or name in ("pos_embed", "cls_token", "mask_token"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def scaled_lrs(settings: PretrainSettings, world_size: int) -> tuple[float, float, int]:
    """``(lr, min_lr, global_batch)`` with the linear scaling rule ``lr = base · global_batch / 256``."""
    global_batch = settings.batch_size * settings.grad_accum * world_size
    return (
        scale_lr(settings.base_lr, global_batch, 256),
        scale_lr(settings.base_min_lr, global_batch, 256),
        global_batch,
    )


# ----------------------------------------------------------------------------------------- the run


def build_student(settings: PretrainSettings, distill_dim: int | None) -> Any:
    from surgkit.video.model import SurgVistaForPretraining

    if settings.model in PRESETS:
        over = dict(settings.model_overrides)
        over["num_frames"] = settings.num_frames
        if distill_dim is not None:
            over["distill_target_dim"] = distill_dim
        else:
            over["distill_loss_weight"] = 0.0
        return SurgVistaForPretraining(preset(settings.model, **over))
    if not Path(settings.model).is_dir():
        raise SurgkitError(f"model '{settings.model}' is neither a size ({', '.join(PRESETS)}) nor a folder")
    check_fields(SurgVistaConfig, settings.model_overrides, "model_overrides")
    return SurgVistaForPretraining.from_pretrained(settings.model, **settings.model_overrides)


def _leakage_guard(settings: PretrainSettings, sources: list[ClipSource]) -> dict[str, Any]:
    """Refuse to pretrain on any downstream test video (by id and, when available, by content)."""
    from surgkit.video.finetune import leakage_cache_dir
    from surgkit.video.leakage import check_pretraining_leakage

    cache = leakage_cache_dir(settings.leakage_cache, settings.frame_cache, settings.run_dir)
    return check_pretraining_leakage(
        sources, settings.test_data, allow=settings.allow_leakage, cache_dir=cache
    )


# one writer per run folder; resuming it with other settings is refused unless ``overwrite``
@guarded_run("surgkit video pretrain", trainer_settings, folder_of=settings_run_dir)
def pretrain(
    settings: PretrainSettings,
    max_steps: int | None = None,
    progress: bool = True,
    launch: Any = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run (or resume) pretraining into ``settings.run_dir``; returns the run summary.

    ``max_steps`` stops early after that optimizer step (for tests of resumption) while keeping the
    schedule of ``settings.steps``. The final model is saved as ``run_dir/model`` (a surgkit folder).
    ``launch`` (:class:`surgkit.utils.launch.LaunchOptions`) overrides ``mixed_precision`` and
    ``grad_accum`` when it sets them and chooses the trackers; every step's loss, lr, grad norm and
    throughput go to ``run_dir/train_log.jsonl`` and those trackers.
    """
    from surgkit.utils.launch import LaunchOptions

    launch = launch or LaunchOptions()
    over = {"mixed_precision": launch.mixed_precision, "grad_accum": launch.grad_accum}
    settings = dataclasses.replace(settings, **{k: v for k, v in over.items() if v is not None})
    with torch_threads(settings.torch_threads):
        return _pretrain(settings, max_steps, progress, launch.report_to)


def _pretrain(settings: PretrainSettings, max_steps: int | None, progress: bool, report_to: str | None = None
              ) -> dict[str, Any]:  # fmt: skip
    from surgkit.utils.distributed import grad_norm
    from surgkit.utils.io import write_json
    from surgkit.utils.progress import console, make_progress
    from surgkit.utils.tracking import start_run
    from surgkit.utils.training import latest_checkpoint, load_checkpoint, make_accelerator, save_checkpoint
    from surgkit.video.teacher import load_teacher, teacher_tokens

    if not settings.data:
        raise SurgkitError("no pretraining data given")
    _check_settings(settings)
    run_dir = Path(settings.run_dir)
    groups, sources = [], []
    for spec in settings.data:
        found = [
            s
            for s in discover_sources(spec.path, spec.frame_fps, settings.step_fps)
            if s.id not in spec.exclude
        ]
        if not found:
            raise SurgkitError(f"{spec.path}: no videos left after excluding {spec.exclude}")
        groups.append(list(range(len(sources), len(sources) + len(found))))
        sources.extend(found)
    leakage = _leakage_guard(settings, sources)

    if settings.model in PRESETS:
        probe_cfg = preset(settings.model, **{**settings.model_overrides, "num_frames": settings.num_frames})
    else:
        probe_cfg = SurgVistaConfig.load(settings.model)
    grid_hw = probe_cfg.grid[1:]
    teacher = load_teacher(settings.teacher, seed=settings.seed, trust_pickle=settings.trust_pickle,
                           num_heads=settings.teacher_num_heads, img_size=grid_hw[0] * 8, patch_size=8)  # fmt: skip
    handlers = []
    if teacher is None:  # the distillation decoder then gets no gradient
        from accelerate.utils import DistributedDataParallelKwargs

        handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    acc = make_accelerator(settings.device, settings.mixed_precision, kwargs_handlers=handlers)
    cached = cache_frames(sources, settings, probe_cfg.img_size, acc)  # None = could not be decoded
    groups = [[k for k in g if cached[k] is not None] for g in groups]
    if not all(groups):
        raise SurgkitError("a pretraining dataset has no decodable video left")
    index = {k: i for i, k in enumerate(k for k in range(len(cached)) if cached[k] is not None)}
    groups = [[index[k] for k in g] for g in groups]
    sources = [c for c in cached if c is not None]
    torch.manual_seed(settings.seed)  # identical initial weights on every process
    model = build_student(settings, None if teacher is None else teacher.dim)
    cfg: SurgVistaConfig = model.config
    lr, min_lr, global_batch = scaled_lrs(settings, acc.num_processes)
    optimizer = torch.optim.AdamW(
        param_groups(model, settings.weight_decay), lr=1.0, betas=settings.betas, eps=1e-8
    )
    scheduler = schedule_scheduler(
        optimizer, cosine_schedule(lr, min_lr, settings.steps, settings.warmup_steps)
    )
    model, optimizer = acc.prepare(model, optimizer)  # the scheduler steps once per update, by hand
    if teacher is not None:
        teacher = teacher.to(acc.device)
    cached = _teacher_cache(settings, teacher, sources, cfg, grid_hw, acc)

    start, history = 0, []
    ckpt = latest_checkpoint(run_dir)
    if ckpt is not None:
        meta = load_checkpoint(
            ckpt, model, optimizer, scheduler, accelerator=acc, map_location=str(acc.device)
        )
        start, history = int(meta["step"]), list(meta.get("history", []))
        if acc.is_main_process:
            console.print(f"resuming from {ckpt} (step {start})")
    if acc.is_main_process:
        write_json(run_dir / "settings.json", {**dataclasses.asdict(settings), "leakage": leakage})
    log = start_run(run_dir, "video-pretrain", {**dataclasses.asdict(settings), "processes": acc.num_processes,
                    "global_batch": global_batch}, report_to=report_to, accelerator=acc, resume_step=start)  # fmt: skip

    stop = min(settings.steps, max_steps if max_steps is not None else settings.steps)
    plan = DrawPlan(sources, groups, [d.weight for d in settings.data], settings, start, stop,
                    acc.num_processes, acc.process_index)  # fmt: skip
    loader = torch.utils.data.DataLoader(
        PretrainClips(sources, cfg, settings), batch_sampler=plan, num_workers=settings.num_workers,
        collate_fn=_collate, generator=torch.Generator().manual_seed(settings.seed),  # keeps the global RNG untouched
    )  # fmt: skip
    batches = iter(loader)
    t0 = time.perf_counter()
    with make_progress(disable=not (progress and acc.is_main_process)) as bar:
        task = bar.add_task("pretraining", total=stop, completed=start, unit="steps")
        for step in range(start, stop):
            model.train()
            losses = []
            for m in range(settings.grad_accum):
                batch = next(batches)
                video, mask = batch["video"].to(acc.device), batch["mask"].to(acc.device)
                if cached is not None:
                    tokens = cached(batch["src"], batch["steps"], cfg.tubelet_size).to(acc.device)
                elif teacher is not None:
                    tokens = teacher_tokens(
                        teacher, video, cfg.tubelet_size, grid_hw, settings.teacher_precision
                    )
                else:
                    tokens = None
                sync = m == settings.grad_accum - 1
                with contextlib.ExitStack() as stack:
                    if not sync:
                        stack.enter_context(acc.no_sync(model))
                    with acc.autocast():
                        out = model(video, mask, tokens)
                    if not torch.isfinite(out.loss):
                        raise SurgkitError(
                            f"non-finite loss {out.loss.item()} at step {step} (lower the lr?)"
                        )
                    acc.backward(out.loss / settings.grad_accum)
                zero = out.loss.new_zeros(())
                losses.append(torch.stack([out.loss.detach(), out.loss_rec.detach(),
                                           zero if out.loss_distill is None else out.loss_distill.detach()]))  # fmt: skip
            step_lr = optimizer.param_groups[0]["lr"]  # the lr this update used (schedule value at `step`)
            norm = grad_norm(acc, model.parameters())
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            vals = acc.reduce(torch.stack(losses).mean(0).float(), reduction="mean").tolist()
            history.append({"step": step + 1, "loss": vals[0], "loss_rec": vals[1], "loss_distill": vals[2],
                            "lr": step_lr})  # fmt: skip
            log.log({"loss": vals[0], "loss_rec": vals[1], "loss_distill": vals[2], "lr": step_lr, "grad_norm": norm},
                    step + 1, samples=global_batch)  # fmt: skip
            bar.update(task, advance=1, description=f"pretraining loss {vals[0]:.4f}")
            if (step + 1) % settings.save_every == 0 or step + 1 == stop:
                meta = {"history": history, "global_batch": global_batch}
                save_checkpoint(run_dir, step + 1, model, optimizer, scheduler, meta, accelerator=acc)
    summary = {
        "steps_done": stop, "steps_total": settings.steps, "global_batch": global_batch, "lr": lr, "min_lr": min_lr,
        "processes": acc.num_processes, "videos": len(sources), "history": history,
        "seconds": round(time.perf_counter() - t0, 2), "leakage": leakage,
        "sampling": settings.sampling, "teacher": settings.teacher, "teacher_precision": settings.teacher_precision,
        "protocol": "SurgVISTA pretrain.sh recipe: tube mask, online clips "
                    f"{settings.num_frames}x{settings.interval} at {settings.step_fps} fps, "
                    f"L = {cfg.recon_loss_weight} L_rec + {cfg.distill_loss_weight} L_distill, teacher {settings.teacher}",
    }  # fmt: skip
    log.finish()
    acc.wait_for_everyone()
    if acc.is_main_process:
        acc.unwrap_model(model).save_pretrained(run_dir / "model")
        write_json(run_dir / "summary.json", summary)
    return summary


def _check_settings(settings: PretrainSettings) -> None:
    """Refuse a run without an explicit teacher, and settings that contradict each other."""
    if settings.teacher is None:
        raise SurgkitError(
            "no teacher given: pass --teacher with an image-expert checkpoint (.pth with --trust-pickle, "
            ".safetensors), a surgkit teacher folder ('surgkit video teacher train' / 'convert teacher') or an "
            "HF ViT folder; '--teacher none' pretrains without distillation, '--teacher random' distils a "
            "random frozen ViT (tests only)"
        )
    if settings.sampling not in ("uniform", "weighted"):
        raise SurgkitError(f"unknown sampling '{settings.sampling}' (choose 'uniform' or 'weighted')")
    if settings.sampling == "uniform" and any(d.weight != 1.0 for d in settings.data):
        raise SurgkitError("dataset weights were given but sampling is 'uniform' (every frame equally likely); "
                           "use sampling 'weighted' (--sampling weighted) for per-dataset weights")  # fmt: skip
    if settings.frame_cache_format not in ("png", "jpg"):
        raise SurgkitError(f"frame_cache_format must be 'png' or 'jpg', got {settings.frame_cache_format!r}")


def cache_frames(
    sources: list[ClipSource], settings: PretrainSettings, img_size: int, acc
) -> list[ClipSource | None]:
    """Replace video files by 1-fps frame folders extracted once with :func:`surgkit.prep.frames.extract`.

    Random clip access into long compressed videos decodes whole GOPs per frame; the official
    pipeline also extracts 1-fps frames first (PNG). Frames are stored with the short side at
    ``img_size·320/224`` (the official 512×320 frames for a 224 model; area-resampled), resumably,
    under ``frame_cache/<short>px-<format>/``. Only a folder finished by prep's
    ``sequence.json`` is used: one left part-way by a failed or killed extraction is resumed through
    prep's manifest, and a video that still fails is reported and returned as ``None`` (left out);
    the others go on.
    """
    videos = [s for s in sources if s.path.is_file()]
    if settings.frame_cache == "none" or not videos:
        return sources
    from surgkit.prep.video import video_id_of
    from surgkit.utils.progress import console
    from surgkit.video.clips import build_frame_cache, cached_frames, frame_cache_dir, open_source

    cache = frame_cache_dir(settings.frame_cache, settings.run_dir, img_size, settings.frame_cache_format)
    if acc.is_main_process:
        failed = build_frame_cache([s.path for s in videos], cache, fps=settings.step_fps, img_size=img_size,
                                   workers=settings.num_workers, fmt=settings.frame_cache_format)  # fmt: skip
        for vid, why in failed.items():
            console.print(f"[yellow]warning:[/] {vid}: left out of pretraining ({why})")
    acc.wait_for_everyone()
    out = []
    for s in sources:
        if not s.path.is_file():
            out.append(s)
            continue
        folder = cache / video_id_of(s.path)
        if cached_frames(folder) is not None:
            cached = open_source(
                folder, frame_fps=settings.step_fps, step_fps=settings.step_fps, dataset=s.dataset
            )
            out.append(dataclasses.replace(cached, id=s.id))
        else:
            out.append(None)
    return out


def _teacher_cache(settings: PretrainSettings, teacher, sources, cfg: SurgVistaConfig, grid_hw, acc):
    """Precompute (main process) and open the teacher-feature cache, when the settings ask for it."""
    if settings.teacher_cache is None or teacher is None:
        return None
    if settings.augment:
        raise SurgkitError(
            "teacher_cache needs augment=false: with random crops the teacher sees a new view each time"
        )
    from surgkit.video.teacher_cache import CachedTeacher, precompute

    cache = (
        Path(settings.run_dir) / "teacher_cache"
        if settings.teacher_cache == "auto"
        else Path(settings.teacher_cache)
    )
    random = settings.teacher in ("random", "random-vit")
    teacher_id = (
        f"random@seed{settings.seed}" if random else f"{settings.teacher}@{settings.teacher_precision}"
    )
    if acc.is_main_process:
        precompute(teacher, teacher_id, sources, cache, cfg.img_size, cfg.mean, cfg.std, grid_hw, acc.device,
                   precision=settings.teacher_precision)  # fmt: skip
    acc.wait_for_everyone()
    return CachedTeacher(cache, sources)


class DrawPlan:
    """Batch sampler: for each (step, micro-step), this rank's keys of the global micro-batch."""

    def __init__(self, sources, groups, weights, settings: PretrainSettings, start: int, stop: int,
                 world: int, rank: int):  # fmt: skip
        self.sources, self.groups, self.weights, self.s = sources, groups, weights, settings
        self.start, self.stop, self.world, self.rank = start, stop, world, rank
        self.uniform = UniformPlan(sources, settings.seed) if settings.sampling == "uniform" else None

    def keys(self, draws: range) -> list[tuple[int, int, int]]:
        if self.uniform is not None:
            return self.uniform.keys(draws)
        return plan_draws(self.sources, self.groups, self.weights, self.s.seed, draws)

    def __len__(self) -> int:
        return (self.stop - self.start) * self.s.grad_accum

    def __iter__(self):
        b = self.s.batch_size
        micro = b * self.world
        for step in range(self.start, self.stop):
            for m in range(self.s.grad_accum):
                first = (step * self.s.grad_accum + m) * micro + self.rank * b
                yield self.keys(range(first, first + b))
