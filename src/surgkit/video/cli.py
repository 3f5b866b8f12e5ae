"""``surgkit video``: SurgVISTA pretraining, fine-tuning, conversion (logic in surgkit.video.*)."""

from __future__ import annotations

from pathlib import Path

import typer

from surgkit.utils.cli_options import launch_options
from surgkit.utils.launch import LaunchOptions

video_app = typer.Typer(
    help="SurgVISTA video foundation model: pretrain, finetune, convert.", no_args_is_help=True
)
convert_app = typer.Typer(help="Convert checkpoints: official SurgVISTA ↔ surgkit ↔ HF VideoMAE, image teachers.",
                          no_args_is_help=True)  # fmt: skip
video_app.add_typer(convert_app, name="convert")
teacher_app = typer.Typer(help="Image teachers for the distillation target.", no_args_is_help=True)
video_app.add_typer(teacher_app, name="teacher")


SURGVISTA_ACCUM_HELP = (
    "Gradient accumulation steps (official recipe: global batch = --batch-size × processes × this; the lr "
    "is scaled with it). Default: the accelerate launch config's, else 1."
)


@teacher_app.command("train")
@launch_options(grad_accum_help=SURGVISTA_ACCUM_HELP)
def teacher_train_cmd(
    data: list[str] = typer.Option(..., "--data", help="Folder of videos / frame folders. Repeatable."),
    run_dir: Path = typer.Option(
        Path("surgvista-teacher"), "--run-dir", help="Output folder (teacher/ inside)."
    ),
    size: str = typer.Option("tiny", help="ImageViT size: tiny | small | base | large."),
    img_size: int = typer.Option(64, help="Frame size (= the student's grid × patch size)."),
    patch_size: int = typer.Option(8, help="Patch size (= the student's)."),
    steps: int = typer.Option(200, help="Optimizer steps."),
    batch_size: int = typer.Option(
        32, help="Frames per step and process (global: × processes × --grad-accum)."
    ),
    base_lr: float = typer.Option(1.5e-4, help="Base learning rate (× batch / 256, as MAE)."),
    exclude: list[str] = typer.Option(
        None, "--exclude", help="Video id to leave out (test videos). Repeatable."
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
    seed: int = typer.Option(0, help="Seed."),
    launch: LaunchOptions = None,
) -> None:
    """Train an image teacher self-supervised (MAE) on surgical frames → a surgkit teacher folder."""
    from surgkit.video.teacher_train import TeacherTrainSettings, train_teacher

    summary = train_teacher(TeacherTrainSettings(
        data=data, run_dir=str(run_dir), size=size, img_size=img_size, patch_size=patch_size, steps=steps,
        batch_size=batch_size, base_lr=base_lr, exclude=list(exclude or []), device=device, seed=seed,
    ), launch=launch)  # fmt: skip
    typer.echo(f"{summary['teacher']} (MAE loss {summary['loss_first']:.4f} → {summary['loss_last']:.4f})")


@convert_app.command("official")
def convert_official_cmd(
    src: Path = typer.Argument(..., help="Official checkpoint (.safetensors, or .pth with --trust-pickle)."),
    out: Path = typer.Argument(..., help="Output surgkit model folder."),
    target: str = typer.Option("auto", help="auto (from the keys) | pretrain | classifier | encoder."),
    trust_pickle: bool = typer.Option(False, help="Allow reading .pth (torch.load with weights_only=True)."),
    img_size: int = typer.Option(
        None, help="Frame size the checkpoint was trained at (default: run args or 224)."
    ),
    num_frames: int = typer.Option(
        None, help="Clip length the checkpoint was trained at (default: run args or 16)."
    ),
    num_heads: int = typer.Option(
        None, help="Encoder heads (default: from the run args or the official builders)."
    ),
    decoder_num_heads: int = typer.Option(
        None, help="Reconstruction-decoder heads (default: inferred or refused)."
    ),
    distill_num_heads: int = typer.Option(
        None, help="Distillation-decoder heads (default: inferred or refused)."
    ),
    num_classes: int = typer.Option(
        None, help="Classes of a new head (target classifier from a pretrained file)."
    ),
) -> None:
    """Official SurgVISTA checkpoint → surgkit folder (config.json + model.safetensors + conversion.json)."""
    from surgkit.video.convert import save_official_conversion

    save_official_conversion(
        src, out, target=target, trust_pickle=trust_pickle, img_size=img_size, num_frames=num_frames,
        num_heads=num_heads, decoder_num_heads=decoder_num_heads, distill_num_heads=distill_num_heads,
        num_classes=num_classes,
    )  # fmt: skip
    typer.echo(str(out))


@convert_app.command("to-official")
def to_official_cmd(
    src: Path = typer.Argument(..., help="surgkit SurgVISTA folder (pretraining, classifier or encoder)."),
    out: Path = typer.Argument(..., help="Output file (.pth / .safetensors) or folder (deepspeed)."),
    layout: str = typer.Option(
        "official-pth", help="official-pth ({'model': sd}) | deepspeed | safetensors."
    ),
) -> None:
    """surgkit folder → official SurgVISTA layout (pretraining: both decoders and the fixed tables)."""
    from surgkit.video.convert import save_official
    from surgkit.video.model import load_model

    typer.echo(str(save_official(load_model(src), out, layout=layout)))


@convert_app.command("teacher")
def convert_teacher_cmd(
    src: Path = typer.Argument(..., help="Image-teacher checkpoint (EndoSSL/SurgVISTA .pth, timm/MAE ViT)."),
    out: Path = typer.Argument(..., help="Output surgkit teacher folder."),
    trust_pickle: bool = typer.Option(False, help="Allow reading .pth (torch.load with weights_only=True)."),
    num_heads: int = typer.Option(None, help="Heads, for a ViT of non-standard width."),
) -> None:
    """Image-expert teacher checkpoint → surgkit teacher folder (safetensors; no pickle needed later)."""
    from surgkit.video.teacher_io import save_teacher_conversion

    typer.echo(str(save_teacher_conversion(src, out, trust_pickle=trust_pickle, num_heads=num_heads)))


@convert_app.command("to-hf")
def to_hf_cmd(
    src: Path = typer.Argument(..., help="surgkit SurgVISTA folder."),
    out: Path = typer.Argument(..., help="Output HF VideoMAE folder."),
) -> None:
    """surgkit folder → HF VideoMAEModel / VideoMAEForVideoClassification / VideoMAEForPreTraining folder."""
    from surgkit.video.hf import save_hf_folder
    from surgkit.video.model import load_model

    save_hf_folder(load_model(src), out)
    typer.echo(str(out))


@convert_app.command("from-hf")
def from_hf_cmd(
    src: Path = typer.Argument(..., help="HF VideoMAE folder (config.json + model.safetensors)."),
    out: Path = typer.Argument(..., help="Output surgkit folder."),
) -> None:
    """HF VideoMAE folder → surgkit folder (3-D table restored from surgkit_position_table)."""
    from surgkit.video.hf import load_hf_folder

    load_hf_folder(src).save_pretrained(out)
    typer.echo(str(out))


@video_app.command("pretrain")
@launch_options(grad_accum_help=SURGVISTA_ACCUM_HELP)
def pretrain_cmd(
    data: list[str] = typer.Option(
        None, "--data", help="Data folder (videos / frame folders); DIR or DIR:WEIGHT. Repeatable."
    ),
    config: Path = typer.Option(None, "--config", help="JSON settings file (fields of PretrainSettings)."),
    run_dir: Path = typer.Option(
        None, "--run-dir", help="Output/run folder (resumes from its last checkpoint)."
    ),
    model: str = typer.Option(None, help="Size tiny|small|base|large or a surgkit SurgVISTA folder."),
    teacher: str = typer.Option(
        None,
        help="Required: teacher .pth/.safetensors | surgkit teacher folder | HF ViT folder | none | random.",
    ),
    teacher_precision: str = typer.Option(
        None, help="auto (fp16 autocast on GPU, as official) | fp32 | fp16 | bf16."
    ),
    trust_pickle: bool = typer.Option(False, help="Allow reading .pth teacher/model files (weights_only)."),
    sampling: str = typer.Option(
        None, help="uniform (every frame once per epoch; default) | weighted (DIR:WEIGHT)."
    ),
    steps: int = typer.Option(None, help="Optimizer steps."),
    batch_size: int = typer.Option(None, help="Clips per device and micro-step."),
    test_data: list[str] = typer.Option(
        None, "--test-data", help="Downstream test set(s) for the leakage guard."
    ),
    exclude: list[str] = typer.Option(
        None, "--exclude", help="Video id to leave out of every --data folder. Repeatable."
    ),
    allow_leakage: bool = typer.Option(False, help="Train even if a test video is in the data."),
    device: str = typer.Option(None, help="auto | cpu | cuda."),
    seed: int = typer.Option(None, help="Seed of the sample plan, masks and init."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start over when --run-dir holds a run with other settings."
    ),
    launch: LaunchOptions = None,
) -> None:
    """Pretrain SurgVISTA (masked video reconstruction + image distillation); resumable.

    Multi-process: accelerate launch --config_file $(surgkit recipes path multi-gpu) -m surgkit video pretrain ...
    """
    from surgkit.video.pretrain import PretrainSettings, pretrain

    fields = {} if config is None else _read_json(config)
    if data:
        fields["data"] = [_data_spec(d) for d in data]
        if any(":" in d and _data_spec(d)["weight"] != 1.0 for d in data) and sampling is None:
            fields["sampling"] = "weighted"  # DIR:WEIGHT asks for per-dataset weights
    if exclude:
        for spec in fields.get("data", []):
            if isinstance(spec, dict):
                spec["exclude"] = sorted(set(spec.get("exclude", [])) | set(exclude))
    cli = dict(run_dir=run_dir and str(run_dir), model=model, teacher=teacher, steps=steps, batch_size=batch_size,
               test_data=test_data or None, device=device, seed=seed,
               teacher_precision=teacher_precision, sampling=sampling)  # fmt: skip
    fields.update({k: v for k, v in cli.items() if v is not None})
    if trust_pickle:
        fields["trust_pickle"] = True
    if allow_leakage:
        fields["allow_leakage"] = True
    summary = pretrain(PretrainSettings.from_dict(fields), launch=launch, overwrite=overwrite)
    typer.echo(f"{summary['steps_done']} steps, final loss {summary['history'][-1]['loss']:.4f}" if summary["history"]
               else "nothing to do (run already complete)")  # fmt: skip


@video_app.command("finetune")
@launch_options(grad_accum_help=SURGVISTA_ACCUM_HELP)
def finetune_cmd(
    task: str = typer.Option(..., "--task", help="phase | triplet | cvs | action."),
    dataset: str = typer.Option(
        ..., "--dataset", help="surgkit.data reader name (cholec80, cholect50, ...)."
    ),
    root: Path = typer.Option(..., "--root", help="Dataset root in its native layout."),
    preset: str = typer.Option(
        None,
        help="Official recipe: phase | phase-m2cai16 | triplet | cvs-endoscapes | cvs-cholec80 | "
        "cvs-criteria | action (default: the task's preset for the dataset).",
    ),
    init: Path = typer.Option(
        None, "--init", help="Pre-trained surgkit SurgVISTA folder (default: random init)."
    ),
    run_dir: Path = typer.Option(
        Path("surgvista-finetune"), "--run-dir", help="Output/run folder (resumable)."
    ),
    config: Path = typer.Option(None, "--config", help="JSON file with more FinetuneSettings fields."),
    epochs: int = typer.Option(None, help="Epochs (default: the preset's)."),
    batch_size: int = typer.Option(
        None, help="Clips per process and step (global batch = this × processes)."
    ),
    size: str = typer.Option(None, help="Model size when --init is not given."),
    cvs_form: str = typer.Option(
        None, help="CVS target: 4class (Endoscapes) | 6class (Cholec80-CVS) | criteria."
    ),
    split_variant: str = typer.Option(
        None, help="Official split variant (e.g. 32/8/40, cholect50-challenge)."
    ),
    split_file: Path = typer.Option(None, help="JSON split {train,val,test} or a synth world.json."),
    fold: int = typer.Option(None, help="Fold index for cross-validation splits."),
    allow_leakage: bool = typer.Option(False, help="Train even if train and test videos overlap."),
    device: str = typer.Option(None, help="auto | cpu | cuda."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start over when --run-dir holds a run with other settings."
    ),
    launch: LaunchOptions = None,
) -> None:
    """Fine-tune SurgVISTA under the official downstream protocol; selection on validation, metrics on test."""
    from surgkit.video.finetune import FinetuneSettings, finetune

    fields = _read_json(config) if config is not None else {}
    cli = dict(run_dir=str(run_dir), init=init and str(init), epochs=epochs, batch_size=batch_size, size=size,
               cvs_form=cvs_form, split_variant=split_variant, fold=fold, device=device,
               split_file=split_file and str(split_file))  # fmt: skip
    fields.update({k: v for k, v in cli.items() if v is not None})
    if allow_leakage:
        fields["allow_leakage"] = True
    settings = FinetuneSettings.from_preset(
        preset or fields.pop("preset", None), dataset, str(root), task, **fields
    )
    summary = finetune(settings, launch=launch, overwrite=overwrite)
    test = summary.get("test", {})
    typer.echo(f"test {test.get('primary', '-')}: {test.get(test.get('primary', ''), float('nan')):.4f}")


def _read_json(path: Path) -> dict:
    from surgkit.utils.inputs import as_dict, read_json

    return as_dict(read_json(path, "settings file"), path, "top level")


def _data_spec(text: str) -> dict:
    """``DIR`` or ``DIR:WEIGHT`` (the weight is the part after the last colon when it is a number)."""
    path, sep, weight = text.rpartition(":")
    if sep:
        try:
            return {"path": path, "weight": float(weight)}
        except ValueError:
            pass
    return {"path": text, "weight": 1.0}


def register(app: typer.Typer) -> None:
    app.add_typer(video_app, name="video")
