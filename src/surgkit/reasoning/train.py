"""Training on TRL (SFT, GRPO) + PEFT + Accelerate: the four Surg-R1 stages (spec reasoning §1.4, §4).

- Stage 1 ``sft(stage="simple")``: sentence targets ("Current surgical phase is X.").
- Stage 2 ``sft(stage="cot")``: three-level chain targets (cold start).
- Stage 3 ``grpo``: answer-only ground truth; rewards by config (format, accuracy, IoU, coherence, …).
- Stage 4 ``self_improve``: sample K chains per training question, keep the validated ones (pathway A),
  fall back to the template chain where none passes (pathway B), SFT on the merge plus a slice of Stage-1
  data, then GRPO again; R rounds.

Defaults follow the settings seen in the Surg-R1 precursor (spec §2.7): SFT LoRA r32/α64 all-linear,
lr 5e-5, 3 epochs, cosine, warmup 0.05, max length 4096; GRPO LoRA r8/α32, G=6, temperature 0.9,
lr 1e-5, β=0.04, max completion 1024, loss ``dapo``. Tiny models train all parameters (``lora=False``).

Resumable without pickle: checkpoints keep only safetensors weights + JSON state (``save_only_model``);
``resume=True`` restarts from the newest checkpoint's weights and runs the remaining steps (the
optimizer and LR schedule restart; stated in ``train_log.json``). Models are trained on ``split=="train"``
records only unless told otherwise; training on test records raises :class:`LeakageError`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from surgkit.errors import LeakageError, SurgkitError
from surgkit.reasoning.records import Record
from surgkit.reasoning.rewards import DEFAULT_WEIGHTS, CoherenceConfig
from surgkit.reasoning.scoring import BoxSettings
from surgkit.utils.runinfo import guarded_run, run_settings


@dataclasses.dataclass
class SFTSettings:
    stage: str = "cot"  # "simple" (Stage 1, sentence targets) or "cot" (Stage 2)
    epochs: float = 3.0
    max_steps: int = -1
    learning_rate: float = 5e-5
    batch_size: int = 1
    grad_accum: int = 1
    warmup_ratio: float = 0.05
    scheduler: str = "cosine"
    max_length: int | None = 4096
    lora: bool = True
    lora_r: int = 32
    lora_alpha: int = 64
    lora_targets: str = "all-linear"
    save_steps: int = 500
    seed: int = 0
    box_frame: str = "norm1000"


@dataclasses.dataclass
class GRPOSettings:
    num_generations: int = 6
    batch_size: int = 6
    grad_accum: int = 1
    temperature: float = 0.9
    learning_rate: float = 1e-5
    beta: float = 0.04
    loss_type: str = "dapo"
    epsilon: float = 0.2
    scale_rewards: str = "group"
    aggregation: str = "sum_then_normalize"
    max_completion_length: int = 1024
    epochs: float = 1.0
    max_steps: int = -1
    lora: bool = True
    lora_r: int = 8
    lora_alpha: int = 32
    lora_targets: str = "all-linear"
    rewards: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    coherence: CoherenceConfig = dataclasses.field(default_factory=CoherenceConfig)
    triplet_lambda: float = 0.5
    iou_mode: str = "continuous"
    extra_reward_funcs: list[Any] = dataclasses.field(default_factory=list)
    save_steps: int = 500
    seed: int = 0
    box_frame: str = "norm1000"


def select_split(records: list[Record], split: str = "train", allow_leakage: bool = False) -> list[Record]:
    """Training records of ``split``; training on ``test`` records needs ``allow_leakage``."""
    if split == "test" and not allow_leakage:
        raise LeakageError("refusing to train on test records (pass allow_leakage to override)")
    out = [r for r in records if split == "all" or r.split == split]
    if split == "all" and not allow_leakage and any(r.split == "test" for r in out):
        raise LeakageError("split='all' includes test records; refusing (pass allow_leakage to override)")
    if not out:
        raise SurgkitError(f"no records with split '{split}'")
    return out


def _env_offline() -> None:
    os.environ.setdefault("WANDB_DISABLED", "true")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _device_kwargs(device: str) -> dict[str, Any]:
    import torch

    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    bf16 = (not cpu) and torch.cuda.is_bf16_supported()
    return {"use_cpu": cpu, "bf16": bf16, "fp16": False}


def _with_images(rows: list[dict[str, Any]]):
    from datasets import Dataset, Image, Sequence

    ds = Dataset.from_list(rows)
    return ds.cast_column("images", Sequence(Image()))


def _latest_checkpoint(run: Path) -> tuple[Path, int] | None:
    best = None
    for p in run.glob("checkpoint-*"):
        m = re.fullmatch(r"checkpoint-(\d+)", p.name)
        if m and (p / "trainer_state.json").is_file() and (best is None or int(m.group(1)) > best[1]):
            best = (p, int(m.group(1)))
    return best


def _lora(enabled: bool, r: int, alpha: int, targets: str):
    if not enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.05, target_modules=targets, task_type="CAUSAL_LM")


def _start_model(model_path: Path, run: Path, resume: bool, device: str, lora_cfg) -> tuple[Any, int, str]:
    """The model to train (from the newest checkpoint when resuming) and the steps already done."""
    from surgkit.reasoning.vlm import load_vlm

    ckpt = _latest_checkpoint(run) if resume else None
    if ckpt is None:
        model, _ = load_vlm(model_path, device="cpu")
        return model, 0, "fresh start"
    done = int(json.loads((ckpt[0] / "trainer_state.json").read_text()).get("global_step", ckpt[1]))
    if lora_cfg is not None and (ckpt[0] / "adapter_config.json").is_file():
        from peft import PeftModel

        base, _ = load_vlm(model_path, device="cpu")
        model = PeftModel.from_pretrained(base, ckpt[0], is_trainable=True)
    else:
        model, _ = load_vlm(ckpt[0], device="cpu")
    return model, done, f"resumed weights from {ckpt[0].name} (optimizer and LR schedule restart)"


def _finish(trainer, processor, out_dir: Path, meta: dict[str, Any]) -> Path:
    from surgkit.reasoning.vlm import save_vlm
    from surgkit.utils.io import write_json

    model = trainer.model
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    final = save_vlm(model, processor, out_dir / "model", {"kind": "surgkit-reasoning", **meta})
    write_json(out_dir / "train_log.json", {**meta, "log_history": trainer.state.log_history})
    return final


def _steps(max_steps: int, done: int) -> int:
    if max_steps > 0 and done >= max_steps:
        raise SurgkitError(f"checkpoint already at step {done} >= max_steps {max_steps}: nothing to resume")
    return max_steps - done if max_steps > 0 else -1


def _trainer_args(settings: Any, out: Path, done: int, device: str) -> dict[str, Any]:
    """TrainingArguments shared by the SFT and GRPO stages (schedule, checkpointing, logging, device)."""
    return dict(
        output_dir=str(out / "checkpoints"),
        num_train_epochs=settings.epochs,
        max_steps=_steps(settings.max_steps, done),
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.grad_accum,
        gradient_checkpointing=False,
        logging_steps=1,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_only_model=True,
        report_to=[],
        seed=settings.seed,
        dataloader_num_workers=0,
        **_device_kwargs(device),
    )


FRESH_START = "run without --resume to start over, or use another output folder"


# one writer per run folder; --resume with other settings refused; a fresh start drops stale checkpoints
@guarded_run("surgkit reason sft", run_settings, overwrite=lambda a: not a["resume"], clear=("checkpoints",),
             hint=FRESH_START)  # fmt: skip
def sft(
    model_path: str | Path,
    records: list[Record],
    image_root: str | Path | None,
    out_dir: str | Path,
    settings: SFTSettings = SFTSettings(),
    device: str = "auto",
    resume: bool = False,
    extra_simple: list[Record] | None = None,
) -> Path:
    """Stage 1/2 SFT with TRL ``SFTTrainer`` (prompt/completion rows, completion-only loss).

    ``extra_simple`` records are added with Stage-1 sentence targets (the anti-forgetting slice of Stage 4).
    """
    _env_offline()
    from trl import SFTConfig, SFTTrainer

    from surgkit.reasoning.render import sft_example
    from surgkit.reasoning.vlm import load_processor

    if settings.stage not in ("simple", "cot"):
        raise SurgkitError("SFT stage must be 'simple' (Stage 1) or 'cot' (Stage 2)")
    mode = "sentence" if settings.stage == "simple" else "cot"
    box = BoxSettings(frame=settings.box_frame)
    rows = [sft_example(r, mode, image_root, box) for r in records]
    rows += [sft_example(r, "sentence", image_root, box) for r in extra_simple or []]
    out = Path(out_dir)
    lora_cfg = _lora(settings.lora, settings.lora_r, settings.lora_alpha, settings.lora_targets)
    model, done, how = _start_model(Path(model_path), out / "checkpoints", resume, device, lora_cfg)
    if done and lora_cfg is not None and hasattr(model, "peft_config"):
        lora_cfg = None  # adapter already attached
    args = SFTConfig(
        **_trainer_args(settings, out, done, device),
        warmup_steps=settings.warmup_ratio,
        lr_scheduler_type=settings.scheduler,
        max_length=settings.max_length,
    )
    processor = load_processor(model_path)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=_with_images(rows),
        processing_class=processor,
        peft_config=lora_cfg,
    )
    trainer.train()
    meta = {
        "stage": f"sft-{settings.stage}",
        "settings": dataclasses.asdict(settings),
        "records": len(rows),
        "start": how,
    }
    return _finish(trainer, processor, out, meta)


@guarded_run("surgkit reason grpo", run_settings, overwrite=lambda a: not a["resume"], clear=("checkpoints",),
             hint=FRESH_START)  # fmt: skip
def grpo(
    model_path: str | Path,
    records: list[Record],
    image_root: str | Path | None,
    out_dir: str | Path,
    settings: GRPOSettings = GRPOSettings(),
    device: str = "auto",
    resume: bool = False,
) -> Path:
    """Stage 3 GRPO with TRL ``GRPOTrainer``; rewards from :func:`surgkit.reasoning.rewards.make_reward_funcs`."""
    _env_offline()
    from trl import GRPOConfig, GRPOTrainer

    from surgkit.reasoning.render import grpo_example
    from surgkit.reasoning.rewards import make_reward_funcs
    from surgkit.reasoning.vlm import load_processor

    box = BoxSettings(frame=settings.box_frame)
    funcs, weights = make_reward_funcs(
        settings.rewards, box, settings.coherence, settings.triplet_lambda, settings.iou_mode
    )
    for f in settings.extra_reward_funcs:
        funcs.append(f)
        weights.append(1.0)
    rows = [grpo_example(r, image_root, box) for r in records]
    out = Path(out_dir)
    lora_cfg = _lora(settings.lora, settings.lora_r, settings.lora_alpha, settings.lora_targets)
    model, done, how = _start_model(Path(model_path), out / "checkpoints", resume, device, lora_cfg)
    if done and hasattr(model, "peft_config"):
        lora_cfg = None
    args = GRPOConfig(
        **_trainer_args(settings, out, done, device),
        num_generations=settings.num_generations,
        max_completion_length=settings.max_completion_length,
        temperature=settings.temperature,
        beta=settings.beta,
        loss_type=settings.loss_type,
        epsilon=settings.epsilon,
        scale_rewards=settings.scale_rewards,
        multi_objective_aggregation=settings.aggregation,
        reward_weights=weights,
    )
    processor = load_processor(model_path)
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=_with_images(rows),
        processing_class=processor,
        peft_config=lora_cfg,
    )
    trainer.train()
    meta = {
        "stage": "grpo",
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "extra_reward_funcs"},
        "reward_names": [f.__name__ for f in funcs],
        "reward_weights": weights,
        "records": len(rows),
        "start": how,
    }
    return _finish(trainer, processor, out, meta)
