import json

import pytest

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.reasoning import boxes as bx
from surgkit.reasoning.records import Record, read_records, resolve_image, write_jsonl

from .helpers import location_rec, phase_rec, rec


def test_vqla_pixel_convention_hand_case():
    # 1-based inclusive columns 101..400 are 0-based 100..399, i.e. [100, 400) exclusive: width 300.
    assert bx.from_vqla_pixels([101, 201, 400, 500]) == (100.0, 200.0, 400.0, 500.0)
    assert bx.to_vqla_pixels((100.0, 200.0, 400.0, 500.0)) == (101, 201, 400, 500)
    # the Surgical-VQLA loader: -1, cxcywh, / (1280, 1024): cx = (100 + 399) / 2 / 1280
    cx, cy, w, h = bx.vqla_legacy_cxcywh([101, 201, 400, 500])
    assert cx == pytest.approx(249.5 / 1280) and w == pytest.approx(299 / 1280)
    assert cy == pytest.approx(349.5 / 1024) and h == pytest.approx(299 / 1024)
    # spec metrics_formats §4.3: legacy normalised xyxy of that GT box
    assert bx.vqla_legacy_cxcywh_to_norm_xyxy((cx, cy, w, h)) == pytest.approx(
        (0.078125, 0.1953125, 0.31171875, 0.48730469), abs=1e-8
    )


@pytest.mark.parametrize("frame", ["pixel", "norm", "norm1000", "input"])
def test_frame_round_trip(frame):
    box = (128.0, 102.4, 640.0, 512.0)
    size = bx.qwen25_input_size(1280, 1024)
    there = bx.to_frame(box, frame, 1280, 1024, size)
    back = bx.from_frame(there, frame, 1280, 1024, size)
    assert back == pytest.approx(box, abs=1280 / 1000)


def test_frames_hand_values():
    box = (128.0, 102.4, 640.0, 512.0)
    assert bx.to_frame(box, "norm", 1280, 1024) == pytest.approx((0.1, 0.1, 0.5, 0.5))
    assert bx.to_frame(box, "norm1000", 1280, 1024) == (100, 100, 500, 500)
    # Qwen2.5-VL smart_resize of 1280x1024 (max 1280 tokens of 28x28): sides multiples of 28
    w, h = bx.qwen25_input_size(1280, 1024)
    assert w % 28 == 0 and h % 28 == 0 and w * h <= 28 * 28 * 1280
    assert bx.qwen25_input_size(56, 56) == (56, 56)
    with pytest.raises(SurgkitError, match="model-input size"):
        bx.to_frame(box, "input", 1280, 1024)


def test_iou_edge_cases():
    assert bx.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert bx.iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0  # disjoint: 0 (legacy code gives > 0)
    assert bx.iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges, exclusive corners
    assert bx.iou((0, 0, 10, 10), (2, 2, 4, 4)) == pytest.approx(4 / 100)  # contained
    assert bx.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert bx.iou((5, 5, 5, 9), (0, 0, 10, 10)) == 0.0  # degenerate
    assert bx.clip_box((-5, -5, 50, 50), 20, 30) == (0, 0, 20, 30)


def test_quadrant_and_grid():
    assert bx.quadrant((700, 60, 1180, 430), 1280, 1024) == "right-top"
    assert bx.quadrant((0, 600, 100, 1000), 1280, 1024) == "left-bottom"
    assert bx.grid_name(*bx.grid_cell((40, 30, 60, 50), 100, 80)) == "centre"
    assert bx.grid_name(*bx.grid_cell((0, 0, 10, 10), 100, 80)) == "upper left"


def test_record_round_trip(tmp_path):
    recs = [phase_rec(), location_rec()]
    path = tmp_path / "r.jsonl"
    assert write_jsonl(path, recs) == 2
    back = read_records(path)
    assert [r.to_dict() for r in back] == [r.to_dict() for r in recs]
    assert back[1].answer_box() == (700.0, 60.0, 1180.0, 430.0)


def test_malformed_lines_name_file_and_line(tmp_path):
    good = json.dumps(phase_rec().to_dict())
    bad_box = dict(phase_rec().to_dict(), id="x2", boxes=[dict(label="hook", bbox=[60, 10, 190, 30])])
    unknown_task = dict(phase_rec().to_dict(), id="x3", task="dance")
    path = tmp_path / "r.jsonl"
    path.write_text(
        "\n".join([good, "{not json", json.dumps(bad_box), json.dumps(unknown_task), good]) + "\n"
    )
    with pytest.raises(DataFormatError, match=r"r\.jsonl:2: malformed or truncated JSON"):
        read_records(path)
    errors = []
    recs = read_records(path, errors=errors)
    assert len(recs) == 1  # the duplicate id on line 5 is an error too
    msgs = [str(e) for e in errors]
    assert any(":2:" in m for m in msgs)
    assert any(":3:" in m and "outside the 100x80 image" in m for m in msgs)
    assert any(":4:" in m and "unknown task 'dance'" in m for m in msgs)
    assert any(":5:" in m and "duplicate id" in m for m in msgs)


def test_missing_fields_and_images(tmp_path):
    with pytest.raises(SurgkitError, match="missing field 'answer'"):
        Record.from_dict({k: v for k, v in phase_rec().to_dict().items() if k != "answer"})
    with pytest.raises(SurgkitError, match="needs path, width and height"):
        rec(images=[dict(path="a.png")])
    with pytest.raises(SurgkitError, match="image not found"):
        resolve_image(phase_rec(), tmp_path)
