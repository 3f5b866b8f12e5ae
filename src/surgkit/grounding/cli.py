"""``surgkit ground``: zero-shot VLM grounding benchmark (commands only; logic in surgkit.grounding)."""

from __future__ import annotations

from pathlib import Path

import typer

from surgkit.utils.cli_options import launch_options, main_process_output
from surgkit.utils.launch import LaunchOptions

sub = typer.Typer(
    help="Zero-shot VLM benchmark with heatmaps and grounding metrics (τ-AC, τ-AA, ARS).",
    no_args_is_help=True,
)


@sub.command("bench")
@main_process_output
def bench_cmd(
    model: str = typer.Option(
        ...,
        "--model",
        "-m",
        help="HF CLIP folder, surgkit SurgicalVLM folder, or a SurgVLP/HecVL/PeskaVLP checkpoint file.",
    ),
    dataset: str = typer.Option(
        ..., "--dataset", "-d", help="cholec80_boxes, copesd, cholect45, cholect50 or synth."
    ),
    root: Path = typer.Option(..., "--root", "-r", help="Dataset root (or synthetic world root)."),
    task: str = typer.Option("instrument", help="instrument (τ-AC, τ-AA) or triplet (ARS, V/T, Z/V)."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Run folder (default ground-runs/<model>-<task>)."
    ),
    boxes_root: Path | None = typer.Option(
        None, help="Triplet task: Cholec80-Boxes root joined on (video number, frame)."
    ),
    frame_map: str = typer.Option(
        "auto",
        help="Box frame number -> 1-fps triplet frame: auto (from the numbering), identity or divN.",
    ),
    regions: str = typer.Option(
        "boxes", help="GT regions of τ-AC/τ-AA: boxes, or masks (synthetic world only)."
    ),
    videos: str | None = typer.Option(None, help="Comma-separated video ids to keep (e.g. video42,video43)."),
    vocab: Path | None = typer.Option(None, help="Bio_ClinicalBERT vocab.txt (SurgVLP checkpoint files)."),
    variant: str = typer.Option("surgvlp", help="SurgVLP-family variant name of a checkpoint file."),
    trust_checkpoint: bool = typer.Option(
        False, help="Allow torch.load(weights_only=True) of a pickle-based .pth."
    ),
    preprocessing: str = typer.Option(
        "official",
        help="official (SurgVLP resize 360x640 + centre crop; CLIP processor shorter side + crop) or full-frame.",
    ),
    heatmap_target: str = typer.Option(
        "pred", help="Explain the predicted class (pred) or the GT class (gt)."
    ),
    tau: float = typer.Option(0.5, help="Attention threshold τ on the min-max normalised heatmap."),
    threshold: str = typer.Option(">=", help="Attended set: >= (H ≥ τ) or > (H > τ)."),
    triplet_pool: str = typer.Option(
        "valid", help="valid (94 non-null CholecT50 triplets), all (100) or product (756 combinations)."
    ),
    validity: str = typer.Option(
        "same-triplet", help="Valid frame: same-triplet (one GT triplet has both) or any-triplet."
    ),
    out_of_pool: str = typer.Option(
        "exclude", help="Frames whose GT triplets are all outside the pool: exclude (counted) or count."
    ),
    gradcam_layer: str = typer.Option("layer4", help="Grad-CAM block of ResNet VLMs: layer4 .. layer1."),
    rollout_start: int = typer.Option(0, help="Rollout: first attention block (0 = all, -1 = last only)."),
    rollout_target: str = typer.Option(
        "logit", help="Rollout score: logit (logit_scale.exp()·cos) or cosine."
    ),
    rollout_order: str = typer.Option(
        "later-left", help="Rollout product order: later-left (Chefer) or later-right."
    ),
    batch_size: int = typer.Option(8, help="Frames per batch (and per resumable shard)."),
    max_frames: int | None = typer.Option(None, help="Benchmark at most this many frames."),
    templates: Path | None = typer.Option(
        None, help="Prompt templates JSON (default: the seed's templates)."
    ),
    articles: bool = typer.Option(False, help="Fix 'a' -> 'an' before vowels in rendered prompts."),
    no_heatmaps: bool = typer.Option(False, help="Do not save heatmaps."),
    name: str | None = typer.Option(None, help="Model name in tables (default: folder name / variant)."),
    allow_leakage: bool = typer.Option(False, help="Benchmark even on videos the model was trained on."),
    device: str = typer.Option("cpu", help="Torch device."),
) -> None:
    """Zero-shot classification + heatmaps + grounding metrics; writes predictions, heatmaps and tables."""
    from surgkit.grounding.api import bench
    from surgkit.grounding.tables import print_tables

    options = (
        {"vocab": vocab, "variant": variant, "trust_checkpoint": trust_checkpoint}
        if Path(model).is_file()
        else {}
    )
    summary = bench(
        model, dataset, root, task, out, device=device, boxes_root=boxes_root, frame_map=frame_map, regions=regions,
        videos=[v.strip() for v in videos.split(",")] if videos else None, allow_leakage=allow_leakage,
        name=name, model_options=options, tau=tau, threshold=threshold, preprocessing=preprocessing,
        heatmap_target=heatmap_target, triplet_pool=triplet_pool, validity=validity, out_of_pool=out_of_pool,
        gradcam_layer=gradcam_layer, rollout_start=rollout_start, rollout_target=rollout_target,
        rollout_order=rollout_order, batch_size=batch_size, articles=articles,
        templates=str(templates) if templates else None, save_heatmaps=not no_heatmaps, max_frames=max_frames,
    )  # fmt: skip
    print_tables([summary])


