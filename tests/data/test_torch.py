"""torch clip datasets: online clips ending at the labelled frame, padding, lazy decoding."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from surgkit.data import cholec80, cholect50, jigsaws
from surgkit.data.torch import ClipDataset, online_indices, uniform_indices

from .helpers import encode, write


def test_online_indices_surgvista_convention():
    # 16 frames at stride 4 ending at the anchor; steps below frame 0 are not taken (earliest reached repeats)
    idx, padded = online_indices(61, 16, 4)
    assert idx == list(range(1, 62, 4)) and not padded
    idx, padded = online_indices(5, 16, 4)
    assert idx == [1] * 15 + [5] and padded
    assert online_indices(0, 3, 4) == ([0, 0, 0], True)
    assert uniform_indices(100, 4) == [12, 37, 62, 87]


@pytest.fixture
def t50(tmp_path):
    n = 12
    ann = {
        str(f): [[17, 0, 1, -1, -1, -1, -1, 1, 0, 1, -1, -1, -1, -1, 0]] if f % 2 else [[-1] * 14 + [0]]
        for f in range(n)
    }
    write(
        tmp_path / "labels" / "VID01.json",
        json.dumps({"video": 1, "fps": 1, "num_frames": n, "annotations": ann}),
    )
    (tmp_path / "videos" / "VID01").mkdir(parents=True)
    for f in range(n):  # pixel value = 10 * frame index: exact content check
        cv2.imwrite(
            str(tmp_path / "videos" / "VID01" / f"{f:06d}.png"), np.full((24, 32, 3), 10 * f, np.uint8)
        )
    return cholect50.load(tmp_path)


def test_frame_folder_clips_are_exact(t50):
    data = ClipDataset(t50, "triplet", num_frames=4, stride=2, fps=1.0, size=(16, 12), mean=None, std=None)
    assert len(data) == 12
    item = data[7]
    assert item["video"].shape == (4, 3, 12, 16) and item["frame"] == 7
    assert item["indices"].tolist() == [1, 3, 5, 7] and not item["padded"]
    assert torch.allclose(item["video"][:, 0, 0, 0] * 255, torch.tensor([10.0, 30, 50, 70]))
    assert item["label"].shape == (100,) and item["label"][17] == 1 and item["label"].sum() == 1
    first = data[0]
    assert first["indices"].tolist() == [0, 0, 0, 0] and first["padded"] and first["label"].sum() == 0
    cthw = ClipDataset(t50, "triplet", num_frames=4, stride=2, size=(16, 12), layout="CTHW")[7]["video"]
    assert cthw.shape == (3, 4, 12, 16)
    loader = torch.utils.data.DataLoader(data, batch_size=5)
    batch = next(iter(loader))
    assert batch["video"].shape == (5, 4, 3, 12, 16)


def test_video_file_clips_at_one_fps(tmp_path):
    frames = np.stack([np.full((32, 32, 3), 2 * i, np.uint8) for i in range(100)])  # 4 s at 25 fps
    encode(tmp_path / "videos" / "video01.mp4", frames, fps=25, crf=0)
    write(
        tmp_path / "phase_annotations" / "video01-phase.txt",
        "Frame\tPhase\n" + "".join(f"{i}\tPreparation\n" for i in range(100)),
    )
    ds = cholec80.load(tmp_path)
    data = ClipDataset(ds, "phase", num_frames=3, stride=1, fps=1.0, size=(32, 32), mean=None, std=None)
    assert [s[1] for s in data.samples] == [0, 25, 50, 75]
    item = data[3]  # anchor 75 at 25 fps; 1-fps steps of 25 source frames
    assert item["indices"].tolist() == [25, 50, 75] and item["label"].item() == 0
    got = item["video"][:, :, 16, 16].mean(dim=1) * 255
    assert torch.allclose(got, torch.tensor([50.0, 100.0, 150.0]), atol=3)
    data[0]  # opens a decoder in this process; forked workers must open their own
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2)
    batches = list(loader)
    assert [b["frame"].tolist() for b in batches] == [[0, 25], [50, 75]]
    assert torch.equal(batches[1]["video"][1], item["video"])


def test_skill_uniform_sampling_and_missing_media(tmp_path):
    write(
        tmp_path / "Suturing" / "meta_file_Suturing.txt",
        "Suturing_B001\t\tN\t13\t\t2\t2\t2\t2\t3\t2\nSuturing_C001\t\tN\t12\t\t2\t2\t2\t2\t2\t2\n",
    )
    frames = np.stack([np.full((16, 16, 3), 4 * i, np.uint8) for i in range(40)])
    encode(tmp_path / "Suturing" / "video" / "Suturing_B001_capture1.avi", frames, fps=30, crf=0)
    ds = jigsaws.load(tmp_path, task="Suturing")
    data = ClipDataset(ds, "skill", num_frames=4, size=(16, 16), mean=None, std=None)
    assert len(data) == 1 and data.skipped == [("Suturing_C001", "no media")]
    item = data[0]
    assert item["indices"].tolist() == [5, 15, 25, 35] and item["label"].tolist() == [13, 2, 2, 2, 2, 3, 2]
