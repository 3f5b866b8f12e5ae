"""Small native-format fixtures (EndoVis18-VQLA, CholecT50) written per test session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

W, H = 128, 96


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path)


def write_endovis18(root: Path) -> Path:
    """seq_1 (test) and seq_2 (train), two frames each, three QA lines per frame (1-based boxes)."""
    lines = {
        0: [
            "What organ is being operated?|kidney|1, 1, 64, 48",
            "What is the state of bipolar_forceps?|Tissue_Manipulation|70, 5, 120, 40",
            "Where is bipolar_forceps located?|right-top|70, 5, 120, 40",
        ],
        1: [
            "What organ is being operated?|kidney|1, 1, 64, 48",
            "What is the state of prograsp_forceps?|Retraction|5, 50, 50, 90",
            "Where is prograsp_forceps located?|left-bottom|5, 50, 50, 90",
        ],
    }
    for seq in (1, 2):
        for f in (0, 1):
            _png(root / f"seq_{seq}" / "left_frames" / f"frame{f:03d}.png", seq * 10 + f)
            lab = root / f"seq_{seq}" / "vqla" / "label" / f"frame{f:03d}_QA.txt"
            lab.parent.mkdir(parents=True, exist_ok=True)
            lab.write_text("\n".join(lines[f]) + "\n")
    return root


def write_cholect50(root: Path) -> Path:
    """VID01 with 3 frames: no action / grasper retract gallbladder / + hook dissect gallbladder."""
    vec = lambda t, i, v, tg, ph: [t, i, 1, -1, -1, -1, -1, v, tg, 1, -1, -1, -1, -1, ph]  # noqa: E731
    ann = {
        "0": [[-1] * 14 + [0]],
        "1": [vec(17, 0, 1, 0, 1)],
        "2": [vec(17, 0, 1, 0, 3), vec(60, 2, 2, 0, 3)],
    }
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / "labels" / "VID01.json").write_text(
        json.dumps({"video": 1, "fps": 1, "num_frames": 3, "annotations": ann})
    )
    for f in range(3):
        _png(root / "videos" / "VID01" / f"{f:06d}.png", 100 + f)
    return root


@pytest.fixture(scope="session")
def endovis_root(tmp_path_factory) -> Path:
    return write_endovis18(tmp_path_factory.mktemp("ev18") / "EndoVis-18-VQA")


@pytest.fixture(scope="session")
def cholect_root(tmp_path_factory) -> Path:
    return write_cholect50(tmp_path_factory.mktemp("ct50"))


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory) -> Path:
    """A tiny synthetic world with the layouts the reasoning records come from."""
    from surgkit.synth import generate_world

    out = tmp_path_factory.mktemp("world") / "w"
    generate_world(
        out, preset="tiny", seed=0, layouts="vlm,vqla,cholect50,endoscapes,copesd,boxes", progress=False
    )
    return out
