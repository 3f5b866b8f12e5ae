"""Train an image-expert teacher on surgical frames when no pretrained one can be had.

The paper's teacher is EndoSSL's ViT-L/16, self-supervised (MSN) on laparoscopic frames (spec §5).
Where those weights cannot be downloaded (offline machines, the synthetic world), this trains an
:class:`~surgkit.video.teacher.ImageViT` self-supervised on the frames of the pretraining videos
with the **MAE** objective (He et al. 2022): a random 75 % of the patches of each frame is hidden,
the encoder sees the visible patches (plus the class token), a light decoder
(``[down(z) + pos, mask_token + pos]`` → blocks → LN → linear) predicts the hidden patches' pixels,
normalised per patch (``norm_pix_loss``); loss = MSE on the hidden patches. Frames are drawn
uniformly over all 1-fps frames of the data (each once per epoch), with the official multi-scale
crop. AdamW (0.9, 0.95), weight decay 0.05 (none on 1-D/bias), lr ``base · B/256`` with the
official warm-up + cosine. The result is a surgkit teacher folder (the encoder only) that
``--teacher`` accepts; its ``source`` field records how it was made.

Scaling out (as SurgVISTA pretraining): ``batch_size`` is per process and micro-batch; the global
batch ``B = batch_size × processes × grad_accum`` (the lr is scaled by it). Draw ``d`` (a frame, its
crop and its mask, both seeded by ``d``) is the same whichever process or micro-batch takes it, so
N processes on the same global batch compute what one does. Per-step loss, lr, grad norm and
throughput go to ``run_dir/train_log.jsonl`` and the ``--report-to`` trackers.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from surgkit.errors import SurgkitError
from surgkit.utils.runinfo import guarded_run
from surgkit.video.teacher import ImageViT, teacher_config


@dataclasses.dataclass
class TeacherTrainSettings:
    """An MAE teacher-training run; the teacher folder is ``run_dir/teacher``."""

    data: list[str]
    run_dir: str = "surgvista-teacher"
    size: str = "tiny"  # ImageViT size (tiny/small/base/large)
    img_size: int = 64
    patch_size: int = 8
    exclude: list[str] = dataclasses.field(default_factory=list)  # video ids to leave out (test videos)
    mask_ratio: float = 0.75
    decoder_dim: int = 32
    decoder_depth: int = 1
    steps: int = 200
    warmup_steps: int = 20
    batch_size: int = 32
    base_lr: float = 1.5e-4  # × batch / 256 (MAE)
    min_lr: float = 0.0
    weight_decay: float = 0.05
    step_fps: float = 1.0
    seed: int = 0
    device: str = "auto"
    frame_cache: str | None = "auto"
    frame_cache_format: str = "png"
    num_workers: int = 0
    torch_threads: int | None = None
    grad_accum: int = 1  # micro-batches per step (global batch = batch_size × processes × grad_accum)
    mixed_precision: str | None = (
        None  # no | fp16 | bf16 | auto; None: the accelerate-launch config's, else no
    )


class ImageMAE(nn.Module):
    """MAE around an :class:`ImageViT`: random patch masking, light decoder, per-patch normalised pixel loss."""

    def __init__(self, encoder: ImageViT, decoder_dim: int, decoder_depth: int, mask_ratio: float):
        from surgkit.video.layers import make_blocks, sincos_3d_table

        super().__init__()
        self.encoder, self.mask_ratio = encoder, mask_ratio
        c = encoder.config
        g = c.img_size // c.patch_size
        self.grid = g
        self.down = nn.Linear(c.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.register_buffer("dec_pos", sincos_3d_table(decoder_dim, 1, g, g), persistent=False)
        self.blocks = make_blocks(
            decoder_depth, decoder_dim, max(1, decoder_dim // 16), 4.0, True, 0.0, 1e-6, "sdpa"
        )
        self.norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.head = nn.Linear(decoder_dim, c.patch_size * c.patch_size * c.in_chans)

    @property
    def num_patches(self) -> int:
        return self.grid * self.grid

    def forward(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """MAE loss of ``images``; ``noise`` (``B × L``, uniform) ranks each image's patches: the
        ``(1 − mask_ratio)·L`` lowest are visible (random masking per image, as MAE)."""
        enc, c = self.encoder, self.encoder.config
        x = enc.patch_embed(images)
        b, n, d = x.shape
        pos = enc.pos_embed[:, int(c.pos_embed_class_slot) :]
        x = x + pos
        keep = max(1, int(round(n * (1 - self.mask_ratio))))
        order = noise.to(x.device).argsort(dim=1)
        visible = order[:, :keep]
        tokens = torch.gather(x, 1, visible[..., None].expand(-1, -1, d))
        cls = enc.cls_token + (enc.pos_embed[:, :1] if c.pos_embed_class_slot else 0)
        z = torch.cat([cls.expand(b, -1, -1), tokens], dim=1)
        for block in enc.blocks:
            z = block(z)
        y = self.down(z[:, 1:])
        full = self.mask_token.expand(b, n, -1).clone()
        full.scatter_(1, visible[..., None].expand(-1, -1, y.shape[-1]), y)
        full = full + self.dec_pos
        for block in self.blocks:
            full = block(full)
        pred = self.head(self.norm(full))
        target = _patch_pixels(images, c.patch_size, c.mean, c.std)
        hidden = torch.ones(b, n, dtype=torch.bool, device=x.device)
        hidden.scatter_(1, visible, False)
        return F.mse_loss(pred[hidden], target[hidden])


def _patch_pixels(images: torch.Tensor, patch: int, mean, std) -> torch.Tensor:
    """Un-normalised patch pixels ``B × L × (p·p·C)``, each patch normalised by its mean/std (MAE norm_pix_loss)."""
    m = torch.as_tensor(mean, device=images.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, device=images.device).view(1, 3, 1, 1)
    x = images * s + m
    b, c, h, w = x.shape
    x = (
        x.reshape(b, c, h // patch, patch, w // patch, patch)
        .permute(0, 2, 4, 3, 5, 1)
        .reshape(b, -1, patch * patch * c)
    )
    return (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True) + 1e-6).sqrt()


class _Frames(torch.utils.data.Dataset):
    def __init__(self, sources, img_size: int, seed: int):
        from surgkit.video.config import IMAGENET_MEAN, IMAGENET_STD

        self.sources, self.img_size, self.seed = sources, img_size, seed
        self.mean, self.std, self.reader = IMAGENET_MEAN, IMAGENET_STD, None

    def __len__(self) -> int:
        return sum(s.num_steps for s in self.sources)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:
        from surgkit.video.clips import ClipReader
        from surgkit.video.masking import sample_seed

        src, step, draw = key
        if self.reader is None:
            self.reader = ClipReader(self.img_size, self.mean, self.std)
        rng = np.random.default_rng(sample_seed(self.seed, draw, 0, "teacher-crop"))
        return self.reader.clip(self.sources[src], [step], rng)[:, 0], draw


def mask_noise(seed: int, draws, patches: int) -> torch.Tensor:
    """The masking noise of each draw (``len(draws) × patches``): a function of ``(seed, draw)`` only."""
    from surgkit.video.masking import sample_generator

    return torch.stack([torch.rand(patches, generator=sample_generator(seed, 0, int(d), "teacher-mask"))
                        for d in draws])  # fmt: skip


def draw_batches(plan, steps: int, batch: int, accum: int, world: int, rank: int):
    """For each (step, micro-batch), this process's keys: draws ``(step·accum + m)·batch·world + rank·batch``
    onwards, so a step's global batch is the same set of draws for any processes × accumulation."""
    for step in range(steps):
        for m in range(accum):
            first = ((step * accum + m) * world + rank) * batch
            yield plan.keys(range(first, first + batch))


