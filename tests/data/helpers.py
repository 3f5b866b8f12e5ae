"""Small writers for hand-made fixtures in the native formats (mirroring the spec's examples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def textured_frames(seed: int, n: int, size: int = 96, fps: float = 10.0) -> np.ndarray:
    """(n, size, size, 3) uint8 frames: a smooth random texture panned over time, reddish, with a vignette.

    Different seeds give different 'surgeries'; the shared vignette is what every frame has in common.
    """
    import cv2

    rng = np.random.default_rng(seed)
    big = 3 * size
    tex = np.zeros((big, big, 3), np.float32)
    for s in (32, 8, 2):
        noise = rng.random((big // s + 2, big // s + 2, 3)).astype(np.float32)
        tex += (
            cv2.resize(noise, (big + 2 * s, big + 2 * s), interpolation=cv2.INTER_CUBIC)[
                s : s + big, s : s + big
            ]
            * s
        )
    tex /= tex.max()
    tex[..., 0] = 0.5 + 0.5 * tex[..., 0]
    tex[..., 1:] *= 0.4
    yy, xx = np.mgrid[:size, :size]
    vig = (np.hypot(xx - size / 2, yy - size / 2) < 0.47 * size).astype(np.float32)[..., None]
    frames = np.empty((n, size, size, 3), np.uint8)
    x, y, v = float(size), float(size), rng.normal(0, 1.5, 2)
    for i in range(n):
        v = np.clip(v + rng.normal(0, 0.3, 2), -3, 3)
        x, y = float(np.clip(x + v[0], 0, big - 1.5 * size)), float(np.clip(y + v[1], 0, big - 1.5 * size))
        crop = tex[int(y) : int(y) + int(1.5 * size), int(x) : int(x) + int(1.5 * size)]
        frames[i] = (cv2.resize(crop, (size, size)) * vig * 255).astype(np.uint8)
    return frames


def encode(
    path: Path,
    frames: np.ndarray,
    fps: float = 10.0,
    size: tuple[int, int] | None = None,
    crf: int = 23,
    gop: int | None = None,
) -> Path:
    """Encode frames (T, H, W, 3) to H.264 (optionally resized to size=(w, h); keyframe every ``gop``)."""
    import av
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    if size is not None:
        w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=int(fps) if float(fps).is_integer() else fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"crf": str(crf), "preset": "ultrafast"}
        if gop is not None:
            s.options |= {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        for f in frames:
            img = f if size is None else cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def resample(frames: np.ndarray, fps_in: float, fps_out: float) -> np.ndarray:
    """Nearest-frame resampling to another frame rate."""
    n_out = int(len(frames) * fps_out / fps_in)
    idx = np.minimum((np.arange(n_out) * fps_in / fps_out).round().astype(int), len(frames) - 1)
    return frames[idx]
