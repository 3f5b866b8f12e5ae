"""Frame extraction: outputs, naming, transforms, failures that spare other videos, skip/overwrite."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from surgkit.errors import SurgkitError
from surgkit.prep.frames import extract
from surgkit.prep.seqstore import SequenceReader
from surgkit.prep.transforms import black_margin_box, parse_transform

from .conftest import read_index


def test_extract_jpg_and_array_agree_on_frames(clips, tmp_path):
    res = extract(
        [clips["mp4_30"], clips["avi_60"]], tmp_path / "jpg", fps=10, fmt="jpg", chunk_size=7, progress=False
    )
    assert res.ok and sorted(res.done) == ["h264_30", "mpeg4_60"]
    names = sorted(p.name for p in (tmp_path / "jpg" / "h264_30").glob("*.jpg"))
    assert names[0] == "00000.jpg" and names[-1] == "00029.jpg" and len(names) == 30
    arr = extract(
        clips["avi_60"], tmp_path / "arr", fps=10, fmt="array", chunk_size=7, progress=False, workers=1
    )
    assert arr.ok
    seq = SequenceReader(tmp_path / "arr" / "mpeg4_60")
    frames = seq.read(0, len(seq))
    assert frames.shape == (20, 48, 64, 3) and frames.dtype == np.uint8
    assert [read_index(f) for f in frames] == list(range(0, 120, 6)) == seq.meta["source_index"]
    assert seq.meta["fps"] == 10.0 and seq.meta["source_fps"] == 60.0
    jpg = SequenceReader(tmp_path / "jpg" / "mpeg4_60").read(0, 20)
    assert [read_index(f) for f in jpg] == list(range(0, 120, 6))


@pytest.mark.parametrize("workers", [1, 2])  # one video: 2 workers = 2 conversion threads
def test_array_store_holds_pyav_rgb_pixels_of_every_frame(clips, tmp_path, workers):
    """Oracle: PyAV's own decode + to_ndarray('rgb24'); chunks of 7 reuse one buffer (last one partial)."""
    import av

    res = extract(clips["mp4_30"], tmp_path, fmt="array", chunk_size=7, workers=workers, progress=False)
    assert res.ok and res.computed_items == {"h264_30": 90}
    with av.open(str(clips["mp4_30"])) as container:
        expected = np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])
    seq = SequenceReader(tmp_path / "h264_30")
    assert seq.read(0, len(seq)).tobytes() == expected.tobytes() and len(seq) == 90


@pytest.mark.parametrize("fmt", ["jpg", "png"])
def test_image_files_do_not_depend_on_encoding_threads(clips, tmp_path, fmt):
    runs = []
    for workers in (1, 2):
        out = tmp_path / str(workers)
        assert extract(
            clips["mp4_30"], out, fps=10, fmt=fmt, chunk_size=4, workers=workers, progress=False
        ).ok
        runs.append({p.name: p.read_bytes() for p in sorted((out / "h264_30").glob(f"*.{fmt}"))})
    assert len(runs[0]) == 30 and runs[0] == runs[1]


def test_new_video_hash_is_recorded_by_its_worker(clips, tmp_path):
    """The input hash of a new video is computed while decoding and reaches manifest and sequence.json."""
    from surgkit.utils.io import sha256_file

    assert extract(clips["mp4_30"], tmp_path, fps=10, fmt="array", chunk_size=4, progress=False).ok
    digest = sha256_file(clips["mp4_30"])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["videos"]["h264_30"]["input_sha256"] == digest
    assert SequenceReader(tmp_path / "h264_30").meta["source_sha256"] == digest


def test_png_pattern_start_number_and_preset(clips, tmp_path):
    res = extract(clips["mp4_30"], tmp_path, preset="surgvista", start_number=1, progress=False)
    assert res.ok
    files = sorted(p.name for p in (tmp_path / "h264_30").glob("*.png"))
    assert files == ["00001.png", "00002.png", "00003.png"]  # 3 s at 1 fps, 1-based numbers
    seq = SequenceReader(tmp_path / "h264_30")
    assert seq.read(0, 3).shape == (3, 224, 224, 3)
    assert seq.meta["transform"] == "black_crop=15,resize=224x224" and seq.meta["source_index"] == [0, 30, 60]


def test_black_margin_crop_finds_the_field_of_view():
    img = np.zeros((120, 160, 3), np.uint8)
    img[10:100, 30:140] = (180, 90, 60)  # the endoscopic image
    img[2:5, 2:8] = 255  # a speck of overlay text, removed by the median filter
    assert black_margin_box(img) == (10, 100, 30, 140)
    out = parse_transform("black_crop,resize=56x32")(img)
    assert out.shape == (32, 56, 3) and out.min() > 0


def test_transform_errors():
    with pytest.raises(SurgkitError, match="unknown transform 'blur'"):
        parse_transform("blur=3")
    with pytest.raises(SurgkitError, match="expected AxB"):
        parse_transform("resize=224")
    with pytest.raises(SurgkitError, match="larger than"):
        parse_transform("center_crop=100x100")(np.zeros((48, 64, 3), np.uint8))


def test_bad_videos_fail_alone_and_cli_exits_nonzero(clips, tmp_path, run_cli):
    src = tmp_path / "in"
    src.mkdir()
    for key in ("mp4_30", "avi_60", "truncated_avi", "garbage_mp4", "empty", "text"):
        shutil.copy(clips[key], src / clips[key].name)
    code, out, err = run_cli(
        "prep", "frames", src, "-o", tmp_path / "out", "--fps", "10", "--workers", "2", "-q"
    )
    assert code == 1
    text = " ".join((out + err).split())
    assert "2 done" in text and "4 failed" in text
    for name, reason in [
        ("trunc.avi", "frame"),
        ("empty.mp4", "empty file (0 bytes)"),
        ("notes.avi", "cannot open container (FFmpeg: Invalid data found"),
    ]:
        assert f"{src / name}" in text and reason in text
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["videos"]["h264_30"]["status"] == "done"
    assert (
        manifest["videos"]["empty"]["status"] == "failed"
        and "0 bytes" in manifest["videos"]["empty"]["error"]
    )
    assert SequenceReader(tmp_path / "out" / "h264_30").num_items == 30
    assert not (tmp_path / "out" / "trunc" / "sequence.json").exists()  # never looks complete


def test_rerun_skips_finished_and_overwrite_recomputes(clips, tmp_path):
    first = extract(clips["mp4_30"], tmp_path, fps=10, progress=False)
    assert first.computed_items == {"h264_30": 30}
    stamp = (tmp_path / "h264_30" / "00010.jpg").stat().st_mtime_ns
    again = extract(clips["mp4_30"], tmp_path, fps=10, progress=False)
    assert again.skipped == ["h264_30"] and again.computed_items == {}
    assert (tmp_path / "h264_30" / "00010.jpg").stat().st_mtime_ns == stamp
    forced = extract(clips["mp4_30"], tmp_path, fps=10, overwrite=True, progress=False)
    assert forced.computed_items == {"h264_30": 30}
    with pytest.raises(SurgkitError, match=r"was written with fps='10', this run has fps='5'"):
        extract(clips["mp4_30"], tmp_path, fps=5, progress=False)  # new settings: refused, untouched
    assert (tmp_path / "h264_30" / "00029.jpg").is_file()
    changed = extract(clips["mp4_30"], tmp_path, fps=5, overwrite=True, progress=False)
    assert changed.computed_items == {"h264_30": 15}
    assert sorted(p.name for p in (tmp_path / "h264_30").glob("*.jpg"))[-1] == "00014.jpg"