def _teacher_settings(args: dict[str, Any]) -> dict[str, Any]:
    from surgkit.utils.runinfo import trainer_settings

    return trainer_settings(args)


def _run_dir(args: dict[str, Any]) -> str:
    return str(args["settings"].run_dir)


@guarded_run("surgkit video teacher train", _teacher_settings, folder_of=_run_dir)
def train_teacher(
    settings: TeacherTrainSettings, progress: bool = True, overwrite: bool = False, launch: Any = None
) -> dict[str, Any]:
    """Train the MAE teacher; returns a summary (loss history, folder). See the module docstring.

    One writer per run folder; a folder holding a run with other settings is refused unless ``overwrite``.
    ``launch`` (:class:`surgkit.utils.launch.LaunchOptions`) overrides ``mixed_precision`` and
    ``grad_accum`` when it sets them and chooses the trackers.
    """
    from surgkit.utils.launch import LaunchOptions
    from surgkit.video.pretrain import torch_threads

    launch = launch or LaunchOptions()
    over = {"mixed_precision": launch.mixed_precision, "grad_accum": launch.grad_accum}
    settings = dataclasses.replace(settings, **{k: v for k, v in over.items() if v is not None})
    with torch_threads(settings.torch_threads):
        return _train(settings, progress, launch.report_to)


