"""Cached teacher features: run the frozen image teacher once per 1-fps frame instead of every step.

Valid only without crop augmentation (``augment=False``): the teacher then always sees the same
resized frame at a given step, so its patch tokens can be computed once. Each video gets one
safetensors file ``<cache>/<video id>.safetensors`` holding ``tokens`` (``steps × L × C``,
float16) with the teacher's identity and the frame size in the metadata; a file whose metadata
does not match the run is recomputed. Files are written atomically, so a killed precompute resumes
with the videos that are missing. Lookups are disk-backed: the files are memory-mapped
(``safetensors.safe_open``) and only the rows a batch needs are read, so the cache need not fit
in RAM.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from surgkit.errors import SurgkitError
from surgkit.video.clips import ClipReader, ClipSource


def _meta(teacher_id: str, img_size: int, grid_hw: tuple[int, int], source: ClipSource) -> dict[str, str]:
    return {"teacher": teacher_id, "img_size": str(img_size), "grid": json.dumps(list(grid_hw)),
            "steps": str(source.num_steps), "source": str(source.path)}  # fmt: skip


def cache_file(cache: Path, source: ClipSource) -> Path:
    return cache / f"{source.dataset}__{source.id}.safetensors"


@torch.no_grad()
def precompute(
    teacher, teacher_id: str, sources: list[ClipSource], cache: str | Path, img_size: int, mean, std,
    grid_hw: tuple[int, int], device: str | torch.device = "cpu", batch: int = 32, progress: bool = True,
    precision: str = "auto",
) -> Path:  # fmt: skip
    """Teacher patch tokens of every step of every source (skips files that are already complete)."""
    from safetensors import safe_open

    from surgkit.utils.io import save_tensors
    from surgkit.utils.progress import track
    from surgkit.video.teacher import autocast_for

    cache = Path(cache)
    reader = ClipReader(img_size, mean, std)
    for source in track(sources, "teacher features", unit="videos", disable=not progress):
        path, meta = cache_file(cache, source), _meta(teacher_id, img_size, grid_hw, source)
        if path.is_file():
            with safe_open(str(path), "pt") as f:
                if f.metadata() == meta:
                    continue
        chunks = []
        for start in range(0, source.num_steps, batch):
            steps = list(range(start, min(start + batch, source.num_steps)))
            frames = reader.clip(source, steps)  # 3 × n × S × S, evaluation resize (no crop)
            frames = frames.permute(1, 0, 2, 3).to(device)
            with autocast_for(precision, device):
                chunks.append(teacher(teacher.prepare(frames, grid_hw)).float().half().cpu())
        save_tensors(path, {"tokens": torch.cat(chunks)}, metadata=meta)
    reader.close()
    return cache


class CachedTeacher:
    """Looks up cached tokens: ``(sources, clip steps)`` → ``B × (T'·L) × C`` float32, read from disk."""

    def __init__(self, cache: str | Path, sources: list[ClipSource]):
        self.files = [cache_file(Path(cache), s) for s in sources]
        for path in self.files:
            if not path.is_file():
                raise SurgkitError(f"{path}: teacher-feature cache missing (run the precompute first)")
        self._slices: dict[int, object] = {}
        self._handles: list = []

    def _slice(self, i: int):
        if i not in self._slices:  # opened lazily (per process); safetensors memory-maps the file
            from safetensors import safe_open

            handle = safe_open(str(self.files[i]), "pt")
            self._handles.append(handle)
            self._slices[i] = handle.get_slice("tokens")
        return self._slices[i]

    def __call__(self, src: torch.Tensor, steps: torch.Tensor, tubelet: int) -> torch.Tensor:
        """``src``: (B,) source indices; ``steps``: (B, T) clip steps → frame ``tubelet·t`` of tubelet t."""
        rows = []
        for i, st in zip(src.tolist(), steps, strict=True):
            sl = self._slice(int(i))
            rows.append(torch.cat([sl[j : j + 1] for j in st[::tubelet].tolist()]))
        out = torch.stack(rows)  # B × T' × L × C
        return out.reshape(out.shape[0], -1, out.shape[-1]).float()
