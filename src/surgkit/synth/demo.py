"""Demo step: generate the synthetic world and show what it contains."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from surgkit.demo import DemoContext, DemoSection
from surgkit.errors import SurgkitError
from surgkit.synth.generate import MANIFEST, MANIFEST_FORMAT, generate_world, generator_fingerprint
from surgkit.synth.world import World
from surgkit.utils.ids import safe_reset
from surgkit.utils.inputs import read_json
from surgkit.utils.lock import LOCK_NAME
from surgkit.vocab import CHOLEC80_PHASES, INSTRUMENTS, TRIPLET_NAMES

PALETTE = np.array([[255, 80, 80], [80, 255, 80], [80, 160, 255]], np.float32)


WORLD_ENTRIES = {
    "cholec80", "cholec80_boxes", "cholect50", "copesd", "endoscapes", "endovis18_vqla", "jigsaws",
    "masks", "truth", "vlm", "corpus", MANIFEST, ".synth", LOCK_NAME,
}  # fmt: skip


def _prepare(out: Path, preset: str, seed: int) -> dict | None:
    """Reuse an identical world already in ``out``; clear a different one; refuse foreign folders.

    A folder counts as a world only when its ``world.json`` is a surgkit world manifest and it holds
    nothing but what the generator writes; only those entries are removed (each strictly inside
    ``out``), so a mistyped output folder never loses anything else.
    """
    from surgkit import __version__

    manifest = out / MANIFEST
    if manifest.is_file():
        old = read_json(manifest)
        foreign = sorted(p.name for p in out.iterdir() if p.name not in WORLD_ENTRIES)
        if not isinstance(old, dict) or old.get("format") != MANIFEST_FORMAT or foreign:
            what = (
                f"it also holds {', '.join(foreign[:3])}" if foreign else "world.json is not a surgkit world"
            )
            raise SurgkitError(f"{out}: not a synthetic world folder ({what}); remove it or use another one")
        current = (preset, seed, __version__, generator_fingerprint())
        if (old.get("preset"), old.get("seed"), old.get("surgkit_version"), old.get("generator")) == current:
            return old
        for entry in sorted(out.iterdir()):
            if entry.name != LOCK_NAME:
                safe_reset(entry, out)
    elif out.exists() and any(p.name != LOCK_NAME for p in out.iterdir()):
        raise SurgkitError(f"{out}: exists and is not a synthetic world (no {MANIFEST}); remove it first")
    return None


def _sample_grid(world: World, path: Path, n: int = 8) -> None:
    import cv2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan = world.lap_plan(0)
    renderer = world.render(plan)
    frames = []
    for phase in plan.phase_order:
        idx = np.nonzero(plan.phase == phase)[0]
        for t in idx[len(idx) // 3 :: max(1, len(idx) // 3)][:2]:
            frames.append(int(t))
    frames = sorted(frames)[:n]
    cols = 4
    rows = int(np.ceil(len(frames) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.6 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, t in zip(np.ravel(axes), frames, strict=False):
        rgb, truth = renderer.render(t)
        img = rgb.astype(np.float32)
        for inst in truth.instruments:
            m = truth.instance_mask == inst.slot + 1
            img[m] = 0.55 * img[m] + 0.45 * PALETTE[inst.slot % 3]
        img = img.astype(np.uint8)
        for inst in truth.instruments:
            x1, y1, x2, y2 = inst.box
            cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), tuple(int(c) for c in PALETTE[inst.slot % 3]), 1)
        ax.imshow(img)
        label = "\n".join(TRIPLET_NAMES[i.triplet] for i in truth.instruments) or "no instrument"
        ax.set_title(f"t={t} {CHOLEC80_PHASES[truth.phase]}\n{label}", fontsize=7)
    fig.suptitle(f"{plan.name}: frames with instance masks, boxes and triplets", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _timeline(world_dir: Path, manifest: dict, path: Path) -> None:
    """Phase bars of every video, read from the truth layout (no re-planning of the videos)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [v["name"] for v in manifest["videos"]]
    n = len(names)
    fig, ax = plt.subplots(figsize=(8, 0.45 * n + 1.2))
    cmap = plt.get_cmap("tab10")
    for i, name in enumerate(names):
        truth = read_json(world_dir / "truth" / f"{name}.json")
        fps = float(truth["fps"])
        for seg in truth["phases"]:
            s, e = int(seg["start"]), int(seg["end"]) + 1
            ax.barh(i, (e - s) / fps, left=s / fps, color=cmap(int(seg["phase"])), height=0.7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("seconds")
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(k)) for k in range(len(CHOLEC80_PHASES))]
    ax.legend(handles, CHOLEC80_PHASES, fontsize=6, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.35))
    ax.invert_yaxis()
    ax.set_title("Phase timelines (Cholec80 grammar)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _skill_scatter(manifest: dict, path: Path) -> float:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy.stats import spearmanr

    fig, ax = plt.subplots(figsize=(5, 3.6))
    rho = float("nan")
    for key, marker, label in (("trials", "o", "JIGSAWS trials"), ("videos", "s", "cholecystectomies")):
        rows = manifest.get(key, [])
        if not rows:
            continue
        x = [r["latent_skill"] for r in rows]
        y = [r["grs"] for r in rows]
        ax.scatter(x, y, marker=marker, s=18, alpha=0.75, label=label)
        if key == "trials" and len(set(x)) > 1:
            rho = float(spearmanr(x, y)[0])
    ax.set_xlabel("latent skill")
    ax.set_ylabel("GRS (sum of 6 OSATS items)")
    ax.set_ylim(5, 31)
    ax.legend(fontsize=7)
    ax.set_title(f"GRS vs latent skill (JIGSAWS Spearman {rho:.2f})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return rho


def demo_step(ctx: DemoContext) -> DemoSection:
    """Generate ``ctx.workdir / "world"`` (tiny or demo preset) and summarise it."""
    preset = "tiny" if ctx.tiny else "demo"
    out = Path(ctx.workdir) / "world"
    t0 = time.perf_counter()
    manifest = _prepare(out, preset, ctx.seed)
    reused = manifest is not None
    if manifest is None:
        manifest = generate_world(out, preset=preset, seed=ctx.seed, overwrite=True)
    seconds = time.perf_counter() - t0
    ctx.artifacts["world"] = out
    world = World(seed=ctx.seed, preset=preset)
    figs = Path(ctx.workdir) / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    _sample_grid(world, figs / "synth_frames.png")
    _timeline(out, manifest, figs / "synth_phases.png")
    rho = _skill_scatter(manifest, figs / "synth_skill.png")
    frames = manifest["frames"]
    metrics = {
        "preset": preset,
        "lap_videos": len(manifest["videos"]),
        "jigsaws_trials": len(manifest["trials"]),
        "frames": frames,
        "generation_frames_per_s": None if reused else round(frames / max(seconds, 1e-9), 1),
        "spearman_grs_vs_latent_skill": round(rho, 3),
        "layouts": ", ".join(manifest["layouts"]),
    }
    rows = [
        [name, info.get("path", ""), json.dumps({k: v for k, v in info.items() if k != "path"})[:90]]
        for name, info in manifest["layouts"].items()
    ]
    return DemoSection(
        key="synth",
        title="Synthetic surgical world",
        summary=(
            f"{len(manifest['videos'])} cholecystectomy videos and {len(manifest['trials'])} JIGSAWS trials "
            f"({frames} frames) written in native dataset layouts under {out}"
            + (" (reused)" if reused else f" in {seconds:.1f} s")
            + f". Instruments: {', '.join(INSTRUMENTS)}."
        ),
        metrics=metrics,
        tables=[("Layouts written", ["layout", "path", "summary"], rows)],
        figures=[
            (
                figs / "synth_frames.png",
                "Sample frames: instance masks, boxes and the CholecT50 triplets of each tool.",
            ),
            (figs / "synth_phases.png", "Phase timeline of every video."),
            (figs / "synth_skill.png", "GRS (rater-like OSATS sum) against the surgeons' latent skill."),
        ],
        notes=[
            f"preset={preset}, seed={ctx.seed}; same seed and preset give byte-identical annotation files.",
            "Skill scores are derived from the generated motion (jerk, path, tremor, idle, out-of-view, errors) "
            "with rater noise; RGB is corrupted by camera motion, smoke and lighting independently of skill.",
            "Boxes are (x1, y1, x2, y2) with exclusive x2/y2; VQLA boxes use the 1280x1024 convention.",
        ],
    )
