"""Optical flow: seed Farnebäck settings, invertible 8-bit encoding, bit-identical for 1 and 2 workers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from surgkit.prep.flow import FlowSettings, compute, decode_flow, encode_flow, flow_pairs
from surgkit.prep.frames import extract
from surgkit.prep.seqstore import SequenceReader

from .conftest import make_video


def _texture(h=64, w=80, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4, w // 4), dtype=np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 1.0)


def test_encoding_is_invertible_within_one_step():
    bound = 20.0
    f = np.linspace(-25, 25, 1001, dtype=np.float32).reshape(-1, 1, 1).repeat(2, -1)
    u8 = encode_flow(f, bound)
    assert u8[0, 0, 0] == 0 and u8[-1, 0, 0] == 255 and encode_flow(np.zeros(2), bound).tolist() == [128, 128]
    back = decode_flow(u8, bound)
    inside = np.abs(f) <= bound
    assert np.abs(back - f)[inside].max() <= bound / 255 + 1e-5  # half a step of 2b/255
    assert np.allclose(back[~inside], np.sign(f[~inside]) * bound, atol=1e-5)  # clipped to ±b


def test_default_is_the_seed_farneback_call():
    """Oracle: cv2.calcOpticalFlowFarneback(prev, next, None, 0.5, 3, 15, 3, 5, 1.2, 0)."""
    base = _texture()
    shifted = np.roll(base, (1, 2), axis=(0, 1))  # content moves +2 px in x, +1 px in y
    frames = np.stack([np.repeat(im[..., None], 3, -1) for im in (base, shifted)])
    maps = flow_pairs(frames, FlowSettings())
    oracle = cv2.calcOpticalFlowFarneback(base, shifted, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    np.testing.assert_array_equal(maps[0], encode_flow(oracle, 20.0))
    centre = decode_flow(maps[0], 20.0)[16:-16, 16:-16].reshape(-1, 2)
    assert np.median(centre[:, 0]) == pytest.approx(2.0, abs=0.2)
    assert np.median(centre[:, 1]) == pytest.approx(1.0, abs=0.2)
    dis = decode_flow(flow_pairs(frames, FlowSettings(method="dis", dis_preset="medium"))[0], 20.0)
    assert np.median(dis[16:-16, 16:-16, 0]) == pytest.approx(2.0, abs=0.3)


@pytest.fixture(scope="module")
def moving_frames(tmp_path_factory):
    """Two videos of a texture panning 1 px per frame, extracted to an array store."""
    root = tmp_path_factory.mktemp("flowvids")
    tex = _texture(96, 160, seed=3)
    for name, n in (("pan_a", 23), ("pan_b", 17)):
        make_video(root / "v" / f"{name}.mp4", n, 30, "libx264", size=(96, 64),
                   image_fn=lambda i: np.repeat(tex[16:80, i : i + 96, None], 3, -1))  # fmt: skip
    assert extract(root / "v", root / "frames", fmt="array", progress=False).ok
    return root / "frames"


def test_bit_identical_for_one_and_two_workers(moving_frames, tmp_path):
    one = compute(moving_frames, tmp_path / "w1", chunk_size=5, workers=1, progress=False)
    two = compute(moving_frames, tmp_path / "w2", chunk_size=5, workers=2, fmt="png", progress=False)
    assert one.ok and two.ok and one.computed_items == two.computed_items == {"pan_a": 22, "pan_b": 16}
    for vid in ("pan_a", "pan_b"):
        a, b = SequenceReader(tmp_path / "w1" / vid), SequenceReader(tmp_path / "w2" / vid)
        np.testing.assert_array_equal(a.read(0, len(a)), b.read(0, len(b)))
    # and identical to the naive sequential loop over all frames
    frames = SequenceReader(moving_frames / "pan_a").read(0, 23)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    naive = [encode_flow(cv2.calcOpticalFlowFarneback(p, q, None, 0.5, 3, 15, 3, 5, 1.2, 0), 20.0)
             for p, q in zip(grey[:-1], grey[1:], strict=True)]  # fmt: skip
    np.testing.assert_array_equal(SequenceReader(tmp_path / "w1" / "pan_a").read(0, 22), np.stack(naive))
    meta = SequenceReader(tmp_path / "w1" / "pan_a").meta
    assert meta["bound"] == 20.0 and meta["num_items"] == 22 and meta["item_shape"] == [64, 96, 2]
    # the pan is visible: content moves left by 1 px per frame
    mid = decode_flow(SequenceReader(tmp_path / "w1" / "pan_a").read(10, 11), 20.0)[0, 16:-16, 16:-16, 0]
    assert np.median(mid) == pytest.approx(-1.0, abs=0.25)


def test_flow_resumes_chunks_and_skips_finished(moving_frames, tmp_path):
    first = compute(moving_frames, tmp_path, chunk_size=4, workers=1, progress=False)
    assert first.computed_items == {"pan_a": 22, "pan_b": 16}
    again = compute(moving_frames, tmp_path, chunk_size=4, workers=1, progress=False)
    assert sorted(again.skipped) == ["pan_a", "pan_b"] and again.computed_items == {}
