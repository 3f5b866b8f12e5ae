"""Decoding: exact timestamp-based fps resampling (self-indexing videos) and damaged files."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from surgkit.prep.video import TimestampSampler, VideoError, decode, probe, to_rgb_array

from .conftest import read_index


def _oracle(n_src: int, src_fps: int, fps: Fraction) -> list[int]:
    """Sample-and-hold by hand: output k at k/fps takes source floor(k/fps * src_fps); ceil(N fps/src) outputs."""
    count = math.ceil(Fraction(n_src) * fps / src_fps)
    return [math.floor(Fraction(k) / fps * src_fps) for k in range(count)]


@pytest.mark.parametrize("key,n_src,src_fps", [("mp4_30", 90, 30), ("avi_60", 120, 60)])
@pytest.mark.parametrize("fps", ["10", "1", "7", "29.97", "25"])
def test_resampling_picks_the_right_frames(clips, key, n_src, src_fps, fps):
    target = Fraction(fps)
    frames = list(decode(clips[key], fps))
    want = _oracle(n_src, src_fps, target)
    assert [f.source_index for f in frames] == want
    assert [read_index(f.image) for f in frames] == want  # the pixels really are those frames
    assert [f.index for f in frames] == list(range(len(want)))
    assert frames[1].time == pytest.approx(float(1 / target))


def test_native_rate_keeps_every_frame(clips):
    frames = list(decode(clips["avi_60"], None))
    assert [read_index(f.image) for f in frames] == list(range(120))


def test_sampler_ntsc_rate_exact():
    """29.97 fps source to 10 fps: output k takes the last source j with j*1001/30000 <= k/10."""
    sampler = TimestampSampler(Fraction(10))
    picks: dict[int, int] = {}
    for j in range(100):
        for k in sampler.push(Fraction(j * 1001, 30000)):
            picks[k] = j - 1
    for k in sampler.finish(Fraction(100 * 1001, 30000)):
        picks[k] = 99
    expect = {k: math.floor(Fraction(k, 10) * Fraction(30000, 1001)) for k in range(len(picks))}
    assert picks == expect and len(picks) == math.ceil(Fraction(100 * 1001, 30000) * 10)


@pytest.mark.parametrize("fps", [Fraction(10), Fraction(30000, 1001), Fraction(7, 3)])
def test_sampler_on_integer_pts_equals_the_seconds_rule(fps):
    """decode() pushes integer pts in time-base units; the picks are those of exact seconds."""
    time_base = Fraction(1, 90000)
    pts = [0, 3003, 6006, 9010, 12012, 15015, 18018, 21022, 24024, 27027]
    seconds, ticks = TimestampSampler(fps), TimestampSampler(fps, time_base)
    a = [seconds.push(p * time_base) for p in pts] + [seconds.finish((pts[-1] + 3003) * time_base)]
    b = [ticks.push(p) for p in pts] + [ticks.finish(pts[-1] + 3003)]
    assert a == b and sum(len(x) for x in a) > 0
    assert ticks.seconds_since_start(pts[3]) == float(Fraction(pts[3]) * time_base)


def test_rgb_pixels_equal_pyav_to_ndarray(clips):
    """to_rgb_array (one swscale context per thread) gives PyAV's own to_ndarray('rgb24') pixels."""
    import av

    with av.open(str(clips["avi_60"])) as container:
        for frame in container.decode(video=0):
            assert np.array_equal(to_rgb_array(frame), frame.to_ndarray(format="rgb24"))


def test_skip_before_yields_indices_without_pixels(clips):
    frames = list(decode(clips["mp4_30"], 10, skip_before=5))
    assert all(f.image is None for f in frames[:5]) and all(f.image is not None for f in frames[5:])
    assert [f.source_index for f in frames] == _oracle(90, 30, Fraction(10))


def test_probe(clips):
    info = probe(clips["avi_60"])
    assert (info.codec, info.width, info.height, info.fps, info.declared_frames) == (
        "mpeg4",
        64,
        48,
        60.0,
        120,
    )


@pytest.mark.parametrize(
    "key,reason",
    [
        ("truncated_mp4", r"no video stream|cannot open container"),
        (
            "truncated_avi",
            r"frame \d+: (corrupt stream \(FFmpeg|decoding failed \(FFmpeg|truncated: the container)",
        ),
        (
            "garbage_avi",
            r"(frame \d+: (corrupt stream|decoding failed|truncated)|corrupt container) \(?FFmpeg",
        ),
        ("garbage_mp4", r"(frame \d+: (corrupt stream|decoding failed) \(FFmpeg|cannot open container)"),
        ("empty", r"empty file \(0 bytes\)"),
        ("text", r"cannot open container \(FFmpeg: Invalid data found"),
        ("no_frames", r"frame 0: the video stream contains no decodable frames"),
        ("audio_only", r"no video stream \(audio stream\)"),
    ],
)
def test_damaged_files_fail_with_file_frame_and_reason(clips, key, reason):
    with pytest.raises(VideoError, match=reason) as e:
        list(decode(clips[key], 10))
    assert str(e.value).startswith(str(clips[key]))


def test_tolerant_mode_records_warnings(clips):
    warnings: list[str] = []
    frames = list(decode(clips["garbage_avi"], None, strict=False, warnings=warnings))
    assert warnings and 0 < len(frames) <= 120
