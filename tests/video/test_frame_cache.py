"""The 1-fps frame cache shared with surgkit.prep: prep's sequence.json is the single source of truth
for which source frame each cached image holds and for whether a video's extraction finished."""

from __future__ import annotations

import json
import types
from fractions import Fraction

import cv2
import pytest

import surgkit.prep.frames as prep_frames
from surgkit.video.clips import build_frame_cache, cached_frames, frame_cache_dir
from surgkit.video.finetune import cache_video_frames

from ..prep.conftest import damage, make_video, read_index
from .test_pretrain import _settings

NTSC = Fraction(30000, 1001)  # 29.97 fps


def test_finetune_cache_keys_frames_by_the_source_frame_prep_extracted(tmp_path):
    path = make_video(tmp_path / "videos" / "ntsc.mp4", 130, NTSC)  # frames show their own index
    video = types.SimpleNamespace(path=path, fps=float(NTSC), extra={})
    ds = types.SimpleNamespace(videos={"ntsc": video})
    settings = types.SimpleNamespace(frame_cache=str(tmp_path / "cache"), fps=1.0, run_dir=str(tmp_path),
                                     num_workers=0)  # fmt: skip
    cache_video_frames(ds, settings, img_size=48)
    frames = video.extra["frames"]
    # sample and hold: second k holds the last frame with pts <= k s, i.e. floor(k·29.97): 0, 29, 59, 89, 119
    assert sorted(frames) == [0, 29, 59, 89, 119]  # round(k·29.97) would say 30 for k = 1
    for source_frame, file in frames.items():
        image = cv2.cvtColor(cv2.imread(str(file)), cv2.COLOR_BGR2RGB)
        assert read_index(image) == source_frame  # the image really is that source frame


def test_unfinished_cache_folder_is_never_served(tmp_path):
    make_video(tmp_path / "videos" / "good.mp4", 150, 25)
    assert build_frame_cache([tmp_path / "videos" / "good.mp4"], tmp_path / "cache", fps=1, img_size=32) == {}
    assert len(cached_frames(tmp_path / "cache" / "good")[1]) == 6
    # the record gone (manifest still says done): re-extracted, not trusted from the files alone
    (tmp_path / "cache" / "good" / "sequence.json").unlink()
    assert cached_frames(tmp_path / "cache" / "good") is None
    assert build_frame_cache([tmp_path / "videos" / "good.mp4"], tmp_path / "cache", fps=1, img_size=32) == {}
    assert (tmp_path / "cache" / "good" / "sequence.json").is_file()


def test_pretrain_leaves_out_a_video_whose_extraction_stopped_part_way(tmp_path, monkeypatch):
    from surgkit.video.pretrain import pretrain

    data = tmp_path / "data"
    make_video(data / "good.avi", 5 * 60, 60, "mpeg4")
    full = make_video(tmp_path / "full.avi", 20 * 60, 60, "mpeg4")
    damage(full, data / "trunc.avi", "truncated")  # decodes about 11 s, then fails
    monkeypatch.setattr(prep_frames, "auto_chunk_size", lambda w, h: 2)  # chunks land before the failure
    summary = pretrain(
        _settings(data, tmp_path / "run", steps=1, frame_cache=str(tmp_path / "cache")), progress=False
    )
    cache = frame_cache_dir(str(tmp_path / "cache"), tmp_path, 32, "png")  # one folder per frame variant
    assert cache.name == "46px-png"  # short side 32·320/224, lossless as the official 1-fps frames
    written = sorted((cache / "trunc").glob("*.png"))
    assert len(written) >= 4 and not (cache / "trunc" / "sequence.json").exists()  # partial frames on disk
    assert summary["videos"] == 1  # ... yet only the finished video is pretrained on
    manifest = json.loads((cache / "manifest.json").read_text())["videos"]
    assert manifest["trunc"]["status"] == "failed" and manifest["good"]["status"] == "done"
    recorded = [written[i] for c in manifest["trunc"]["chunks_done"] for i in (2 * c, 2 * c + 1)]
    stamps = [p.stat().st_mtime_ns for p in recorded]
    assert len(recorded) >= 4
    # a re-run resumes the failed video after its recorded chunks through prep's manifest
    again = pretrain(
        _settings(data, tmp_path / "run2", steps=1, frame_cache=str(tmp_path / "cache")), progress=False
    )
    assert again["videos"] == 1 and [p.stat().st_mtime_ns for p in recorded] == stamps
    assert json.loads((cache / "manifest.json").read_text())["videos"]["trunc"]["runs"] == 2


@pytest.mark.parametrize("broken", ["source_index", "layout"])
def test_inconsistent_completion_record_is_refused(tmp_path, broken):
    from surgkit.errors import SurgkitError

    make_video(tmp_path / "v.mp4", 60, 25)
    build_frame_cache([tmp_path / "v.mp4"], tmp_path / "cache", fps=1, img_size=32)
    seq = tmp_path / "cache" / "v" / "sequence.json"
    meta = json.loads(seq.read_text())
    if broken == "source_index":
        meta["source_index"] = meta["source_index"][:-1]
    else:
        meta["layout"] = "array"
    seq.write_text(json.dumps(meta))
    with pytest.raises(SurgkitError, match="sequence.json|array layout"):
        cached_frames(tmp_path / "cache" / "v")


def test_finished_cache_is_read_without_taking_the_writer_lock(tmp_path):
    """Runs sharing a finished cache (the demo's parallel folds) must not collide on prep's folder lock."""
    import os
    import subprocess
    import sys

    make_video(tmp_path / "v.mp4", 50, 25)
    cache = tmp_path / "cache"
    assert build_frame_cache([tmp_path / "v.mp4"], cache, fps=1, img_size=32) == {}
    holder = ("import sys, time\nfrom surgkit.utils.lock import output_lock\n"
              "with output_lock(sys.argv[1], 'another writer'):\n    print('locked', flush=True)\n    time.sleep(60)\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, str(cache)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert proc.stdout.readline().strip() == "locked"  # another process writes to the cache folder ...
        assert (
            build_frame_cache([tmp_path / "v.mp4"], cache, fps=1, img_size=32) == {}
        )  # ... a finished cache is read
    finally:
        proc.kill()
        proc.wait()
    assert len(cached_frames(cache / "v")[1]) == 2


def test_demo_folds_test_every_video_once():
    from surgkit.video.demo import fold_splits

    videos = [f"video{i:02d}" for i in range(1, 7)]
    folds = fold_splits(videos, 2)
    assert sorted(v for f in folds for v in f["test"]) == videos  # each video a test video exactly once
    for f in folds:
        assert not set(f["test"]) & set(f["train"] + f["val"]) and len(f["val"]) == 1 and len(f["train"]) == 2
