"""``surgkit video``: SurgVISTA pretraining, fine-tuning, conversion (logic in surgkit.video.*)."""

from __future__ import annotations

from pathlib import Path

import typer

video_app = typer.Typer(
    help="SurgVISTA video foundation model: pretrain, finetune, convert.", no_args_is_help=True
)
convert_app = typer.Typer(help="Convert checkpoints: official SurgVISTA → surgkit, surgkit ↔ HF VideoMAE.",
                          no_args_is_help=True)  # fmt: skip
video_app.add_typer(convert_app, name="convert")


@convert_app.command("official")
def convert_official_cmd(
    src: Path = typer.Argument(..., help="Official checkpoint (.safetensors, or .pth with --trust-pickle)."),
    out: Path = typer.Argument(..., help="Output surgkit model folder."),
    target: str = typer.Option("auto", help="auto (from the keys) | pretrain | classifier | encoder."),
    trust_pickle: bool = typer.Option(False, help="Allow reading .pth (torch.load with weights_only=True)."),
    img_size: int = typer.Option(224, help="Frame size the checkpoint was trained at."),
    num_frames: int = typer.Option(16, help="Clip length the checkpoint was trained at."),
    num_heads: int = typer.Option(None, help="Encoder heads (default width/64)."),
    decoder_num_heads: int = typer.Option(None, help="Reconstruction-decoder heads (default width/64)."),
    distill_num_heads: int = typer.Option(None, help="Distillation-decoder heads (default width/64)."),
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


@convert_app.command("to-hf")
def to_hf_cmd(
    src: Path = typer.Argument(..., help="surgkit SurgVISTA folder."),
    out: Path = typer.Argument(..., help="Output HF VideoMAE folder."),
) -> None:
    """surgkit folder → HF VideoMAEModel / VideoMAEForVideoClassification folder (encoder only for pretraining)."""
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


def register(app: typer.Typer) -> None:
    app.add_typer(video_app, name="video")
