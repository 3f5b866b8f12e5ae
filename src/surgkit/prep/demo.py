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
from surgkit.utils.threads import torch_threads

# fps, frame transform, segment length, backbone input size, segmenter training steps per demo size
SIZES: dict[str, dict[str, Any]] = {
    "tiny": {"fps": 5, "transform": "resize=64x64", "segment": 8, "image": 32, "frames": 4, "seg_steps": 10},
    "demo": {
        "fps": 10,
        "transform": "resize=112x112",
        "segment": 16,
        "image": 64,
        "frames": 8,
        "seg_steps": 150,
    },
}


# Backbone of each modality in the demo (the skill engineer may change these):
#   "surgvista": the video step's pretrained SurgVISTA encoder when there is one (demo size), else a
#                random SurgVISTA-architecture encoder (8-frame clips, a segment's clips averaged);
#   "videoswin": a random tiny Video Swin (the paper's RGB/mask backbone scaled down), whole segment;
#   "i3d":       a random tiny I3D (width 1/8) on 2-channel flow x/y in [-1, 1] (the paper's flow input).
# The paper-faithful defaults (Video Swin-B, I3D at full width, 224², from the Kinetics checkpoints)
# are the CLI defaults, documented in docs/prep.md; on 2 CPU cores they do not fit the demo budget.
DEMO_BACKBONES = {"rgb": "surgvista", "flow": "i3d", "mask": "videoswin"}


def _random_backbone(kind: str, folder: Path, p: dict[str, Any], seed: int) -> tuple[Path, str]:
    """A small randomly initialised backbone saved as a model folder (stand-in for a pretrained one)."""
    import torch

    image, segment = p["image"], p["segment"]
    if (folder / "config.json").is_file():
        pass
    elif kind == "surgvista":
        from surgkit.backbones.surgvista import save_random_encoder

        save_random_encoder(folder, seed, img_size=image, patch_size=16, num_frames=p["frames"], tubelet_size=2,
                            embed_dim=64, depth=2, num_heads=4, drop_path_rate=0.0)  # fmt: skip
    elif kind == "videoswin":
        from surgkit.backbones.videoswin import VideoSwinConfig, VideoSwinModel

        torch.manual_seed(seed)
        cfg = VideoSwinConfig(embed_dim=16, depths=(2, 2), num_heads=(1, 2), window_size=(4, 4, 4), num_classes=0,
                              num_frames=segment, image_size=image)  # fmt: skip
        VideoSwinModel(cfg).eval().save_pretrained(folder)
    elif kind == "i3d":
        from surgkit.backbones.i3d import I3DConfig, InceptionI3d

        torch.manual_seed(seed)
        cfg = I3DConfig(in_channels=2, num_classes=0, width=0.125, num_frames=segment, image_size=image)
        InceptionI3d(cfg).eval().save_pretrained(folder)
    else:
        raise SurgkitError(f"unknown demo backbone '{kind}' (choose surgvista, videoswin, i3d)")
    what = {
        "surgvista": f"SurgVISTA-architecture encoder (2 layers, width 64, {p['frames']}-frame clips)",
        "videoswin": f"Video Swin (embed 16, depths 2-2, window 4x4x4, {segment}-frame segment)",
        "i3d": f"I3D at width 1/8 on 2-channel flow ({segment}-frame segment)",
    }[kind]
    return folder, f"a randomly initialised {what} at {image}², NOT pretrained"


def _demo_backbones(ctx: DemoContext, out: Path, p: dict[str, Any]) -> tuple[dict[str, Path], dict[str, str]]:
    """{modality: backbone folder} and a note per modality, following :data:`DEMO_BACKBONES`."""
    surgvista = ctx.artifacts.get("surgvista_model")
    paths, notes = {}, {}
    for modality, kind in DEMO_BACKBONES.items():
        if kind == "surgvista" and surgvista and not ctx.tiny and (Path(surgvista) / "config.json").is_file():
            paths[modality] = Path(surgvista)
            notes[modality] = f"the SurgVISTA encoder pretrained by the video step ({surgvista})"
        else:
            paths[modality], notes[modality] = _random_backbone(kind, out / f"backbone-{kind}", p, ctx.seed)
    return paths, notes


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
    backbones, backbone_notes = _demo_backbones(ctx, out, p)

    from surgkit.prep.demo_dice import mask_dice

    with torch_threads(1):  # small models are overhead-bound: a second thread only spins (10x CPU measured)
        t0 = time.perf_counter()
        from surgkit.prep.seqstore import list_sequences

        ids = list_sequences(dirs["frames"])
        dice = mask_dice(dirs["frames"], world, ids, out / "segmenter", p["seg_steps"], ctx.seed)
        seconds["mask_dice"] = time.perf_counter() - t0
        timed("features", features.extract, dirs["features"], backbones=backbones, frames_dir=dirs["frames"],
              flow_dir=dirs["flow"], masks_dir=dirs["masks"], segment_frames=p["segment"], device=ctx.device,
              batch_size=16, progress=show)  # fmt: skip
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
        **dice["metrics"],
        **{f"{k}_seconds": round(v, 2) for k, v in seconds.items()},
        "learning": dice["learning"],
    }
    rows = [[v, store.info(v)["num_frames"], store.info(v)["num_segments"], store.info(v)["source"]]
            for v in store.video_ids]  # fmt: skip
    return DemoSection(
        key="prep",
        title="Preprocessing: frames, optical flow, tool masks, segment features",
        summary=(
            f"{len(store.video_ids)} JIGSAWS-format videos of the synthetic world resampled to {p['fps']} fps "
            f"({p['transform']}), Farnebäck flow with the seed settings (±20 px -> 8 bit), tool masks from the "
            f"world's ground truth, and {p['segment']}-frame segment features, one backbone per modality "
            f"(rgb: {DEMO_BACKBONES['rgb']}, flow: {DEMO_BACKBONES['flow']}, mask: {DEMO_BACKBONES['mask']})."
        ),
        metrics=metrics,
        tables=[("Feature store", ["video", "frames", "segments", "source"], rows)],
        figures=[
            (fig, "Sampled frames, their flow rendered as (x map, y map, magnitude) and the tool masks.")
        ],
        notes=[
            *[f"Backbone of {m}: {note}." for m, note in backbone_notes.items()],
            f"Backbone inputs: {'; '.join(f'{m}: {t}' for m, t in store.index['extra']['inputs'].items())}.",
            "Resampling: output frame k at k/fps takes the last source frame with pts <= k/fps (sample and hold).",
            "Flow: cv2.calcOpticalFlowFarneback(0.5, 3, 15, 3, 5, 1.2, 0); u8 = round((clip(f,±20)+20)*255/40); "
            "the last field is repeated so flow has one map per frame (MAQA).",
            f"Masks: the world writes ground truth at 1 fps; {approx} of {n_frames} frames use the nearest "
            "annotated frame (policy 'nearest').",
            f"Segments: {p['segment']} frames, non-overlapping, zero-padded tail marked invalid (T = ceil(N/S)).",
            *dice["notes"],
        ],
    )
