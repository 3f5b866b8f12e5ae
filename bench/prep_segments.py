"""Segments/s of surgkit's Video Swin-T and I3D (RGB, flow) against the reference implementations.

The references are the unmodified files of the public repositories, read from paths the caller
gives (never committed here):

* Video Swin: ``mmaction/models/backbones/swin_transformer.py`` of SwinTransformer/Video-Swin-Transformer
  (commit db018fb). Its framework imports are replaced by minimal stand-ins, as the golden fixture
  was made: timm's DropPath (identity in eval) and trunc_normal_ (torch's), mmcv's checkpoint
  loader, mmaction's logger and BACKBONES registry (unused), and einops' ``rearrange`` (the file
  only uses pure axis permutations, done here with ``permute``).
* I3D: ``pytorch_i3d.py`` of piergiaj/pytorch-i3d (commit 05783d1), pure PyTorch, no stand-in.

Both models get the same random weights (the state dicts have the same keys) and the same input:
one 32-frame segment at 224² (Video Swin-T: 3 channels, ImageNet-normalised scale; I3D: 3 or 2
channels in [-1, 1]), CPU, float32, eval, ``torch.inference_mode``. Each is timed ``repeats``
times interleaved with the other (the machine may be shared); the report gives the best time,
segments/s = 1 / best, the ratio surgkit/reference (wall, and process CPU time over all threads,
which other jobs disturb less) and the max |Δ| of the two outputs (the
reference's feature: Video Swin map averaged over T', H', W'; I3D ``extract_features`` averaged
over time).
"""

from __future__ import annotations

import importlib.util
import sys
import time
import types
from pathlib import Path


def _rearrange(x, pattern: str):
    """einops.rearrange for pure permutations ('b c d h w -> b d h w c')."""
    src, dst = (side.split() for side in pattern.split("->"))
    return x.permute(*[src.index(name) for name in dst])


def _stub_modules() -> None:
    import torch

    def module(name: str, **attrs) -> types.ModuleType:
        m = sys.modules.get(name) or types.ModuleType(name)
        m.__dict__.update(attrs)
        sys.modules[name] = m
        return m

    class Registry:
        def register_module(self, *a, **k):
            return (lambda cls: cls) if not a else a[0]

    module("timm")
    module("timm.models")
    module(
        "timm.models.layers",
        DropPath=lambda p=0.0: torch.nn.Identity(),
        trunc_normal_=torch.nn.init.trunc_normal_,
    )
    module("mmcv")
    module("mmcv.runner", load_checkpoint=lambda *a, **k: None)
    module("mmaction", __path__=[])
    module("mmaction.utils", get_root_logger=lambda *a, **k: None)
    module("mmaction.models", __path__=[])
    module("mmaction.models.builder", BACKBONES=Registry())
    module("mmaction.models.backbones", __path__=[])
    module("einops", rearrange=_rearrange)


def load_reference(path: str | Path, name: str) -> types.ModuleType:
    """Import a reference file as ``name`` (a package path, so its relative imports resolve)."""
    spec = importlib.util.spec_from_file_location(name, str(path))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def _time(fn, x) -> tuple[float, float]:
    """(wall seconds, process CPU seconds over all threads) of one call."""
    import torch

    with torch.inference_mode():
        t0, c0 = time.perf_counter(), time.process_time()
        fn(x)
        return time.perf_counter() - t0, time.process_time() - c0


def _compare(ours, ref, x, repeats: int) -> dict:
    import torch

    with torch.inference_mode():
        a, b = ours(x), ref(x)  # also the warm-up (allocator, oneDNN primitives)
    diff = float((a - b).abs().max())
    t_ours: list[tuple[float, float]] = []
    t_ref: list[tuple[float, float]] = []
    for _ in range(repeats):  # interleaved: both see the same machine load
        t_ref.append(_time(ref, x))
        t_ours.append(_time(ours, x))
    best_o, best_r = min(t for t, _ in t_ours), min(t for t, _ in t_ref)
    cpu_o, cpu_r = min(c for _, c in t_ours), min(c for _, c in t_ref)
    return {
        "surgkit_segments_per_s": round(1 / best_o, 3),
        "reference_segments_per_s": round(1 / best_r, 3),
        "ratio": round(best_r / best_o, 3),
        "cpu_seconds_ratio": round(cpu_r / cpu_o, 3),  # less sensitive to other jobs on the machine
        "surgkit_seconds": [round(t, 3) for t, _ in t_ours],
        "reference_seconds": [round(t, 3) for t, _ in t_ref],
        "surgkit_cpu_seconds": [round(c, 3) for _, c in t_ours],
        "reference_cpu_seconds": [round(c, 3) for _, c in t_ref],
        "max_abs_diff": diff,
    }


def bench_videoswin(ref_file: str | Path, repeats: int, frames: int = 32, size: int = 224) -> dict:
    import torch

    from surgkit.backbones.videoswin import VideoSwinModel, preset

    _stub_modules()
    ref_mod = load_reference(ref_file, "mmaction.models.backbones.swin_transformer")
    torch.manual_seed(0)
    ref = ref_mod.SwinTransformer3D(
        patch_size=(2, 4, 4), embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=(8, 7, 7),
        patch_norm=True, drop_path_rate=0.1,
    )  # fmt: skip
    ref.eval()  # returns None in the reference: not chained
    ours = VideoSwinModel(preset("swin-t", num_classes=0)).eval()
    missing, unexpected = ours.backbone.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(1, 3, frames, size, size)
    out = _compare(ours.features, lambda v: ref(v).mean(dim=(2, 3, 4)), x, repeats)
    out["model"] = f"Swin-T (window 8x7x7), 1 x 3 x {frames} x {size} x {size}"
    return out


def bench_i3d(ref_file: str | Path, repeats: int, channels: int, frames: int = 32, size: int = 224) -> dict:
    import torch

    from surgkit.backbones.i3d import I3DConfig, InceptionI3d

    ref_mod = load_reference(ref_file, "pytorch_i3d_reference")
    torch.manual_seed(0)
    ref = ref_mod.InceptionI3d(400, in_channels=channels).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so that folding them is exercised
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    ours = InceptionI3d(I3DConfig(in_channels=channels)).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.fuse()
    x = torch.rand(1, channels, frames, size, size) * 2 - 1
    out = _compare(ours.features, lambda v: ref.extract_features(v).mean(dim=(2, 3, 4)), x, repeats)
    out["model"] = f"I3D {'RGB' if channels == 3 else 'flow'}, 1 x {channels} x {frames} x {size} x {size}"
    return out


def bench_segments(
    videoswin_ref: str | None, i3d_ref: str | None, repeats: int, threads: int, quick: bool
) -> dict:
    """All three comparisons (``quick``: 16 frames at 112², a smoke run, not the reported numbers)."""
    import torch

    torch.set_num_threads(threads)
    frames, size = (16, 112) if quick else (32, 224)
    out: dict = {"threads": threads, "frames": frames, "size": size}
    if videoswin_ref:
        out["videoswin_t"] = bench_videoswin(videoswin_ref, repeats, frames, size)
    else:
        out["videoswin_t"] = "skipped: pass --videoswin-ref mmaction/models/backbones/swin_transformer.py"
    if i3d_ref:
        out["i3d_rgb"] = bench_i3d(i3d_ref, repeats, 3, frames, max(size, 193))
        out["i3d_flow"] = bench_i3d(i3d_ref, repeats, 2, frames, max(size, 193))
    else:
        out["i3d"] = "skipped: pass --i3d-ref pytorch_i3d.py"
    return out
