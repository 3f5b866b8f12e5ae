"""``surgkit prep frames|flow|masks|features``: thin wrappers over the surgkit.prep Python API.

Every command exits 0 when all videos finished (or were already finished), 1 when any video
failed (each failure is printed with file, frame and reason), 2 for a usage error.
"""

from __future__ import annotations

from pathlib import Path

import typer

from surgkit.prep.shard import SHARD_HELP


def _finish(result) -> None:
    from surgkit.utils.progress import console

    console.print(result.summary(), highlight=False, markup=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(code=1)


def register(app: typer.Typer) -> None:
    sub = typer.Typer(
        help="Video preprocessing: frames, optical flow, tool masks, segment features (resumable).",
        no_args_is_help=True,
    )
    app.add_typer(sub, name="prep")

    @sub.command("frames")
    def frames_cmd(
        inputs: list[Path] = typer.Argument(..., help="Video files and/or folders (searched recursively)."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (one sub-folder per video)."),
        fps: str = typer.Option(None, help="Target fps (e.g. 10, 1, 30000/1001); default: every frame."),
        transform: str = typer.Option(None, help="e.g. 'black_crop,resize=224x224' (see docs/prep.md)."),
        fmt: str = typer.Option(None, "--format", help="jpg, png or array (default jpg or the preset's)."),
        preset: str = typer.Option(None, help="surgvista (1 fps, black crop, 224², png) or surgfusion."),
        pattern: str = typer.Option(None, help="File name pattern over 'index' (default {index:05d})."),
        start_number: int = typer.Option(0, help="Number of the first frame file (0 or 1)."),
        jpeg_quality: int = typer.Option(95, help="JPEG quality."),
        chunk_size: int = typer.Option(None, help="Frames per checkpoint chunk (default: ~64 MiB, 8..256)."),
        tolerate_errors: bool = typer.Option(
            False, "--tolerate-decode-errors", help="Warn instead of failing on FFmpeg decode errors."
        ),
        workers: int = typer.Option(None, help="Worker processes (default 2)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Recompute finished videos."),
        shard: str = typer.Option(None, "--shard", help=SHARD_HELP),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        """Decode videos, resample to a target fps (exact timestamps), crop/resize, write frames."""
        from surgkit.prep.frames import extract

        _finish(
            extract(
                inputs,
                out,
                fps=fps,
                transform=transform,
                fmt=fmt,
                preset=preset,
                pattern=pattern,
                start_number=start_number,
                jpeg_quality=jpeg_quality,
                chunk_size=chunk_size,
                strict=not tolerate_errors,
                workers=workers,
                overwrite=overwrite,
                progress=not quiet,
                shard=shard,
            )  # fmt: skip
        )

    @sub.command("flow")
    def flow_cmd(
        frames: Path = typer.Argument(..., help="Frames folder written by `surgkit prep frames`."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        method: str = typer.Option("farneback", help="farneback (seed settings) or dis."),
        bound: float = typer.Option(20.0, help="Clip bound b in px; maps = (clip(f,-b,b)+b)*255/2b."),
        fmt: str = typer.Option("array", "--format", help="array, png or jpg."),
        chunk_size: int = typer.Option(64, help="Pairs per parallel work unit / checkpoint."),
        size: str = typer.Option(None, help="Resize frames to WxH before flow."),
        dis_preset: str = typer.Option("fast", help="DIS preset: ultrafast, fast, medium."),
        workers: int = typer.Option(None, help="Worker processes (default 2)."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Recompute finished videos."),
        shard: str = typer.Option(None, "--shard", help=SHARD_HELP),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Farnebäck (or DIS) optical flow between consecutive frames as 8-bit x/y maps."""
        from surgkit.prep.flow import compute

        _finish(
            compute(
                frames,
                out,
                method=method,
                bound=bound,
                fmt=fmt,
                chunk_size=chunk_size,
                size=size,
                dis_preset=dis_preset,
                workers=workers,
                overwrite=overwrite,
                progress=not quiet,
                shard=shard,
            )  # fmt: skip
        )

    @sub.command("masks")
    def masks_cmd(
        frames: Path = typer.Argument(..., help="Frames folder written by `surgkit prep frames`."),
        out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
        annotations: Path = typer.Option(None, help="Dataset annotation root (source a)."),
        ann_pattern: str = typer.Option(
            "{video}/{frame:05d}.png", help="Mask file under the root: {video}, {trial}, {frame}."
        ),
        values: str = typer.Option(None, help="Pixel value to class map, e.g. '255:1'."),
        frame_offset: int = typer.Option(0, help="Added to the source frame index in file names."),
        synth: Path = typer.Option(None, help="Synthetic world root: use its ground truth (source b)."),
        model: str = typer.Option(None, help="HF segmentation model folder or id (source c)."),
        sam2: str = typer.Option(None, help="SAM 2 video model folder or HF id (source d; needs --prompts)."),
        prompts: Path = typer.Option(None, help="SAM 2 prompts JSON: boxes/points per video (docs/prep.md)."),
        threshold: float = typer.Option(0.0, help="SAM 2 mask-logit threshold."),
        input_size: int = typer.Option(224, help="Model input size."),
        batch_size: int = typer.Option(16, help="Model batch size."),
        device: str = typer.Option("cpu"),
        missing: str = typer.Option(None, help="No mask file for a frame: error, nearest or empty."),
        num_classes: int = typer.Option(None, help="Classes incl. background (for rendering)."),
        fmt: str = typer.Option("png", "--format", help="png or array."),
        chunk_size: int = typer.Option(64),
        overwrite: bool = typer.Option(False, "--overwrite"),
        shard: str = typer.Option(None, "--shard", help=SHARD_HELP),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Tool masks per frame from annotations, the synthetic world's truth, or a segmentation model."""
        from surgkit.errors import SurgkitError
        from surgkit.prep import masks

        chosen = [x for x in (annotations, synth, model, sam2) if x is not None]
        if len(chosen) != 1:
            raise SurgkitError("give exactly one mask source: --annotations, --synth, --model or --sam2")
        if (sam2 is None) != (prompts is None):
            raise SurgkitError("--sam2 and --prompts go together")
        if annotations is not None:
            source = masks.AnnotationMasks(
                annotations, ann_pattern, values=masks.parse_values(values), missing=missing or "error",
                frame_offset=frame_offset,
            )  # fmt: skip
        elif synth is not None:
            source = masks.synth_masks(synth, missing=missing or "nearest")
        elif sam2 is not None:
            from surgkit.prep.sam2 import Sam2Masks

            source = Sam2Masks(sam2, prompts, device=device, threshold=threshold)
        else:
            source = masks.ModelMasks(model, input_size=input_size, batch_size=batch_size, device=device)
        _finish(
            masks.compute(
                frames,
                out,
                source,
                fmt=fmt,
                chunk_size=chunk_size,
                num_classes=num_classes,
                overwrite=overwrite,
                progress=not quiet,
                shard=shard,
            )  # fmt: skip
        )

    @sub.command("masks-eval")
    def masks_eval_cmd(
        pred: Path = typer.Argument(..., help="Masks folder to score (written by `surgkit prep masks`)."),
        frames: Path = typer.Option(
            ..., help="The frames folder the masks were made from (source frame numbers)."
        ),
        synth: Path = typer.Option(None, help="Synthetic world root: score against its exact masks."),
        annotations: Path = typer.Option(None, help="Annotation root (with --ann-pattern, --values)."),
        ann_pattern: str = typer.Option("{video}/{frame:05d}.png", help="Mask file under the root."),
        values: str = typer.Option(None, help="Pixel value to class map, e.g. '255:1'."),
        num_classes: int = typer.Option(..., help="Classes including background."),
    ) -> None:
        """Dice of predicted masks against exact annotations (annotated frames only), as JSON."""
        from surgkit.errors import SurgkitError
        from surgkit.prep import masks
        from surgkit.utils.io import to_json

        if (synth is None) == (annotations is None):
            raise SurgkitError("give exactly one truth: --synth or --annotations")
        truth = (
            masks.AnnotationMasks(synth, masks.SYNTH_PATTERN)
            if synth is not None
            else masks.AnnotationMasks(annotations, ann_pattern, values=masks.parse_values(values))
        )
        typer.echo(to_json(masks.evaluate(pred, frames, truth, num_classes=num_classes)))

    @sub.command("features")
    def features_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Feature store folder."),
        backbone: str = typer.Option(
            None,
            help="Backbone of every modality: model folder (Video Swin, I3D, VideoMAE, SurgVISTA), "
            "published checkpoint or HF id.",
        ),
        rgb_backbone: str = typer.Option(None, help="Backbone of the rgb modality (paper: Video Swin-B)."),
        flow_backbone: str = typer.Option(
            None, help="Backbone of the flow modality (paper: I3D flow, 2-channel x/y)."
        ),
        mask_backbone: str = typer.Option(None, help="Backbone of the mask modality (paper: Video Swin-B)."),
        trust_pickle: bool = typer.Option(
            False,
            "--trust-pickle",
            help="Allow a pickle-based published .pth (torch.load weights_only=True).",
        ),
        frames: Path = typer.Option(None, help="Frames folder (rgb modality)."),
        flow: Path = typer.Option(None, help="Flow folder (flow modality)."),
        masks: Path = typer.Option(None, help="Masks folder (mask modality)."),
        segment_frames: int = typer.Option(32, help="Frames per segment."),
        stride_frames: int = typer.Option(None, help="Segment stride (default = segment, no overlap)."),
        tail: str = typer.Option("pad", help="pad (zero-pad the last segment) or drop (T = floor)."),
        temporal: str = typer.Option("split", help="split or subsample a segment into backbone clips."),
        batch_size: int = typer.Option(4, help="Clips per backbone call."),
        device: str = typer.Option("cpu"),
        overwrite: bool = typer.Option(False, "--overwrite"),
        shard: str = typer.Option(None, "--shard", help=SHARD_HELP),
        quiet: bool = typer.Option(False, "--quiet", "-q"),
    ) -> None:
        """Per-segment features from frozen video backbones (one per modality), one safetensors per video and modality."""
        from surgkit.prep.features import extract

        per = {"rgb": rgb_backbone, "flow": flow_backbone, "mask": mask_backbone}
        _finish(
            extract(
                out,
                backbone,
                backbones={m: b for m, b in per.items() if b is not None},
                trust_pickle=trust_pickle,
                frames_dir=frames,
                flow_dir=flow,
                masks_dir=masks,
                segment_frames=segment_frames,
                stride_frames=stride_frames,
                tail=tail,
                temporal=temporal,
                batch_size=batch_size,
                device=device,
                overwrite=overwrite,
                progress=not quiet,
                shard=shard,
            )  # fmt: skip
        )

    @sub.command("status")
    def status_cmd(
        out: Path = typer.Argument(..., help="Output folder of a prep command (sharded or not)."),
        as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
        by_shard: bool = typer.Option(
            False, "--by-shard", help="Also list each shard and the shards not run."
        ),
    ) -> None:
        """Done / failed / partial / missing per video, merged over all shards; exit 1 unless all are done."""
        from surgkit.prep.status import prep_status, render, shard_report
        from surgkit.utils.io import to_json

        report = prep_status(out)
        shards = shard_report(out) if by_shard else None
        if as_json:
            typer.echo(to_json(report if shards is None else {**report, **shards}))
        else:
            typer.echo(render(report, shards))
        if report["counts"]["done"] != len(report["videos"]):
            raise typer.Exit(code=1)
