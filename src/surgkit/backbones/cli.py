"""``surgkit backbones convert|info``: published Kinetics checkpoints → surgkit model folders."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Frozen video feature backbones: convert published Video Swin / I3D checkpoints, inspect folders.",
        no_args_is_help=True,
    )
    app.add_typer(sub, name="backbones")

    @sub.command("convert")
    def convert_cmd(
        checkpoint: Path = typer.Argument(
            ..., help="Published .pth (MMAction2 Video Swin, pytorch-i3d) or .safetensors."
        ),
        out: Path = typer.Option(
            ..., "--out", "-o", help="Model folder to write (config.json + model.safetensors)."
        ),
        trust_pickle: bool = typer.Option(
            False,
            "--trust-pickle",
            help="Allow reading a pickle-based .pth (torch.load with weights_only=True).",
        ),
        num_frames: int = typer.Option(
            32, help="Clip length the feature adapter feeds (paper: 32-frame segments)."
        ),
        image_size: int = typer.Option(224, help="Input size the feature adapter feeds."),
    ) -> None:
        """Strictly load a published checkpoint (architecture read from its tensors) and save it as a folder."""
        from surgkit.backbones.published import convert
        from surgkit.utils.progress import console

        folder = convert(checkpoint, out, trust_pickle, num_frames=num_frames, image_size=image_size)
        console.print(f"wrote {folder} ({_describe(folder)})", highlight=False, soft_wrap=True)

    @sub.command("info")
    def info_cmd(
        model: str = typer.Argument(..., help="Model folder, published checkpoint or HF id."),
        trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow reading a pickle-based .pth."),
    ) -> None:
        """What ``surgkit prep features`` would use: input, feature size, weights fingerprint."""
        from surgkit.backbones import load_backbone
        from surgkit.backbones.registry import describe_backbone
        from surgkit.utils.io import to_json

        typer.echo(to_json(describe_backbone(load_backbone(model, trust_pickle=trust_pickle))))


def _describe(folder: Path) -> str:
    import json

    cfg = json.loads((folder / "config.json").read_text())
    if cfg["model_type"] == "videoswin":
        return f"Video Swin embed {cfg['embed_dim']}, depths {cfg['depths']}, window {cfg['window_size']}, {cfg['num_classes']} classes"
    return f"I3D {'flow' if cfg['in_channels'] == 2 else 'RGB'}, {cfg['num_classes']} classes"
