"""Two-phase training of SurgFusion-Net on feature stores (spec §3.1), built on HF Accelerate.

Phase 1 trains each unimodal branch (SGD, momentum 0.9, cosine LR stepped per epoch); phase 2
freezes them and trains the fusion branch (AdamW, head lr × 0.1). Both minimise the hybrid loss
α·MSE + (1 − α)·MAE (paper Eq. 19, α = 0.5) on labels normalised to [0, 1]. Every
``checkpoint_every`` epochs the full training state (weights, optimizer, scheduler, RNG) is written
with :func:`surgkit.utils.training.save_checkpoint`, so a killed run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from surgkit.errors import SurgkitError
from surgkit.skill.config import PhaseConfig, TrainConfig
from surgkit.skill.data import LabelScale, ScoredVideo, balanced_batches, collate, eval_input
from surgkit.skill.interop import spearman
from surgkit.utils.io import save_tensors, write_json
from surgkit.utils.training import latest_checkpoint, load_checkpoint, save_checkpoint

STATE_NAME = "train_state.json"


def hybrid_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """α·MSE + (1 − α)·MAE on normalised labels (paper Eq. 19)."""
    return alpha * F.mse_loss(pred, target) + (1.0 - alpha) * F.l1_loss(pred, target)


def make_optimizer(kind: str, groups: list[dict[str, Any]], phase: PhaseConfig) -> torch.optim.Optimizer:
    """SGD (phase 1, momentum) or AdamW (phase 2) with the phase's lr and weight decay."""
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=phase.lr, momentum=phase.momentum, weight_decay=phase.weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=phase.lr, weight_decay=phase.weight_decay)
    raise SurgkitError(f"unknown optimizer '{kind}'")


def cosine_schedule(optimizer: torch.optim.Optimizer, phase: PhaseConfig):
    """Cosine decay to ``eta_min`` over ``epochs`` without warm-up, stepped once per epoch."""
    return torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(1, phase.epochs), eta_min=phase.eta_min
    )


def train_length(videos: Sequence[ScoredVideo], tcfg: TrainConfig) -> int:
    """Fixed training length: the longest training video (pad), the crop window, or the resample T."""
    if tcfg.length_policy == "pad":
        return max(v.length for v in videos)
    return tcfg.crop_length if tcfg.length_policy == "crop" else tcfg.resample_length


@torch.no_grad()
def predict(
    model: nn.Module, videos: Sequence[ScoredVideo], tcfg: TrainConfig, device: Any = "cpu"
) -> np.ndarray:
    """Normalised predictions [n, num_outputs], one video at a time at full length (batch 1)."""
    was_training = model.training
    model.eval()
    out = []
    for v in videos:
        out.append(
            model(eval_input(v, tcfg.length_policy, tcfg.resample_length, device)).score.float().cpu().numpy()
        )
    model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    videos: Sequence[ScoredVideo],
    tcfg: TrainConfig,
    length: int,
    min_length: int = 1,
    batch_size: int = 16,
    device: Any = "cpu",
) -> int:
    """Replace the running statistics of the BatchNorms this phase trains by their exact averages over the
    training set under the final weights ("precise BN", Wu & Johnson 2021, arXiv 2105.07576).

    With short schedules the exponential running averages (momentum 0.1) mix statistics of earlier
    weights; here every trainable BatchNorm is reset, switched to the cumulative average (momentum None)
    and fed one pass of padded training batches (masked, so padding is ignored) with dropout off, i.e. the
    activations the model will see at test time. Frozen BatchNorms (phase-2 branches) are untouched.
    Returns the number of recalibrated layers.
    """
    was_training = model.training
    model.train()  # SurgFusionNet.train keeps its frozen branches in eval mode
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    if not layers or not videos:
        model.train(was_training)
        return 0
    model.eval()
    saved = []
    for bn in layers:
        saved.append(bn.momentum)
        bn.reset_running_stats()
        bn.momentum = None
        bn.sync_processes = False  # every process recalibrates on all the videos: local statistics
        bn.train()
    order = np.arange(len(videos))
    for batch in balanced_batches(len(videos), batch_size, np.random.default_rng(tcfg.seed)):
        part = [videos[i] for i in order[batch]]
        x, _, valid = collate(
            part, tcfg.length_policy, length, np.random.default_rng(tcfg.seed), device, min_length
        )
        model(x, valid)
    for bn, momentum in zip(layers, saved, strict=True):
        bn.momentum = momentum
        bn.sync_processes = True
    model.train(was_training)
    return len(layers)


@dataclasses.dataclass
class PhaseResult:
    epochs: int
    selected_epoch: int
    history: list[dict[str, float]]
    selection: str


