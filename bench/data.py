"""Benchmark: leakage fingerprinting throughput and peak memory on a long synthetic video.

Encodes one long video (default 30 min at 25 fps, 256x192: a random texture panned by a random walk,
H.264 with x264's default 250-frame keyframe interval), then fingerprints it in a fresh process and
reports wall time, frames the codec decoded and frames scaled+hashed vs frames in the video,
video-seconds per wall-second, and peak RSS / Python heap. Optionally (``--full-decode``) times a
plain decode of every frame for comparison.

Codec-level decoding cannot skip the frames between a keyframe and a sample: when samples are closer
than the keyframe interval nearly every frame passes through the codec (but only the samples are
scaled, converted and hashed); with keyframes every second (``--gop 25``) the seeks skip most frames.

    python bench/data.py [--minutes 30] [--fps 25] [--size 256x192] [--full-decode] [--out bench.json]

Prints JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, resource, sys, time, tracemalloc
import av, cv2  # imported before timing: the wall time is the fingerprinting alone
from surgkit.data.leakage import fingerprint
tracemalloc.start()
t = time.perf_counter()
fp = fingerprint(sys.argv[1], interval=float(sys.argv[2]), max_frames=int(sys.argv[3]))
wall = time.perf_counter() - t
print(json.dumps({"wall_s": wall, "frames_hashed": fp.frames_hashed, "frames_decoded": fp.frames_decoded, "valid": int(fp.valid.sum()),
                  "interval_s": fp.interval, "duration_s": fp.duration,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "python_heap_peak_mb": tracemalloc.get_traced_memory()[1] / 2**20}))
"""


def encode_long(
    path: Path,
    minutes: float,
    fps: int,
    size: tuple[int, int],
    seed: int = 0,
    gop: int = 250,
    preset: str = "ultrafast",
) -> int:
    import av
    import cv2

    w, h = size
    rng = np.random.default_rng(seed)
    big = np.zeros((4 * h, 4 * w, 3), np.float32)
    for s in (64, 16, 4):
        noise = rng.random((4 * h // s + 2, 4 * w // s + 2, 3)).astype(np.float32)
        big += cv2.resize(noise, (4 * w + 2 * s, 4 * h + 2 * s))[s : s + 4 * h, s : s + 4 * w] * s
    big = (big / big.max() * 255).astype(np.uint8)
    n = int(minutes * 60 * fps)
    x, y, v = float(w), float(h), np.zeros(2)
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        st.options = {"preset": preset, "crf": "28", "g": str(gop)}
        for _ in range(n):
            v = np.clip(v + rng.normal(0, 0.4, 2), -4, 4)
            x = float(np.clip(x + v[0], 0, 3 * w - 1))
            y = float(np.clip(y + v[1], 0, 3 * h - 1))
            frame = big[int(y) : int(y) + h, int(x) : int(x) + w]
            for p in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                c.mux(p)
        for p in st.encode():
            c.mux(p)
    return n


def full_decode(path: Path) -> dict:
    import av

    t = time.perf_counter()
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        for _ in c.decode(s):
            n += 1
    wall = time.perf_counter() - t
    return {"frames": n, "wall_s": round(wall, 2), "frames_per_s": round(n / wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", default="256x192")
    ap.add_argument("--gop", type=int, default=250, help="keyframe interval in frames (x264 default 250)")
    ap.add_argument(
        "--preset", default="ultrafast", help="x264 preset (ultrafast: no B-frames; veryfast: B-frames)"
    )
    ap.add_argument("--interval", type=float, default=2.0)
    ap.add_argument("--max-frames", type=int, default=128)
    ap.add_argument("--full-decode", action="store_true", help="also time decoding every frame")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "long.mp4"
        t = time.perf_counter()
        n = encode_long(video, args.minutes, args.fps, size, gop=args.gop, preset=args.preset)
        enc = time.perf_counter() - t
        res = subprocess.run(
            [sys.executable, "-c", CHILD, str(video), str(args.interval), str(args.max_frames)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        fp = json.loads(res.stdout.strip().splitlines()[-1])
        result = {
            "benchmark": "surgkit.data.leakage.fingerprint",
            "video": {
                "minutes": args.minutes,
                "fps": args.fps,
                "size": list(size),
                "frames": n,
                "mb": round(video.stat().st_size / 2**20, 1),
                "encode_s": round(enc, 1),
            },  # fmt: skip
            "params": {"interval_s": args.interval, "max_frames": args.max_frames},
            "fingerprint": {
                "wall_s": round(fp["wall_s"], 2),
                "frames_hashed": fp["frames_hashed"],
                "frames_decoded_by_codec": fp["frames_decoded"],
                "fraction_of_frames_decoded": round(fp["frames_decoded"] / n, 4),
                "fraction_of_frames_scaled_and_hashed": round(fp["frames_hashed"] / n, 5),
                "video_frames_per_s": round(n / fp["wall_s"], 1),
                "hashed_frames_per_s": round(fp["frames_hashed"] / fp["wall_s"], 1),
                "video_seconds_per_s": round(fp["duration_s"] / fp["wall_s"], 1),
                "effective_interval_s": round(fp["interval_s"], 2),
                "peak_rss_mb": round(fp["peak_rss_mb"], 1),
                "python_heap_peak_mb": round(fp["python_heap_peak_mb"], 2),
            },
        }
        if args.full_decode:
            result["full_decode_reference"] = full_decode(video)
    text = json.dumps(result, indent=2)
    if args.out:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
        from surgkit.utils.io import write_text

        write_text(args.out, text + "\n")
    print(text)


if __name__ == "__main__":
    main()
