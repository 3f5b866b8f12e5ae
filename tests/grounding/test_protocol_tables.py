"""Protocol options: validation, recorded in every output, tables that refuse mixed protocols, the
seed's Table 1 layout (CoPESD as a column), and the Cholec80-Boxes / CholecT45-50 join."""

from __future__ import annotations

import json

import pytest

from surgkit.errors import SurgkitError
from surgkit.grounding.benchmark import BenchSettings, run_benchmark
from surgkit.grounding.frames import GroundingFrame
from surgkit.grounding.protocol import HeatmapOptions, caption, protocol_conflicts
from surgkit.grounding.sources import infer_frame_map, load_frames
from surgkit.grounding.tables import instrument_table, run_markdown, tables_for
from surgkit.vocab import CHOLEC80_TOOLS, TRIPLET_COMPONENTS

from .known_answers import instrument_frames, scripted
from .miniworld import write_mini_world


def _summary(tmp_path, name, dataset="cholec80_boxes", **settings):
    adapter = scripted("instrument")
    adapter.name = name
    return run_benchmark(adapter, instrument_frames(), CHOLEC80_TOOLS, BenchSettings(**settings),
                         tmp_path / f"{name}-{dataset}", dataset=dataset, progress=False)  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("preprocessing", "native", "unknown preprocessing 'native'"),
        ("heatmap_target", "predicted", "unknown heatmap target"),
        ("triplet_pool", "94", "unknown triplet pool"),
        ("validity", "either", "unknown validity rule"),
        ("out_of_pool", "drop", "unknown out-of-pool policy"),
        ("threshold", "=>", "unknown threshold rule"),
        ("gradcam_layer", "conv3", "unknown Grad-CAM layer"),
        ("rollout_order", "left", "unknown rollout order"),
        ("tau", 0.0, "tau must be in"),
    ],
)
def test_settings_are_validated(field, value, message):
    with pytest.raises(SurgkitError, match=message):
        BenchSettings(**{field: value})


def test_defaults_are_the_documented_ones():
    s = BenchSettings()
    assert (s.tau, s.threshold, s.preprocessing, s.heatmap_target) == (0.5, ">=", "official", "pred")
    assert (s.triplet_pool, s.validity, s.out_of_pool) == ("valid", "same-triplet", "exclude")
    assert s.heatmap_options() == HeatmapOptions("layer4", 0, "logit", "later-left")


def test_table1_layout_has_cholec80_videos_and_a_copesd_column(tmp_path):
    runs = [
        _summary(tmp_path, "CLIP-ViT"),
        _summary(tmp_path, "CLIP-ViT", "copesd"),
        _summary(tmp_path, "SurgVLP"),
    ]
    title, header, rows = instrument_table(runs)
    assert header == ["Model", "video01 τ-AC", "video01 τ-AA", "video02 τ-AC", "video02 τ-AA", "CoPESD τ-AC",
                      "CoPESD τ-AA"]  # fmt: skip
    assert [r[0] for r in rows] == ["CLIP-ViT", "SurgVLP"]  # one row per model, datasets as columns
    o = runs[1]["overall"]
    assert rows[0][5:] == [round(o["tau_ac"], 4), round(o["tau_aa"], 4)] and rows[1][5:] == ["-", "-"]
    assert rows[0][1] == round(runs[0]["videos"]["video01"]["tau_ac"], 4)
    assert "τ = 0.5 (>=)" in title and "preprocessing official" in title and "heatmap target pred" in title
    with pytest.raises(SurgkitError, match="two runs of model 'CLIP-ViT' on dataset 'copesd'"):
        instrument_table([*runs, _summary(tmp_path / "again", "CLIP-ViT", "copesd")])


def test_tables_refuse_mixed_protocols_unless_told(tmp_path):
    a = _summary(tmp_path, "A")
    b = _summary(tmp_path, "B", threshold=">", preprocessing="full-frame")
    with pytest.raises(SurgkitError, match=r"threshold: '>' vs '>='.*preprocessing|preprocessing.*threshold"):
        tables_for([a, b])
    text = run_markdown([a, b], allow_mixed=True)
    assert "MIXED PROTOCOLS" in text and "threshold" in text
    assert "MIXED" not in run_markdown([a, _summary(tmp_path, "C")])


