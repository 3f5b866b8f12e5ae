"""Demo step: train the embedded tiny CLIP on the synthetic world and benchmark it next to an untrained twin.

Both models are HF ``CLIPModel`` folders with the same tokenizer and architecture; they are
benchmarked zero-shot on the world's held-out (test) videos only, for the instrument task
(tau-AC, tau-AA, accuracy) and the triplet task (ARS, V/T, Z/V, component accuracies), with
Chefer rollout heatmaps and overlay grids as in the seed's Figure 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from surgkit.demo import DemoContext, DemoSection
from surgkit.errors import SurgkitError

SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"clip": "test", "steps": 12, "batch_size": 16, "max_frames": 6, "batch": 6},
    "demo": {"clip": "tiny", "steps": 400, "batch_size": 32, "max_frames": 48, "batch": 8},
}


def _untrained_twin(trained: Path, out: Path, size: str, seed: int) -> Path:
    """A randomly initialised CLIP with the trained model's tokenizer and size (the baseline)."""
    from transformers import AutoTokenizer

    from surgkit.grounding.tiny_clip import build_clip, save_clip_folder

    tokenizer = AutoTokenizer.from_pretrained(str(trained))
    return save_clip_folder(build_clip(tokenizer, size, seed=seed + 1), tokenizer, out)


def _eval_videos(world: Path, heldout: list[str]) -> list[str]:
    from surgkit.grounding.sources import world_splits

    try:
        test = world_splits(world).get("test", [])
    except SurgkitError:
        test = []
    return test or heldout


def demo_step(ctx: DemoContext) -> DemoSection:
    from surgkit.grounding.api import bench
    from surgkit.grounding.tables import instrument_table, triplet_accuracy_table, triplet_table
    from surgkit.grounding.train_clip import TrainSettings, train_clip
    from surgkit.grounding.visuals import grid_figure

    if "world" not in ctx.artifacts:
        raise SurgkitError("the grounding demo needs the synthetic world (ctx.artifacts['world'])")
    world = Path(ctx.artifacts["world"])
    cfg = SIZES["tiny" if ctx.tiny else "demo"]
    base = Path(ctx.workdir) / "grounding"
    dev = "cpu" if ctx.device == "cpu" else ctx.device
    trained_dir = base / "tiny-clip"
    result = train_clip(
        world,
        trained_dir,
        TrainSettings(
            size=cfg["clip"],
            steps=cfg["steps"],
            batch_size=cfg["batch_size"],
            seed=ctx.seed,
            device=dev,
            save_every=max(50, cfg["steps"]),
        ),  # fmt: skip
    )
    untrained_dir = _untrained_twin(trained_dir, base / "untrained-clip", cfg["clip"], ctx.seed)
    videos = _eval_videos(world, result["heldout_videos"])
    runs: dict[str, dict[str, Any]] = {}
    for task in ("instrument", "triplet"):
        for label, folder in (("trained", trained_dir), ("untrained", untrained_dir)):
            out = base / "runs" / f"{label}-{task}"
            runs[f"{label}-{task}"] = bench(
                str(folder), "synth", world, task, out, device=dev, videos=videos,
                name=f"tiny-CLIP ({label})", max_frames=cfg["max_frames"], batch_size=cfg["batch"],
            )  # fmt: skip
    inst = [runs["trained-instrument"], runs["untrained-instrument"]]
    trip = [runs["trained-triplet"], runs["untrained-triplet"]]
    figures = [
        (grid_figure([base / "runs" / "trained-instrument", base / "runs" / "untrained-instrument"],
                     base / "figure_instrument.png", n=4),
         "Instrument prompt heatmaps (Chefer rollout), attended region (white, τ = 0.5) and GT boxes (green); "
         "rows: trained vs untrained tiny CLIP, same held-out frames."),
        (grid_figure([base / "runs" / "trained-triplet", base / "runs" / "untrained-triplet"],
                     base / "figure_verb.png", n=4, kind="verb"),
         "Secondary prompt 'I am performing {predicted verb}' heatmaps used for ARS, with GT boxes."),
    ]  # fmt: skip
    ctx.artifacts["grounding_clip"] = str(trained_dir)

    def overall(run: dict[str, Any], *keys: str) -> dict[str, Any]:
        return {k: run["overall"].get(k) for k in keys}

    metrics = {
        "trained_instrument": overall(runs["trained-instrument"], "accuracy", "tau_ac", "tau_aa", "frames"),
        "untrained_instrument": overall(
            runs["untrained-instrument"], "accuracy", "tau_ac", "tau_aa", "frames"
        ),
        "trained_triplet": overall(
            runs["trained-triplet"], "accuracy", "verb_accuracy", "ars", "v_over_t", "z_over_v"
        ),
        "untrained_triplet": overall(
            runs["untrained-triplet"], "accuracy", "verb_accuracy", "ars", "v_over_t", "z_over_v"
        ),  # fmt: skip
        "train_loss_first": result["loss_first"],
        "train_loss_last": result["loss_last_mean"],
        "train_pairs": result["pairs"],
    }
    ti, ui = runs["trained-instrument"]["overall"], runs["untrained-instrument"]["overall"]
    summary = (
        f"A {cfg['clip']}-size CLIP trained for {cfg['steps']} steps on {result['pairs']} image-caption pairs of the "
        f"world's training videos (loss {result['loss_first']:.3f} -> {result['loss_last_mean']:.3f}) reaches "
        f"instrument accuracy {ti['accuracy']:.3f} (untrained {ui['accuracy']:.3f}), τ-AC {ti['tau_ac']:.3f} "
        f"(untrained {ui['tau_ac']:.3f}) and τ-AA {ti['tau_aa']:.3f} (untrained {ui['tau_aa']:.3f}) on the held-out "
        f"video(s) {', '.join(videos)}."
    )
    protocol = runs["trained-instrument"]["protocol"]
    notes = [
        "Zero-shot: prompts 'an image showing a {instrument} in use', 'I use a {instrument} to {verb} the {target}' "
        "(94 non-null CholecT50 triplets) and 'I am performing {verb}'; class embedding = mean of L2-normalised "
        "prompt embeddings, re-normalised; argmax with ties to the lowest index.",
        "Heatmaps: Chefer gradient-weighted attention rollout over all vision blocks, target logit_scale.exp()·cos, "
        "for the predicted class; full-frame resize to the model input; mapped back to frame pixels and min-max "
        "normalised; attended set = heatmap ≥ τ = 0.5; an all-zero heatmap scores 0 and is counted.",
        "ARS only on valid frames (a GT triplet has the predicted instrument and verb), from the separate verb "
        "heatmap, inside the GT box of the predicted instrument. V/T = valid/total, Z/V = zero-ARS/valid (%).",
        f"Synthetic world: Cholec80-boxes frame numbers are 25-fps; the triplet task joins them with the CholecT50 "
        f"1-fps labels by frame // 25 ({runs['trained-triplet']['protocol'].get('join', {}).get('kept')} frames kept).",
        f"Training used only the world's train videos ({', '.join(result['train_videos'])}); the benchmark "
        f"refuses those videos by default (leakage guard). Evaluated on at most {cfg['max_frames']} frames per run.",
        f"Heatmap method {protocol['heatmap_method']}; multi-label rule: {protocol['multi_label_rule']}.",
    ]
    return DemoSection(
        key="grounding",
        title="VLM grounding benchmark (τ-AC, τ-AA, ARS)",
        summary=summary,
        metrics=metrics,
        tables=[instrument_table(inst), triplet_table(trip), triplet_accuracy_table(trip)],
        figures=figures,
        notes=notes,
    )