def _train(settings: TeacherTrainSettings, progress: bool, report_to: str | None = None) -> dict[str, Any]:
    import contextlib

    from surgkit.utils.distributed import grad_norm
    from surgkit.utils.io import write_json
    from surgkit.utils.progress import make_progress
    from surgkit.utils.tracking import start_run
    from surgkit.utils.training import make_accelerator
    from surgkit.video.clips import discover_sources
    from surgkit.video.pretrain import UniformPlan, cache_frames, param_groups
    from surgkit.video.schedule import cosine_schedule, scale_lr, schedule_scheduler

    if not settings.data:
        raise SurgkitError("no teacher-training data given")
    sources = [s for d in settings.data for s in discover_sources(d) if s.id not in settings.exclude]
    if not sources:
        raise SurgkitError(f"no videos left after excluding {settings.exclude}")
    if settings.grad_accum < 1:
        raise SurgkitError(f"grad_accum must be >= 1 (got {settings.grad_accum})")
    from accelerate.utils import DistributedDataParallelKwargs

    # the encoder's final norm is not in the MAE loss (the decoder reads the blocks' tokens): DDP must not wait for it
    unused = DistributedDataParallelKwargs(find_unused_parameters=True)
    acc = make_accelerator(settings.device, settings.mixed_precision, kwargs_handlers=[unused])
    cached = [s for s in cache_frames(sources, settings, settings.img_size, acc) if s is not None]
    torch.manual_seed(settings.seed)
    size_kw = {"img_size": settings.img_size, "patch_size": settings.patch_size}
    encoder = ImageViT(teacher_config(settings.size, **size_kw, source="pending"))
    mae = ImageMAE(encoder, settings.decoder_dim, settings.decoder_depth, settings.mask_ratio)
    b, accum, world = settings.batch_size, settings.grad_accum, acc.num_processes
    global_batch = b * world * accum
    lr = scale_lr(settings.base_lr, global_batch, 256)
    optimizer = torch.optim.AdamW(param_groups(mae, settings.weight_decay), lr=1.0, betas=(0.9, 0.95))
    scheduler = schedule_scheduler(
        optimizer, cosine_schedule(lr, settings.min_lr, settings.steps, settings.warmup_steps)
    )
    patches = mae.num_patches
    mae, optimizer = acc.prepare(mae, optimizer)  # the scheduler steps once per update, by hand
    plan = UniformPlan(cached, settings.seed)
    loader = torch.utils.data.DataLoader(
        _Frames(cached, settings.img_size, settings.seed),
        batch_sampler=list(draw_batches(plan, settings.steps, b, accum, world, acc.process_index)),
        num_workers=settings.num_workers,
    )
    config = {**dataclasses.asdict(settings), "processes": world, "global_batch": global_batch}
    log = start_run(Path(settings.run_dir), "video-teacher", config, report_to=report_to, accelerator=acc)
    batches = iter(loader)
    history, t0 = [], time.perf_counter()
    with make_progress(disable=not (progress and acc.is_main_process)) as bar:
        task = bar.add_task("teacher (MAE)", total=settings.steps, unit="steps")
        for step in range(settings.steps):
            mae.train()
            losses = []
            for m in range(accum):
                images, draws = next(batches)
                with contextlib.ExitStack() as stack:
                    if m < accum - 1:
                        stack.enter_context(acc.no_sync(mae))
                    with acc.autocast():
                        loss = mae(images.to(acc.device), mask_noise(settings.seed, draws, patches))
                    acc.backward(loss / accum)  # equal micro-batches: the mean over the global batch
                losses.append(loss.detach().float())
            step_lr = optimizer.param_groups[0]["lr"]
            norm = grad_norm(acc, mae.parameters())
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            history.append(float(acc.reduce(torch.stack(losses).mean(), reduction="mean")))
            log.log({"loss": history[-1], "lr": step_lr, "grad_norm": norm}, step + 1, samples=global_batch)
            bar.update(task, advance=1, description=f"teacher (MAE) loss {history[-1]:.3f}")
    log.finish()
    model = acc.unwrap_model(mae).encoder
    model.config.source = (f"MAE ({settings.mask_ratio:.0%} masked, {settings.steps} steps × {b}) on the 1-fps frames "
                           f"of {', '.join(settings.data)}")  # fmt: skip
    summary = {"steps": settings.steps, "loss_first": history[0], "loss_last": history[-1], "history": history,
               "frames": plan.num_frames, "videos": len(cached), "seconds": round(time.perf_counter() - t0, 2),
               "global_batch": global_batch, "processes": world, "lr": lr,
               "teacher": str(Path(settings.run_dir) / "teacher")}  # fmt: skip
    acc.wait_for_everyone()
    if acc.is_main_process:
        model.save_pretrained(Path(settings.run_dir) / "teacher")
        write_json(Path(settings.run_dir) / "summary.json", summary)
    return summary