def train_phase(
    model: nn.Module,
    groups: list[dict[str, Any]],
    train_videos: Sequence[ScoredVideo],
    phase: PhaseConfig,
    tcfg: TrainConfig,
    *,
    optimizer_kind: str,
    work_dir: Path,
    accelerator: Any,
    scale: LabelScale,
    test_videos: Sequence[ScoredVideo] = (),
    progress: Any = None,
    description: str = "train",
    log: Any = None,
) -> PhaseResult:
    """Train ``model`` on ``train_videos`` for ``phase.epochs``; resumes from ``work_dir`` checkpoints.

    With ``tcfg.select == "best_test"`` the weights of the epoch with the best test-fold SCC are
    restored at the end (the literature's test-set selection; flagged by the callers).

    ``phase.batch_size`` is the global batch: every process collates the whole batch (the same crops
    as one process) and trains on its part of it (:func:`surgkit.utils.distributed.micro_batches`, also
    the ``--grad-accum`` split); BatchNorm statistics are synchronised over processes, so N processes
    compute the one-process update. ``log`` (a :class:`surgkit.utils.tracking.RunLogger`) gets every
    step's loss, lr and grad norm and every epoch's test-fold SCC under ``<description>/``.
    """
    from surgkit.utils.distributed import grad_norm, mean_over_processes, micro_batches

    if not train_videos:
        raise SurgkitError(f"{description}: no training videos")
    device = accelerator.device
    model.to(device)
    optimizer = make_optimizer(optimizer_kind, groups, phase)
    scheduler = cosine_schedule(optimizer, phase)
    pmodel, popt = accelerator.prepare(model, optimizer)
    length = train_length(train_videos, tcfg)
    min_length = int(getattr(model.config, "min_length", 1))
    params = [p for g in groups for p in g["params"]]
    start, history = 0, []
    best = {"scc": -np.inf, "epoch": 0}
    ckpt = latest_checkpoint(work_dir)
    if ckpt is not None:
        meta = load_checkpoint(
            ckpt, model, optimizer, scheduler, accelerator=accelerator, map_location=device
        )
        start, history, best = int(meta["epoch"]), list(meta.get("history", [])), dict(meta.get("best", best))
    best_file = work_dir / "best_test.safetensors"
    task = (
        progress.add_task(description, total=phase.epochs, completed=start, unit="epochs")
        if progress
        else None
    )
    world = accelerator.num_processes
    steps = start * len(balanced_batches(len(train_videos), phase.batch_size, np.random.default_rng(0)))
    progress_hook = getattr(model, "set_training_progress", None)  # e.g. the PolicyNet's τ schedule
    for epoch in range(start, phase.epochs):
        pmodel.train()
        if progress_hook is not None:
            progress_hook(epoch, phase.epochs)
        rng = np.random.default_rng([tcfg.seed, epoch])
        losses = []
        for batch in balanced_batches(len(train_videos), phase.batch_size, rng):
            x, y, valid = collate(  # the whole global batch on every process: the same crop draws
                [train_videos[i] for i in batch], tcfg.length_policy, length, rng, device, min_length
            )
            popt.zero_grad(set_to_none=True)
            total, count = 0.0, 0
            for mb in micro_batches(accelerator, pmodel, np.arange(len(batch))):
                rows = torch.as_tensor(mb.indices, device=device)
                part = {k: v[rows] for k, v in x.items()}
                loss = hybrid_loss(pmodel(part, valid[rows]).score, y[rows], tcfg.loss_alpha)
                accelerator.backward(loss * mb.weight)  # the gradient of the global-batch mean loss
                total, count = total + float(loss.detach()) * len(rows), count + len(rows)
            norm = grad_norm(accelerator, params, phase.grad_clip)
            popt.step()
            losses.append(
                mean_over_processes(accelerator, total / count, count) if world > 1 else total / count
            )
            steps += 1
            if log is not None:
                log.log({"loss": losses[-1], "lr": float(optimizer.param_groups[0]["lr"]), "grad_norm": norm},
                        steps, samples=len(batch), prefix=f"{description}/")  # fmt: skip
        scheduler.step()
        record = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "lr": float(optimizer.param_groups[0]["lr"]),
        }
        if (
            tcfg.select == "best_test"
            and test_videos
            and ((epoch + 1) % tcfg.eval_every == 0 or epoch + 1 == phase.epochs)
        ):
            pred = scale.to_score(predict(model, test_videos, tcfg, device))
            scc = spearman(pred, np.array([v.score for v in test_videos]))
            record["test_scc"] = scc
            if log is not None:
                log.log({"test_scc": scc}, steps, prefix=f"{description}/eval/")
            if np.isfinite(scc) and scc > best["scc"]:
                best = {"scc": float(scc), "epoch": epoch + 1}
                if accelerator.is_main_process:
                    save_tensors(best_file, {k: v.detach().cpu() for k, v in model.state_dict().items()})
        history.append(record)
        if progress:
            progress.update(task, advance=1, description=f"{description} loss {record['loss']:.4f}")
        done = epoch + 1 == phase.epochs
        if tcfg.checkpoint_every > 0 and (epoch + 1) % tcfg.checkpoint_every == 0 and not done:
            meta = {"epoch": epoch + 1, "history": history, "best": best}
            save_checkpoint(
                work_dir, epoch + 1, model, optimizer, scheduler, meta=meta, accelerator=accelerator
            )
    if progress:
        progress.remove_task(task)
    accelerator.free_memory()  # drop the accelerator's references to this phase's model and optimizer
    selected = phase.epochs
    if tcfg.select == "best_test" and best["epoch"] > 0 and best_file.is_file():
        from safetensors.torch import load_file

        model.load_state_dict(load_file(str(best_file), device=str(device)))
        selected = int(best["epoch"])
    if tcfg.bn_recalibrate:
        recalibrate_batchnorm(model, train_videos, tcfg, length, min_length, phase.batch_size, device)
    return PhaseResult(phase.epochs, selected, history, tcfg.select)


def finish_phase(
    work_dir: Path, out_dir: Path, model: Any, result: PhaseResult, extra: dict[str, Any]
) -> None:
    """Save the trained model (save_pretrained), its training record, and drop the resume checkpoints
    (the main process writes; the others wait for it)."""
    from surgkit.utils.distributed import barrier
    from surgkit.utils.lock import is_main_process

    if is_main_process():
        model.save_pretrained(out_dir)
        write_json(out_dir / STATE_NAME, {**dataclasses.asdict(result), **extra})
        shutil.rmtree(work_dir, ignore_errors=True)
    barrier()


def is_finished(out_dir: Path) -> bool:
    """True when ``out_dir`` holds a model whose training completed (resume skips it)."""
    return (out_dir / STATE_NAME).is_file() and (out_dir / "model.safetensors").is_file()


def read_state(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / STATE_NAME).read_text())
