"""``surgkit synth``: write a synthetic surgical world in native dataset layouts."""

from __future__ import annotations

from pathlib import Path

import typer


def synth(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder (created; must be empty unless --overwrite)."
    ),
    preset: str = typer.Option("demo", help="World size: tiny, demo, small or full."),
    seed: int = typer.Option(0, help="Seed: the same seed and preset give identical files."),
    videos: int = typer.Option(None, help="Number of cholecystectomy videos (overrides the preset)."),
    layouts: str = typer.Option(
        "all",
        help="Comma-separated layouts: truth, cholec80, cholect50, endoscapes, boxes, masks, vqla, vlm, copesd, jigsaws, "
        "corpus (pretraining keyframes of extra surgeries; docs/synth.md) (or all).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty folder."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted run with the same settings (finished videos are not redone).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    workers: int = typer.Option(
        None,
        "--workers",
        "-w",
        min=1,
        help="Processes writing videos at once (default: up to 2, the CPUs); the files do not depend on it.",
    ),
) -> None:
    """Generate synthetic laparoscopic videos and JIGSAWS trials with exact ground truth.

    Writes the native layouts of Cholec80, CholecT50, Endoscapes, Cholec80-Boxes, EndoVis18-VQLA, CoPESD and JIGSAWS (plus masks, image-caption/VQA JSONL and surgkit's own truth files) and a world.json manifest. See docs/synth.md.
    """
    from surgkit.synth.generate import generate_world
    from surgkit.synth.world import get_preset
    from surgkit.utils.progress import console

    get_preset(preset)  # one-line error before any work
    manifest = generate_world(
        out,
        preset=preset,
        seed=seed,
        layouts=layouts,
        videos=videos,
        overwrite=overwrite,
        resume=resume,
        progress=not quiet,
        workers=workers,
    )
    secs = manifest["generation_seconds"]
    console.print(
        f"wrote {len(manifest['videos'])} videos + {len(manifest['trials'])} JIGSAWS trials "
        f"({manifest['frames']} frames, {manifest['frames'] / max(secs, 1e-9):.0f} frames/s) "
        f"in layouts {', '.join(manifest['layouts'])} to {out}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