@sub.command("table")
def table_cmd(
    runs: list[Path] = typer.Argument(..., help="Run folders of `surgkit ground bench`."),
    markdown: Path | None = typer.Option(None, help="Also write the tables as Markdown to this file."),
    allow_mixed_protocols: bool = typer.Option(
        False, help="Put runs with different protocol choices in one table (the captions say so)."
    ),
) -> None:
    """Compare runs: the seed's Table 1 (instrument, CoPESD as a column) and Table 2 (triplet) layouts."""
    from surgkit.grounding.api import compare
    from surgkit.grounding.tables import print_tables, run_markdown
    from surgkit.utils.io import write_text

    summaries = compare(runs)
    print_tables(summaries, allow_mixed_protocols)
    if markdown:
        write_text(markdown, run_markdown(summaries, allow_mixed_protocols))


@sub.command("figure")
def figure_cmd(
    runs: list[Path] = typer.Argument(..., help="Run folders (one row per model)."),
    out: Path = typer.Option(..., "--out", "-o", help="PNG file."),
    frames: int = typer.Option(4, help="Number of shared frames (columns)."),
    kind: str = typer.Option("primary", help="primary (class prompt) or verb (secondary ARS prompt)."),
) -> None:
    """Heatmap overlays for the same frames across models (the seed's Figure 2)."""
    from surgkit.grounding.visuals import grid_figure

    typer.echo(str(grid_figure(runs, out, n=frames, kind=kind)))


@sub.command("convert-surgvlp")
def convert_cmd(
    checkpoint: Path = typer.Argument(..., help="Official SurgVLP/HecVL/PeskaVLP .pth (or .safetensors)."),
    vocab: Path = typer.Option(..., help="Bio_ClinicalBERT vocab.txt."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Output folder (config.json, model.safetensors, vocab.txt)."
    ),
    variant: str = typer.Option("surgvlp", help="surgvlp, hecvl or peskavlp (metadata)."),
    trust_checkpoint: bool = typer.Option(
        False, help="Allow torch.load(weights_only=True) of a pickle-based file."
    ),
) -> None:
    """Convert an official checkpoint (reference key layout) into a safetensors SurgicalVLM folder."""
    from surgkit.grounding.surgvlp import SurgicalVLMConfig, convert_reference_checkpoint

    folder = convert_reference_checkpoint(
        checkpoint, vocab, out, SurgicalVLMConfig(variant=variant), trust_checkpoint
    )
    typer.echo(str(folder))


@sub.command("train-clip")
@launch_options
def train_clip_cmd(
    world: Path = typer.Option(..., "--world", "-w", help="Synthetic world root (surgkit synth)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output HF CLIP folder."),
    size: str = typer.Option("tiny", help="Model size: test, tiny or small."),
    steps: int = typer.Option(300, help="Optimisation steps."),
    batch_size: int = typer.Option(32, help="Image-caption pairs per step."),
    lr: float = typer.Option(3e-3, help="Peak learning rate (AdamW, cosine decay)."),
    holdout: float = typer.Option(0.34, help="Share of videos held out of training (benchmark them)."),
    loss: str = typer.Option(
        "softmax", help="softmax (CLIP InfoNCE, multi-positive), sigmoid (SigLIP) or both."
    ),
    presence: float = typer.Option(1.0, help="Weight of the instrument-presence term (0 = off)."),
    action_presence: float = typer.Option(
        0.0, help="Weight of the triplet-presence term (every action phrase vs every image; 0 = off)."
    ),
    action_vocab: str = typer.Option(
        "seen",
        help="Triplets of that term: seen (in the training frames), all (CholecT50's 94) or all-idle (100).",
    ),
    action_loss: str = typer.Option(
        "bce", help="That term's loss: bce (per triplet) or softmax (over the triplets)."
    ),
    corpus: bool = typer.Option(
        True,
        "--corpus/--no-corpus",
        help="Also train on the world's pretraining corpus (corpus/, other surgeries).",
    ),
    flip: float = typer.Option(0.0, help="Share of training images mirrored left-right."),
    local: float = typer.Option(0.0, help="Share of batches made of neighbouring frames of one video."),
    seed: int = typer.Option(0, help="Seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    launch: LaunchOptions = None,
) -> None:
    """Train the small CLIP-style dual encoder on the world's image-caption pairs (resumable).

    Multi-process: accelerate launch ... -m surgkit ground train-clip (--batch-size is the global batch).
    """
    from surgkit.grounding.train_clip import TrainSettings, train_clip

    settings = TrainSettings(size=size, steps=steps, batch_size=batch_size, lr=lr, holdout=holdout, loss=loss,
                             presence=presence, action_presence=action_presence, action_vocab=action_vocab,
                             action_loss=action_loss, corpus=corpus, flip=flip,
                             local=local, seed=seed, device=device)  # fmt: skip
    result = train_clip(world, out, settings, launch=launch)
    extra = f", corpus pairs: {result['corpus_pairs']}" if result["corpus_pairs"] else ""
    typer.echo(f"{result['out']}  (held-out videos: {', '.join(result['heldout_videos'])}{extra})")


def register(app: typer.Typer) -> None:
    app.add_typer(sub, name="ground")
