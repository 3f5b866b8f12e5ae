"""Leakage guard: re-encoded/resized/resampled/renamed copies are found; different videos are not."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from surgkit.data.leakage import check_leakage, collect_media, find_leaks, fingerprint, phash, similarity
from surgkit.data.model import Dataset, Video
from surgkit.errors import LeakageError

from .helpers import encode, resample, textured_frames


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("leak")
    frames = {k: textured_frames(k, 80, size=96) for k in range(5)}
    paths = {f"v{k}": encode(root / "a" / f"v{k}.mp4", f, fps=10) for k, f in frames.items()}
    # the same surgery under another name: smaller, much lower quality, another frame rate, trimmed by 1.3 s
    copy = resample(frames[2], 10, 6)[8:]
    paths["renamed"] = encode(root / "b" / "case_0193.mp4", copy, fps=6, size=(64, 64), crf=40)
    folder = root / "b" / "frames_of_v4"
    folder.mkdir(parents=True)
    for i, f in enumerate(resample(frames[4], 10, 2)):  # a 2-fps frame folder of v4
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.resize(f[:, :, ::-1], (80, 80)))
    paths["folder"] = folder
    return root, paths


def test_phash_matches_scipy_dct():
    # oracle: scipy's orthonormal 2-D DCT-II on the 32x32 area-downsampled frame
    from scipy.fft import dctn

    img = np.random.default_rng(0).random((1, 64, 64)) * 255
    small = img[0].reshape(32, 2, 32, 2).mean(axis=(1, 3))
    low = dctn(small, norm="ortho")[:8, :8].reshape(-1)[1:]
    bits = low > np.median(low)
    expected = sum(1 << k for k, b in enumerate(bits) if b)
    assert int(phash(img)[0]) == expected


def test_copies_found_and_different_videos_not(videos):
    _, paths = videos
    fps = {k: fingerprint(p, fps=2.0 if k == "folder" else None) for k, p in paths.items()}
    score = {(a, b): similarity(fps[a], fps[b])[0] for a in fps for b in fps if a < b}
    assert score[("renamed", "v2")] >= 0.8
    assert score[("folder", "v4")] >= 0.8
    flagged = {pair for pair, s in score.items() if s >= 0.5}
    assert flagged == {("renamed", "v2"), ("folder", "v4")}, score
    offset = similarity(fps["v2"], fps["renamed"])[1]
    assert offset == pytest.approx(-1.3, abs=max(fps["v2"].interval, fps["renamed"].interval) * 1.01)
    # never every frame: a handful of sampled frames per video
    assert all(f.frames_hashed <= 32 for f in fps.values())  # of 80 (or 48) frames per video


def test_check_leakage_raises_and_allow(videos, tmp_path):
    root, paths = videos
    train = {k: paths[k] for k in ("v0", "v1", "v2")}
    test = {"case_0193": paths["renamed"], "v3": paths["v3"]}
    with pytest.raises(
        LeakageError, match=r"1 train/test overlap\(s\): train:v2 <-> test:case_0193 \(content"
    ):
        check_leakage(train, test, progress=False, cache_dir=tmp_path / "cache")
    pairs = check_leakage(train, test, allow=True, progress=False, cache_dir=tmp_path / "cache")
    assert [(p.a, p.b, p.kind) for p in pairs] == [("train:v2", "test:case_0193", "content")]
    assert len(list((tmp_path / "cache").glob("*.json"))) == 5  # cached fingerprints are reused
    assert check_leakage({"v0": paths["v0"]}, {"v3": paths["v3"]}, progress=False) == []


def test_id_and_file_overlap_without_decoding(tmp_path):
    ds = Dataset(
        "cholec80", tmp_path, videos={"video01": Video("video01", None), "video02": Video("video02", None)}
    )
    pairs, unchecked = find_leaks(ds.subset(["video01", "video02"]), ds.subset(["video02"]), progress=False)
    assert [(p.a, p.b, p.kind) for p in pairs] == [("cholec80:video02", "cholec80:video02", "id")]
    assert sorted(unchecked) == ["cholec80:video01", "cholec80:video02", "cholec80:video02"]


def test_collect_media(videos):
    root, _ = videos
    found = collect_media(root)
    assert set(found) == {
        "a/v0.mp4",
        "a/v1.mp4",
        "a/v2.mp4",
        "a/v3.mp4",
        "a/v4.mp4",
        "b/case_0193.mp4",
        "b/frames_of_v4",
    }


def test_guard_split_refuses_a_renamed_test_copy(videos):
    from surgkit.data.leakage import guard_split
    from surgkit.data.splits import Split

    _, paths = videos
    vids = {k: Video(k, paths[k]) for k in ("v0", "v1", "v2", "v3")}
    vids["case_0193"] = Video("case_0193", paths["renamed"])  # v2's surgery under another name
    ds = Dataset("cholec80", paths["v0"].parent, videos=vids)
    split = Split("official", "demo", ["v0", "v1"], ["v2"], ["v3", "case_0193"])
    with pytest.raises(LeakageError, match="cholec80:v2 <-> cholec80:case_0193"):
        guard_split(ds, split, progress=False)
    clean = Split("official", "demo", ["v0", "v1"], [], ["v3", "case_0193"])
    assert guard_split(ds, clean, progress=False) == []
    assert len(guard_split(ds, split, allow=True, progress=False)) == 1


def test_fingerprint_seeks_instead_of_decoding_everything(tmp_path):
    # 60 s at 25 fps with a keyframe every second; 15 samples 4 s apart need at most ~25 frames each
    frames = np.repeat(textured_frames(9, 60, size=32), 25, axis=0)
    path = encode(tmp_path / "long.mp4", frames, fps=25, gop=25)
    fp = fingerprint(path, interval=4.0, min_frames=1)
    assert fp.frames_hashed == 15
    assert fp.frames_decoded <= 15 * 26 < len(frames) / 3


def test_fingerprint_set_on_worker_processes_equals_one_process(videos, tmp_path):
    from surgkit.data.leakage import fingerprint_set
    from surgkit.errors import DataFormatError

    _, paths = videos
    items = {k: (p, 2.0 if k == "folder" else None) for k, p in paths.items()}
    one, _ = fingerprint_set(items, cache_dir=tmp_path / "one", progress=False, workers=1)
    two, _ = fingerprint_set(items, cache_dir=tmp_path / "two", progress=False, workers=2)
    assert list(two) == list(items)  # the caller's order
    for key in items:
        a, b = one[key], two[key]
        assert b.key == key and b.frames_hashed == a.frames_hashed
        assert np.array_equal(a.hashes, b.hashes) and np.array_equal(a.times, b.times)
        assert np.array_equal(a.valid, b.valid)
    # the main process wrote the same cache files; a second call reads them without any worker
    assert sorted(p.read_bytes() for p in (tmp_path / "one").glob("*.json")) == sorted(
        p.read_bytes() for p in (tmp_path / "two").glob("*.json")
    )
    again, _ = fingerprint_set(items, cache_dir=tmp_path / "two", progress=False, workers=2)
    assert all(np.array_equal(again[k].hashes, two[k].hashes) for k in items)
    # a broken file fails in a worker; the real error (type, file) reaches the caller
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(DataFormatError, match="broken.mp4"):
        fingerprint_set({**items, "broken": (bad, None)}, progress=False, workers=2)