def test_heatmap_settings_conflict_only_within_one_method():
    grad = {"method": "gradcam", "layer": "image.trunk.layer4", "target": "cos"}
    roll = {"method": "chefer_rollout", "blocks": "all", "start": 0, "target": "cos", "order": "later-left"}
    base = {"task": "instrument", "tau": 0.5}
    assert protocol_conflicts([{**base, "heatmap": grad}, {**base, "heatmap": roll}]) == []
    other = {**roll, "blocks": "last", "start": -1}
    assert protocol_conflicts([{**base, "heatmap": roll}, {**base, "heatmap": other}])[0].startswith(
        "chefer_rollout"
    )
    text = caption(
        {**base, "threshold": ">=", "preprocessing": "official", "heatmap_target": "pred"}, [grad, roll]
    )
    assert "Grad-CAM on image.trunk.layer4" in text and "Chefer rollout (blocks all" in text


def test_protocol_is_in_every_output_file(tmp_path):
    s = _summary(tmp_path, "A", heatmap_target="gt", threshold=">")
    run = tmp_path / "A-cholec80_boxes"
    for name in ("summary.json", "run_config.json"):
        p = json.loads((run / name).read_text())["protocol"]
        assert (p["heatmap_target"], p["threshold"], p["preprocessing"]) == ("gt", ">", "official")
    assert "heatmap target gt" in (run / "table.md").read_text() and s["protocol"]["tau"] == 0.5


# ----------------------------------------------------------------------------------------- joins
def _frames(video, numbers):
    return [GroundingFrame(video, n, None, boxes={"grasper": [(0, 0, 1, 1)]}) for n in numbers]


def test_frame_numbering_is_read_from_the_numbers():
    assert infer_frame_map(_frames("video42", [0, 25, 50, 100]))[0] == "div25"
    assert infer_frame_map(_frames("video42", [3, 4, 5, 9]))[0] == "identity"
    with pytest.raises(SurgkitError, match="cannot tell the numbering.*--frame-map"):
        infer_frame_map(_frames("video42", [0, 5, 10]))
    with pytest.raises(SurgkitError, match="cannot tell"):
        infer_frame_map(_frames("video42", [25]))  # one frame per video says nothing


def test_a_join_without_frames_says_why(tmp_path):
    world = write_mini_world(tmp_path / "w", videos=(1, 2), frames=3)
    rows = (
        (world / "cholec80_boxes" / "cholec80_boxes.csv")
        .read_text()
        .replace("\n1,video01,Video_01", "\n41,video41,Video_41")
    )
    rows = rows.replace("\n2,video02,Video_02", "\n44,video44,Video_44")
    (world / "cholec80_boxes" / "cholec80_boxes.csv").write_text(rows)
    with pytest.raises(SurgkitError, match=r"no shared video numbers \(boxes: 41, 44; triplets: 1, 2\)"):
        load_frames("cholect50", world / "cholect50", "triplet", boxes_root=world / "cholec80_boxes")
    world2 = write_mini_world(tmp_path / "w2", videos=(1,), frames=3)
    csv = world2 / "cholec80_boxes" / "cholec80_boxes.csv"
    csv.write_text(csv.read_text().replace("Video_01_00000", "Video_01_00075"))  # frames 25, 50, 75
    with pytest.raises(SurgkitError, match=r"videos 1 are on both sides but no frame matches after --frame-map "
                       r"identity \(box frames 25\.\.75 map to 25\.\.75, triplet frames 0\.\.2\)"):  # fmt: skip
        load_frames("cholect50", world2 / "cholect50", "triplet", boxes_root=csv.parent, frame_map="identity")


def test_semicolon_delimited_box_csv_is_read(tmp_path):
    world = write_mini_world(tmp_path / "w", videos=(1,), frames=2)
    csv = world / "cholec80_boxes" / "cholec80_boxes.csv"
    csv.write_text(csv.read_text().replace(",", ";"))
    src = load_frames("cholec80_boxes", csv, "instrument")
    assert len(src.frames) == 2 and src.frames[0].boxes["grasper"] == [(6.0, 8.0, 36.0, 28.0)]
    assert TRIPLET_COMPONENTS[17] == (0, 1, 0)
