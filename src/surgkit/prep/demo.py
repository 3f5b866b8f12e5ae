"""Demo step: frames -> flow -> masks (synthetic ground truth) -> segment features on the world's JIGSAWS videos.

Needs ``ctx.artifacts["world"]`` (synth step). Puts the feature store path in
``ctx.artifacts["features"]`` (read by the skill step) and the intermediate folders in
``ctx.artifacts["prep"]``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from surgkit.demo import DemoContext, DemoSection
from surgkit.errors import SurgkitError

# fps, frame transform, segment length, backbone input size per demo size
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"fps": 5, "transform": "resize=64x64", "segment": 8, "image": 32, "frames": 4},
    "demo": {"fps": 10, "transform": "resize=112x112", "segment": 32, "image": 64, "frames": 8},
}


def _random_backbone(folder: Path, image: int, frames: int, seed: int) -> tuple[Path, str]:
    """A small randomly initialised SurgVISTA-architecture encoder saved as a model folder (stand-in
    for a pretrained one; no transformers import, so the tiny demo stays fast)."""
    from surgkit.backbones.surgvista import save_random_encoder

    save_random_encoder(folder, seed, img_size=image, patch_size=16, num_frames=frames, tubelet_size=2,
                        embed_dim=64, depth=2, num_heads=4, drop_path_rate=0.0)  # fmt: skip
    note = (
        f"a randomly initialised SurgVISTA-architecture encoder (2 layers, width 64, {image}² input, "
        f"{frames} frames), NOT a pretrained encoder: the features only exercise the pipeline"
    )
    return folder, note


def _figure(frames_dir: Path, flow_dir: Path, masks_dir: Path, vid: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from surgkit.prep.render import render_flow, render_masks
    from surgkit.prep.seqstore import SequenceReader

    frames = SequenceReader(frames_dir / vid)
    flow = SequenceReader(flow_dir / vid)
    masks = SequenceReader(masks_dir / vid)
    picks = [len(flow) // 4, len(flow) // 2, 3 * len(flow) // 4]
    fig, axes = plt.subplots(len(picks), 3, figsize=(6.6, 2.2 * len(picks)))
    for row, k in enumerate(picks):
        images = [
            frames.read(k, k + 1)[0],
            render_flow(flow.read(k, k + 1), float(flow.meta["bound"]))[0],
            render_masks(masks.read(k, k + 1), int(masks.meta["num_classes"]))[0],
        ]
        for col, (img, title) in enumerate(
            zip(images, ("frame", "flow (x, y, |f|)", "tool mask"), strict=True)
        ):
            ax = axes[row, col]
            ax.imshow(img)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
        axes[row, 0].set_ylabel(f"frame {k}", fontsize=8)
    fig.suptitle(vid, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def demo_step(ctx: DemoContext) -> DemoSection:
    from surgkit.prep import features, flow, frames, masks
    from surgkit.prep.store import FeatureStore

    if "world" not in ctx.artifacts:
        raise SurgkitError("the prep demo needs the synthetic world (ctx.artifacts['world'])")
    world = Path(ctx.artifacts["world"])
    videos = sorted((world / "jigsaws").glob("*/video/*.avi"))
    if not videos:
        raise SurgkitError(f"{world}/jigsaws: no JIGSAWS videos in the synthetic world")
    p = SIZES["tiny" if ctx.tiny else "demo"]
    out = Path(ctx.workdir) / "prep"
    dirs = {k: out / k for k in ("frames", "flow", "masks", "features")}
    show = not ctx.tiny
    seconds: dict[str, float] = {}

    def timed(name: str, fn, *args, **kw):
        t0 = time.perf_counter()
        result = fn(*args, **kw)
        seconds[name] = time.perf_counter() - t0
        if not result.ok:
            raise SurgkitError(f"prep {name} failed: {result.failed}")
        return result

    timed("frames", frames.extract, videos, dirs["frames"], fps=p["fps"], transform=p["transform"], fmt="array",
          progress=show)  # fmt: skip
    timed("flow", flow.compute, dirs["frames"], dirs["flow"], progress=show)
    timed("masks", masks.compute, dirs["frames"], dirs["masks"], masks.synth_masks(world), fmt="array",
          progress=show)  # fmt: skip
    surgvista = ctx.artifacts.get("surgvista_model")
    if surgvista and not ctx.tiny and (Path(surgvista) / "config.json").is_file():
        backbone, backbone_note = (
            Path(surgvista),
            f"the SurgVISTA encoder pretrained by the video step ({surgvista})",
        )
    else:
        backbone, backbone_note = _random_backbone(out / "backbone-random", p["image"], p["frames"], ctx.seed)
    import torch

    threads = torch.get_num_threads()
    if ctx.tiny:  # tiny models are overhead-bound: one thread avoids contention on small machines
        torch.set_num_threads(1)
    try:
        timed("features", features.extract, dirs["features"], backbone, frames_dir=dirs["frames"],
              flow_dir=dirs["flow"], masks_dir=dirs["masks"], segment_frames=p["segment"], device=ctx.device,
              batch_size=16, progress=show)  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    ctx.artifacts["features"] = dirs["features"]
    ctx.artifacts["prep"] = {k: str(v) for k, v in dirs.items()}

    from surgkit.prep.seqstore import SequenceReader

    store = FeatureStore(dirs["features"])
    n_frames = sum(SequenceReader(dirs["frames"] / v).num_items for v in store.video_ids)
    approx = sum(int(SequenceReader(dirs["masks"] / v).meta["approximated_frames"]) for v in store.video_ids)
    segs = [store.info(v)["num_segments"] for v in store.video_ids]
    figs = Path(ctx.workdir) / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    fig = _figure(dirs["frames"], dirs["flow"], dirs["masks"], store.video_ids[0], figs / "prep_samples.png")
    metrics = {
        "videos": len(store.video_ids),
        "frames": n_frames,
        "flow_pairs": n_frames - len(store.video_ids),
        "segments": sum(segs),
        "segments_per_video_min_max": f"{min(segs)}-{max(segs)}",
        "feature_dim": {m: store.feature_dim(m) for m in store.modalities},
        "masks_from_nearest_annotated_frame": f"{approx}/{n_frames}",
        **{f"{k}_seconds": round(v, 2) for k, v in seconds.items()},
    }
    rows = [[v, store.info(v)["num_frames"], store.info(v)["num_segments"], store.info(v)["source"]]
            for v in store.video_ids]  # fmt: skip
    return DemoSection(
        key="prep",
        title="Preprocessing: frames, optical flow, tool masks, segment features",
        summary=(
            f"{len(store.video_ids)} JIGSAWS-format videos of the synthetic world resampled to {p['fps']} fps "
            f"({p['transform']}), Farnebäck flow with the seed settings (±20 px -> 8 bit), tool masks from the "
            f"world's ground truth, and {p['segment']}-frame segment features for rgb/flow/mask from {backbone_note}."
        ),
        metrics=metrics,
        tables=[("Feature store", ["video", "frames", "segments", "source"], rows)],
        figures=[
            (fig, "Sampled frames, their flow rendered as (x map, y map, magnitude) and the tool masks.")
        ],
        notes=[
            f"Backbone: {backbone_note}.",
            "Resampling: output frame k at k/fps takes the last source frame with pts <= k/fps (sample and hold).",
            "Flow: cv2.calcOpticalFlowFarneback(0.5, 3, 15, 3, 5, 1.2, 0); u8 = round((clip(f,±20)+20)*255/40); "
            "the last field is repeated so flow has one map per frame (MAQA).",
            f"Masks: the world writes ground truth at 1 fps; {approx} of {n_frames} frames use the nearest "
            "annotated frame (policy 'nearest').",
            f"Segments: {p['segment']} frames, non-overlapping, zero-padded tail marked invalid (T = ceil(N/S)).",
        ],
    )
