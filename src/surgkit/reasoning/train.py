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

Outputs of a stage folder: ``model/`` (full weights: full fine-tuning, or LoRA merged on request with
``merge_lora``), ``adapter/`` (LoRA runs: the PEFT adapter with the processor; the next stage and
``load_vlm`` accept it and merge it onto its base in memory), ``training.json`` (settings, start, log
history), ``train_log.jsonl`` (one line per logged step; TRL's console log dicts go there, not to
stdout), ``checkpoints/``. For large models: ``dtype`` (bf16 weights), ``gradient_checkpointing``, LoRA,
and GRPO generation through vLLM (``use_vllm``, the ``vllm`` extra, GPU only).

Resumable without pickle: checkpoints keep only safetensors weights + JSON state (``save_only_model``);
``resume=True`` restarts from the newest checkpoint's weights and runs the remaining steps (the
optimizer and LR schedule restart; stated in ``training.json``). Models are trained on ``split=="train"``
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

TRAINING_JSON = "training.json"


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
    merge_lora: bool = False
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    save_steps: int = 500
    seed: int = 0
    box_frame: str = "norm1000"
    min_pixels: int | None = None
    max_pixels: int | None = None
    weight_decay: float = 0.0
    # small models: logits only where the loss is (completion_loss); images pre-resized (resized_images)
    completion_logits_only: bool = False
    cache_images: bool = False
    image_cache: str | None = None  # folder of the resized copies (default OUT/image_cache; stages may share)
    # batches of similar length in random order (reasoning.batching): less padding
    group_by_length: bool = False
    length_megabatch: int | None = None  # with group_by_length: sort only within chunks of k random batches
    # launch options (--report-to/--mixed-precision; see surgkit.utils.launch.LaunchOptions): trackers, None =
    # TensorBoard when installed (train_log.jsonl is always written); precision no|fp16|bf16|auto, None = the
    # accelerate-launch config's, else auto (bf16 on GPUs that support it)
    report_to: str | None = None
    mixed_precision: str | None = None


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
    scale_rewards: str = "group"  # TRL: "group" (advantage / group std), "batch", "none" (Dr. GRPO)
    aggregation: str = "sum_then_normalize"
    max_completion_length: int = 1024
    epochs: float = 1.0
    max_steps: int = -1
    lora: bool = True
    lora_r: int = 8
    lora_alpha: int = 32
    lora_targets: str = "all-linear"
    merge_lora: bool = False
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    rewards: dict[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    coherence: CoherenceConfig = dataclasses.field(default_factory=CoherenceConfig)
    triplet_lambda: float = 0.5
    iou_mode: str = "continuous"
    extra_reward_funcs: list[Any] = dataclasses.field(default_factory=list)
    save_steps: int = 500
    seed: int = 0
    box_frame: str = "norm1000"
    min_pixels: int | None = None
    max_pixels: int | None = None
    warmup_ratio: float = 0.0
    scheduler: str = "linear"
    cache_images: bool = False
    image_cache: str | None = None
    report_to: str | None = None  # as SFTSettings
    mixed_precision: str | None = None


def with_launch(settings: Any, launch: Any) -> Any:
    """``settings`` with the command line's launch options (``--mixed-precision/--grad-accum/--report-to``)."""
    if launch is None:
        return settings
    over: dict[str, Any] = {"report_to": launch.report_to}
    if launch.grad_accum is not None:
        over["grad_accum"] = int(launch.grad_accum)
    if launch.mixed_precision is not None:
        over["mixed_precision"] = launch.mixed_precision
    return dataclasses.replace(settings, **over)


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
    """No tokenizer threads; and refuse ``accelerate launch --cpu --num_processes N`` (it starts one
    process; TRL builds its own Accelerator, so :func:`make_accelerator`'s check is made here).

    transformers' own tracker integrations stay off through ``report_to=[]`` (trackers are opened once
    by :mod:`surgkit.utils.hf_tracking`); ``WANDB_DISABLED`` is not set: wandb itself reads it, and it
    would silently turn off ``--report-to wandb``.
    """
    from surgkit.utils.launch import check_launch_environment

    check_launch_environment()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _device_kwargs(device: str, mixed_precision: str | None = None) -> dict[str, Any]:
    """use_cpu / bf16 / fp16 of TrainingArguments; precision: the setting, else the launch config's, else auto
    (bf16 on GPUs that support it)."""
    import os

    import torch

    from surgkit.utils.launch import resolve_mixed_precision

    cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    mp = resolve_mixed_precision(
        mixed_precision or os.environ.get("ACCELERATE_MIXED_PRECISION") or "auto", cpu
    )
    return {"use_cpu": cpu, "bf16": mp == "bf16", "fp16": mp == "fp16"}


def per_device_batch(global_batch: int, grad_accum: int, world: int | None = None) -> int:
    """Samples per process and micro-step for a global batch (per optimizer step, all processes)."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1")) if world is None else world
    share = world * max(1, grad_accum)
    if global_batch < share or global_batch % share:
        raise SurgkitError(
            f"batch size {global_batch} (the global batch) is not a multiple of processes x --grad-accum = "
            f"{world} x {grad_accum}; choose a batch size divisible by {share}"
        )
    return global_batch // share


def _with_images(rows: list[dict[str, Any]], processor=None, cache: Path | None = None):
    from datasets import Dataset, Image, Sequence

    if cache is not None and processor is not None:
        from surgkit.utils.launch import process_state

        with process_state().main_process_first():  # the main process writes the cache, the others read it
            rows = resized_images(rows, processor, cache)
    ds = Dataset.from_list(rows)
    return ds.cast_column("images", Sequence(Image()))


def _image_cache(settings: Any, out: Path) -> Path | None:
    if not settings.cache_images:
        return None
    return Path(settings.image_cache) if settings.image_cache else out / "image_cache"


def resized_images(rows: list[dict[str, Any]], processor, cache: Path) -> list[dict[str, Any]]:
    """Rows whose images are copies already at the processor's input size (PNG in ``cache``).

    The processor resizes every image at every step (decode the full frame, then resize); a copy resized
    once with the processor's own rule (PIL bicubic to its ``smart_resize`` size) gives the same pixel
    values (tested) at a fraction of the decoding cost. Images the processor would not shrink, or would
    resize again once copied, are kept.
    """
    import hashlib

    from PIL import Image

    from surgkit.reasoning.boxes import qwen25_input_size
    from surgkit.reasoning.vlm import processor_pixels
    from surgkit.utils.io import write_bytes

    px = processor_pixels(processor)
    if px is None:
        return rows
    lo, hi, factor = px
    done: dict[str, str] = {}

    def small(path: str) -> str:
        if path not in done:
            with Image.open(path) as im:
                size = qwen25_input_size(*im.size, factor, lo, hi)
                # a copy only where the processor would shrink it and leave the copy as it is (with
                # min_pixels = max_pixels, smart_resize's floor can land below min_pixels: the copy
                # would be enlarged again, to another size than the original's)
                if (
                    size[0] * size[1] >= im.size[0] * im.size[1]
                    or qwen25_input_size(*size, factor, lo, hi) != size
                ):
                    done[path] = path
                else:
                    import io

                    out = cache / (hashlib.sha1(f"{path}|{size}".encode()).hexdigest()[:20] + ".png")
                    if not out.is_file():
                        buf = io.BytesIO()
                        im.convert("RGB").resize(size, Image.BICUBIC).save(
                            buf, format="PNG", compress_level=1
                        )
                        write_bytes(out, buf.getvalue())
                    done[path] = str(out)
        return done[path]

    return [{**row, "images": [small(p) for p in row["images"]]} for row in rows]


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


def _start_model(model_path: Path, run: Path, resume: bool, dtype: str, lora_cfg) -> tuple[Any, int, str]:
    """The model to train (from the newest checkpoint when resuming) and the steps already done."""
    from surgkit.reasoning.vlm import load_vlm

    ckpt = _latest_checkpoint(run) if resume else None
    if ckpt is None:
        model, _ = load_vlm(model_path, device="cpu", dtype=dtype)
        return model, 0, "fresh start"
    done = int(json.loads((ckpt[0] / "trainer_state.json").read_text()).get("global_step", ckpt[1]))
    if lora_cfg is not None and (ckpt[0] / "adapter_config.json").is_file():
        from peft import PeftModel

        base, _ = load_vlm(model_path, device="cpu", dtype=dtype)
        model = PeftModel.from_pretrained(base, ckpt[0], is_trainable=True)
    else:
        model, _ = load_vlm(ckpt[0], device="cpu", dtype=dtype)
    return model, done, f"resumed weights from {ckpt[0].name} (optimizer and LR schedule restart)"


def _finish(trainer, processor, out_dir: Path, meta: dict[str, Any], merge_lora: bool) -> Path:
    """Save the stage's result (see the module docstring); returns the folder the next stage loads.

    Under ``accelerate launch``/``torchrun`` the main process writes and the others wait for it; with
    DeepSpeed ZeRO-3 or FSDP the full weights are first gathered from every process.
    """
    acc = trainer.accelerator
    sharded = bool(
        getattr(trainer, "is_deepspeed_enabled", False) or getattr(trainer, "is_fsdp_enabled", False)
    )
    state = acc.get_state_dict(trainer.model) if sharded else None  # a collective: every process joins
    adapter_only = hasattr(trainer.model, "peft_config") and not merge_lora
    result = out_dir / ("adapter" if adapter_only else "model")
    if acc.is_main_process:
        result = _save_stage(trainer, processor, out_dir, meta, merge_lora, state)
    acc.wait_for_everyone()
    return result


def _save_stage(trainer, processor, out_dir: Path, meta: dict[str, Any], merge_lora: bool, state) -> Path:
    from surgkit.reasoning.vlm import save_vlm
    from surgkit.utils.io import write_json

    model = trainer.accelerator.unwrap_model(trainer.model)
    result = None
    if hasattr(model, "peft_config"):
        adapter = out_dir / "adapter"
        model.save_pretrained(adapter, safe_serialization=True, **({"state_dict": state} if state else {}))
        processor.save_pretrained(adapter)
        from surgkit.reasoning.vlm import MARKER

        write_json(
            adapter / MARKER, {"kind": "surgkit-reasoning-adapter", **meta, "processor": _kind(processor)}
        )
        result = adapter
        if merge_lora:
            model, state = model.merge_and_unload(), None
    if result is None or merge_lora:
        result = save_vlm(model, processor, out_dir / "model", {"kind": "surgkit-reasoning", **meta}, state)
    write_json(
        out_dir / TRAINING_JSON, {**meta, "output": str(result), "log_history": trainer.state.log_history}
    )
    return result


def _kind(processor) -> str:
    return getattr(processor, "surgkit_kind", "auto")


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
        per_device_train_batch_size=per_device_batch(settings.batch_size, settings.grad_accum),
        gradient_accumulation_steps=settings.grad_accum,
        gradient_checkpointing=settings.gradient_checkpointing,
        warmup_steps=settings.warmup_ratio,
        lr_scheduler_type=settings.scheduler,
        logging_steps=1,
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_only_model=True,
        report_to=[],
        seed=settings.seed,
        dataloader_num_workers=0,
        disable_tqdm=True,
        **_device_kwargs(device, getattr(settings, "mixed_precision", None)),
    )


def _quiet(trainer, out: Path, name: str, settings: Any) -> None:
    """TRL's log dicts to ``out/train_log.jsonl`` and the trackers (``settings.report_to``), not stdout."""
    from surgkit.utils.hf_tracking import tracker_callback, use_surgkit_logging

    config = {k: v for k, v in dataclasses.asdict(settings).items() if k != "extra_reward_funcs"}
    args = trainer.args
    cb = tracker_callback(
        out,
        f"reason-{name.split()[0].lower()}",
        config,
        report_to=settings.report_to,
        description=name,
        global_batch=args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps,
    )
    use_surgkit_logging(trainer, cb)


def lean_sft_trainer(
    completion_logits_only: bool = True, lengths: list[int] | None = None, megabatch: int | None = None
):
    """``SFTTrainer`` whose loss computes logits only over the completion span (:func:`completion_loss`)
    and/or, with ``lengths``, whose batches are of similar length
    (:class:`~surgkit.reasoning.batching.LengthBucketSampler`)."""
    from trl import SFTTrainer

    class LeanSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if not completion_logits_only:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss, acc = completion_loss(model, inputs, num_items_in_batch)
            self._metrics["train" if model.training else "eval"]["mean_token_accuracy"].append(acc)
            return loss

        def _get_train_sampler(self, train_dataset=None):
            if lengths is None:
                return super()._get_train_sampler(train_dataset)
            from surgkit.reasoning.batching import LengthBucketSampler

            return LengthBucketSampler(
                lengths, self.args.per_device_train_batch_size, self.args.seed, megabatch
            )

    return LeanSFTTrainer


def example_lengths(rows: list[dict[str, Any]], tokenizer) -> list[int]:
    """Text tokens of each SFT row (every text of its prompt and completion; image tokens not counted):
    the key of length bucketing."""
    texts = [
        " ".join(
            c["text"]
            for msg in row["prompt"] + row["completion"]
            for c in (msg["content"] if isinstance(msg["content"], list) else [{"text": msg["content"]}])
            if "text" in c
        )
        for row in rows
    ]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def completion_loss(model, inputs: dict[str, Any], num_items_in_batch=None) -> tuple[Any, float]:
    """Next-token cross-entropy over the labelled (completion) tokens, with the vocabulary projection
    computed only from the first labelled position on (``logits_to_keep``): a VLM prompt (system text,
    image tokens, question) is mostly unlabelled, and on a CPU the projection and TRL's fused entropy
    over every position cost more than the model. Same loss as TRL's ``nll``; returns (loss, token
    accuracy)."""
    import torch
    import torch.nn.functional as F

    labels = inputs["labels"]
    shifted = labels[:, 1:]
    mask = shifted != -100
    start = int(mask.any(0).nonzero()[0]) if mask.any() else shifted.shape[1] - 1
    keep = torch.arange(start, labels.shape[1] - 1, device=labels.device)
    fwd = {k: v for k, v in inputs.items() if k != "labels"}
    logits = model(**fwd, use_cache=False, logits_to_keep=keep).logits
    y, m = shifted[:, start:], mask[:, start:]
    picked = logits[m].float()
    total = F.cross_entropy(picked, y[m], reduction="sum")
    denom = m.sum() if num_items_in_batch is None else num_items_in_batch
    acc = float((picked.argmax(-1) == y[m]).float().mean()) if m.any() else 0.0
    return total / torch.as_tensor(denom).clamp(min=1), acc


def _bound_box(processor, frame: str, lo: int | None, hi: int | None, records: list[Record]) -> BoxSettings:
    from surgkit.reasoning.vlm import bind_processor

    sizes = sorted({r.size for r in records})[:16]
    return bind_processor(processor, BoxSettings(frame=frame, min_pixels=lo, max_pixels=hi), sizes)


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
    from trl import SFTConfig

    from surgkit.reasoning.render import sft_example
    from surgkit.reasoning.vlm import load_processor

    if settings.stage not in ("simple", "cot"):
        raise SurgkitError("SFT stage must be 'simple' (Stage 1) or 'cot' (Stage 2)")
    mode = "sentence" if settings.stage == "simple" else "cot"
    processor = load_processor(model_path)
    box = _bound_box(processor, settings.box_frame, settings.min_pixels, settings.max_pixels, records)
    rows = [sft_example(r, mode, image_root, box) for r in records]
    rows += [sft_example(r, "sentence", image_root, box) for r in extra_simple or []]
    out = Path(out_dir)
    lora_cfg = _lora(settings.lora, settings.lora_r, settings.lora_alpha, settings.lora_targets)
    model, done, how = _start_model(Path(model_path), out / "checkpoints", resume, settings.dtype, lora_cfg)
    if done and lora_cfg is not None and hasattr(model, "peft_config"):
        lora_cfg = None  # adapter already attached
    args = SFTConfig(
        **_trainer_args(settings, out, done, device),
        max_length=settings.max_length,
        weight_decay=settings.weight_decay,
    )
    lengths = example_lengths(rows, processor.tokenizer) if settings.group_by_length else None
    trainer = lean_sft_trainer(settings.completion_logits_only, lengths, settings.length_megabatch)(
        model=model,
        args=args,
        train_dataset=_with_images(rows, processor, _image_cache(settings, out)),
        processing_class=processor,
        peft_config=lora_cfg,
    )
    _quiet(trainer, out, f"SFT ({settings.stage})", settings)
    trainer.train()
    meta = {
        "stage": f"sft-{settings.stage}",
        "settings": dataclasses.asdict(settings),
        "box": dataclasses.asdict(box),
        "records": len(rows),
        "start": how,
    }
    return _finish(trainer, processor, out, meta, settings.merge_lora)


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
    """Stage 3 GRPO with TRL ``GRPOTrainer``; rewards from :func:`surgkit.reasoning.rewards.make_reward_funcs`.

    Refuses a tokenizer whose decoding drops the reasoning tags (:func:`vlm.check_tags_survive`).
    """
    _env_offline()
    from trl import GRPOConfig, GRPOTrainer

    from surgkit.reasoning.render import grpo_example
    from surgkit.reasoning.rewards import make_reward_funcs
    from surgkit.reasoning.vlm import check_tags_survive, load_processor, resolve_device

    processor = load_processor(model_path)
    check_tags_survive(processor)
    if settings.use_vllm and resolve_device(device) != "cuda":
        raise SurgkitError("use_vllm needs a CUDA GPU (and the 'vllm' extra: pip install 'surgkit[vllm]')")
    box = _bound_box(processor, settings.box_frame, settings.min_pixels, settings.max_pixels, records)
    funcs, weights = make_reward_funcs(
        settings.rewards, box, settings.coherence, settings.triplet_lambda, settings.iou_mode
    )
    for f in settings.extra_reward_funcs:
        funcs.append(f)
        weights.append(1.0)
    rows = [grpo_example(r, image_root, box) for r in records]
    out = Path(out_dir)
    lora_cfg = _lora(settings.lora, settings.lora_r, settings.lora_alpha, settings.lora_targets)
    model, done, how = _start_model(Path(model_path), out / "checkpoints", resume, settings.dtype, lora_cfg)
    if done and hasattr(model, "peft_config"):
        lora_cfg = None
    vllm = {"use_vllm": True, "vllm_mode": settings.vllm_mode} if settings.use_vllm else {}
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
        **vllm,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=funcs,
        args=args,
        train_dataset=_with_images(rows, processor, _image_cache(settings, out)),
        processing_class=processor,
        peft_config=lora_cfg,
    )
    _quiet(trainer, out, "GRPO", settings)
    trainer.train()
    meta = {
        "stage": "grpo",
        "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k != "extra_reward_funcs"},
        "box": dataclasses.asdict(box),
        "reward_names": [f.__name__ for f in funcs],
        "reward_weights": weights,
        "records": len(rows),
        "start": how,
    }
    return _finish(trainer, processor, out, meta, settings.merge_lora)
