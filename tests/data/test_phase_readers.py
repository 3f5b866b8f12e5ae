"""Cholec80, M2CAI16-workflow and AutoLaparo phase readers on hand-written fixtures."""

from __future__ import annotations

import pytest

from surgkit.data import autolaparo, cholec80, m2cai16
from surgkit.data.splits import make_splits
from surgkit.errors import DataFormatError

from .helpers import encode, textured_frames, write

TOOLS_HEADER = "Frame\tGrasper\tBipolar\tHook\tScissors\tClipper\tIrrigator\tSpecimenBag\n"


def phase_text(phases: list[str]) -> str:
    return "Frame\tPhase\n" + "".join(f"{i}\t{p}\n" for i, p in enumerate(phases))


def make_cholec80(root, n_videos=2, frames=60, video=True):
    for v in range(1, n_videos + 1):
        vid = f"video{v:02d}"
        phases = ["Preparation"] * 30 + ["CalotTriangleDissection"] * (frames - 30)
        write(root / "phase_annotations" / f"{vid}-phase.txt", phase_text(phases))
        rows = "".join(f"{f}\t1\t0\t{int(f >= 25)}\t0\t0\t0\t0\n" for f in range(0, frames, 25))
        write(root / "tool_annotations" / f"{vid}-tool.txt", TOOLS_HEADER + rows)
        if video:
            encode(root / "videos" / f"{vid}.mp4", textured_frames(v, frames, size=64), fps=25)
    return root


def test_cholec80_one_fps_convention_and_tools(tmp_path):
    ds = cholec80.load(make_cholec80(tmp_path))
    p = ds.phases["video01"]
    # 60 frames at 25 fps; 1 fps keeps Frame % 25 == 0 -> 0, 25, 50; frame 25 is still Preparation (< 30)
    assert p.frames.tolist() == [0, 25, 50] and p.phases.tolist() == [0, 0, 1] and p.num_source_frames == 60
    assert ds.videos["video01"].num_frames == 60 and ds.videos["video01"].fps == 25
    t = ds.tools["video02"]
    assert (
        t.frames.tolist() == [0, 25, 50] and t.presence[:, 2].tolist() == [0, 1, 1] and t.presence[:, 0].all()
    )
    full = cholec80.load(tmp_path, label_fps=25)
    assert len(full.phases["video01"].frames) == 60
    assert full.phases["video01"].phases[29:31].tolist() == [0, 1]


def test_cholec80_errors_name_file_and_line(tmp_path):
    make_cholec80(tmp_path, n_videos=1, video=False)
    pf = tmp_path / "phase_annotations" / "video01-phase.txt"
    with pytest.raises(DataFormatError, match="missing video for video01"):
        cholec80.load(tmp_path)
    ds = cholec80.load(tmp_path, require_media=False)  # labels only: reported, not dropped
    assert [s.item for s in ds.skipped] == ["video01"] and ds.videos["video01"].path is None
    pf.write_text(phase_text(["Preparation", "Calot"]))
    with pytest.raises(DataFormatError, match=r"video01-phase.txt:3: unknown phase 'Calot'"):
        cholec80.load(tmp_path, require_media=False)
    pf.write_text("Frame\tPhase\n0\tPreparation\n2\tPreparation\n")
    with pytest.raises(DataFormatError, match=r":3: frame 2 where 1 was expected"):
        cholec80.load(tmp_path, require_media=False)
    pf.write_text("Frame\tPhase\n0\tPreparation\n1e+00\tPreparation\n")  # ids in scientific notation
    with pytest.raises(DataFormatError, match=r":3: Frame: expected an integer, got '1e\+00'"):
        cholec80.load(tmp_path, require_media=False)
    pf.write_text("Frame\tPhase\n0\tPreparation\textra\n")  # wrong column count
    with pytest.raises(DataFormatError, match=r":2: expected 2 columns, found 3"):
        cholec80.load(tmp_path, require_media=False)


def test_cholec80_tool_header_and_values(tmp_path):
    make_cholec80(tmp_path, n_videos=1, video=False)
    tf = tmp_path / "tool_annotations" / "video01-tool.txt"
    tf.write_text(TOOLS_HEADER + "0\t1\t0\t2\t0\t0\t0\t0\n")
    with pytest.raises(DataFormatError, match=r"video01-tool.txt:2: Hook = 2"):
        cholec80.load(tmp_path, require_media=False)
    tf.write_text(TOOLS_HEADER.replace("Hook", "Hooks") + "0\t1\t0\t0\t0\t0\t0\t0\n")
    with pytest.raises(DataFormatError, match=r"video01-tool.txt:1: expected the header"):
        cholec80.load(tmp_path, require_media=False)


def test_cholec80_official_splits_on_partial_copy(tmp_path):
    for v in (1, 2, 33, 41, 80):
        write(tmp_path / "phase_annotations" / f"video{v:02d}-phase.txt", phase_text(["Preparation"] * 3))
    ds = cholec80.load(tmp_path, require_media=False)
    (s,) = make_splits(ds, "official")
    assert (s.train, s.val, s.test) == (["video01", "video02"], ["video33"], ["video41", "video80"])
    assert "75 official video(s) absent" in s.notes[0]
    (s40,) = make_splits(ds, "official", variant="40/40")
    assert s40.train == ["video01", "video02", "video33"] and s40.val == []


def test_m2cai16_file_name_patterns(tmp_path):
    names = ["TrocarPlacement"] * 26 + ["Preparation"] * 26
    write(tmp_path / "train_dataset" / "workflow_video_01.txt", phase_text(names))
    write(tmp_path / "test_dataset" / "test_workflow_video_02.txt", phase_text(names))
    ds = m2cai16.load(tmp_path, require_media=False)
    assert ds.split_files == {"train": ["workflow_video_01"], "test": ["test_workflow_video_02"]}
    assert ds.phases["workflow_video_01"].phases.tolist() == [0, 0, 1]
    (s,) = make_splits(ds, "official")
    assert s.train == ["workflow_video_01"] and s.test == ["test_workflow_video_02"] and s.val == []
    renamed = tmp_path / "renamed"
    write(renamed / "phases" / "video_phase_28.txt", phase_text(names))
    assert m2cai16.load(renamed, require_media=False).split_files["test"] == ["video_phase_28"]
    with pytest.raises(DataFormatError, match="unknown phase 'GallbladderRemoval'"):
        write(renamed / "phases" / "video_phase_03.txt", phase_text(["GallbladderRemoval"]))
        m2cai16.load(renamed, require_media=False)


def test_autolaparo_ids_and_split(tmp_path):
    for v in (1, 12, 21):
        write(
            tmp_path / "labels" / f"label_{v:02d}.txt",
            "Frame\tPhase\n" + "".join(f"{i}\t{1 + i // 2}\n" for i in range(6)),
        )
    ds = autolaparo.load(tmp_path, require_media=False)
    assert ds.phases["01"].phases.tolist() == [0, 0, 1, 1, 2, 2] and ds.phases["01"].fps == 1.0
    (s,) = make_splits(ds, "official")
    assert (s.train, s.val, s.test) == (["01"], ["12"], ["21"])
    write(tmp_path / "labels" / "label_02.txt", "Frame\tPhase\n0\t8\n")
    with pytest.raises(DataFormatError, match=r"label_02.txt:2: phase id \(1-7\) = 8 out of range"):
        autolaparo.load(tmp_path, require_media=False)
