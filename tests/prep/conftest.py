"""Real encoded test videos whose frames encode their own index, and damaged copies."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

BITS = 12  # 4 x 3 grid of blocks, one bit each


def index_image(i: int, width: int = 64, height: int = 48) -> np.ndarray:
    """RGB frame whose 4x3 block grid spells ``i`` in binary (white = 1), robust to compression."""
    img = np.zeros((height, width, 3), np.uint8)
    bw, bh = width // 4, height // 3
    for b in range(BITS):
        r, c = divmod(b, 4)
        if (i >> b) & 1:
            img[r * bh : (r + 1) * bh, c * bw : (c + 1) * bw] = 255
    img[..., 1] = np.maximum(img[..., 1], 40)  # never fully black (black-margin crop stays out)
    return img


def read_index(img: np.ndarray) -> int:
    """Inverse of :func:`index_image` (block centres, any resolution)."""
    h, w = img.shape[:2]
    bw, bh = w / 4, h / 3
    value = 0
    for b in range(BITS):
        r, c = divmod(b, 4)
        y, x = int((r + 0.5) * bh), int((c + 0.5) * bw)
        if img[y, x, 0] > 127:
            value |= 1 << b
    return value


def make_video(path: Path, n: int, fps: int, codec: str = "libx264", size=(64, 48), image_fn=None) -> Path:
    """Encode ``n`` frames at ``fps`` with PyAV (libx264 -> mp4, mpeg4 -> avi)."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = 2_000_000
        for i in range(n):
            img = image_fn(i) if image_fn else index_image(i, *size)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def damage(src: Path, dst: Path, how: str) -> Path:
    """truncated (first 55 %), garbage (random bytes inside the media data), empty, text."""
    data = src.read_bytes()
    if how == "truncated":
        dst.write_bytes(data[: len(data) * 55 // 100])
    elif how == "garbage":
        rng = np.random.default_rng(0)
        buf = bytearray(data)
        start = len(buf) // 3
        buf[start : start + 400] = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
        dst.write_bytes(bytes(buf))
    elif how == "empty":
        dst.write_bytes(b"")
    elif how == "text":
        dst.write_text("trial\tgrs\nSuturing_B001\t13\n" * 30)
    else:
        raise ValueError(how)
    return dst


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """H.264 mp4 at 30 fps (90 frames) and MPEG-4 avi at 60 fps (120 frames), plus damaged copies."""
    root = tmp_path_factory.mktemp("clips")
    out = {
        "mp4_30": make_video(root / "good" / "h264_30.mp4", 90, 30, "libx264"),
        "avi_60": make_video(root / "good" / "mpeg4_60.avi", 120, 60, "mpeg4"),
    }
    bad = root / "bad"
    bad.mkdir()
    out["truncated_mp4"] = damage(out["mp4_30"], bad / "trunc.mp4", "truncated")
    out["truncated_avi"] = damage(out["avi_60"], bad / "trunc.avi", "truncated")
    out["garbage_avi"] = damage(out["avi_60"], bad / "garbage.avi", "garbage")
    out["garbage_mp4"] = damage(out["mp4_30"], bad / "garbage.mp4", "garbage")
    out["empty"] = damage(out["mp4_30"], bad / "empty.mp4", "empty")
    out["text"] = damage(out["mp4_30"], bad / "notes.avi", "text")
    out["no_frames"] = _no_frames(bad / "noframes.avi")
    out["audio_only"] = _audio_only(bad / "sound.m4a")
    assert os.path.getsize(out["empty"]) == 0
    return out


def _no_frames(path: Path) -> Path:
    """An AVI whose video stream has a header but not a single frame."""
    import av

    container = av.open(str(path), "w")
    stream = container.add_stream("mpeg4", rate=30)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    container.start_encoding()
    container.close()
    return path


def _audio_only(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path
