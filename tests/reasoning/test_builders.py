import pytest

from surgkit.errors import SurgkitError
from surgkit.reasoning.builders import build
from surgkit.reasoning.cot import validate_chain
from surgkit.reasoning.pipeline import build_records_file, validate_records_file
from surgkit.reasoning.render import render_target
from surgkit.reasoning.synth_adapter import build_from_world, find_layouts

from .conftest import write_cholect50, write_endovis18


def test_endovis18_records(endovis_root):
    rep = build("endovis18_vqla", endovis_root)
    assert rep.counts() == {"vqla": 12} and rep.skipped == []
    by_id = {r.id: r for r in rep.records}
    loc = by_id["endovis18_vqla/seq_1/frame000/q2"]
    assert loc.split == "test" and by_id["endovis18_vqla/seq_2/frame000/q2"].split == "train"
    assert loc.question_type == "location" and loc.labels["object"] == "bipolar_forceps"
    # 1-based inclusive (70, 5, 120, 40) -> internal (69, 4, 120, 40); the organ box is a context box
    assert loc.answer_box() == (69.0, 4.0, 120.0, 40.0)
    assert [b.label for b in loc.boxes if b.role == "context"] == ["kidney"]
    assert (
        loc.labels["states"] == {"bipolar_forceps": "Tissue_Manipulation"} and loc.labels["organ"] == "kidney"
    )
    assert loc.images[0].path == "seq_1/left_frames/frame000.png" and loc.size == (128, 96)
    for r in rep.records:
        assert validate_chain(render_target(r, "cot"), r) == [], r.id


def test_cholect50_records(cholect_root):
    rep = build("cholect50", cholect_root)
    assert rep.counts() == {"triplet": 3, "tool_presence": 3, "phase": 3}
    by_id = {r.id: r for r in rep.records}
    assert by_id["cholect50/VID01/000000/triplet"].answer == "none"
    assert (
        by_id["cholect50/VID01/000002/triplet"].answer
        == "grasper,retract,gallbladder; hook,dissect,gallbladder"
    )
    assert by_id["cholect50/VID01/000002/tools"].answer == "grasper, hook"
    assert by_id["cholect50/VID01/000002/phase"].answer == "GallbladderDissection"  # phase id 3
    assert by_id["cholect50/VID01/000001/phase"].answer == "CalotTriangleDissection"
    for r in rep.records:
        assert validate_chain(render_target(r, "cot"), r) == [], r.id


def test_missing_images_are_reported_not_dropped(tmp_path):
    root = write_endovis18(tmp_path / "ev")
    (root / "seq_2" / "left_frames" / "frame001.png").unlink()
    with pytest.raises(SurgkitError, match="missing frame image"):
        build("endovis18_vqla", root)
    rep = build("endovis18_vqla", root, require_media=False)
    assert rep.counts() == {"vqla": 9}
    assert any("seq_2/frame001" in item for item, _ in rep.skipped)


def test_box_outside_image_is_skipped_with_reason(tmp_path):
    root = write_endovis18(tmp_path / "ev")
    lab = root / "seq_1" / "vqla" / "label" / "frame000_QA.txt"
    lab.write_text(lab.read_text().replace("70, 5, 120, 40", "70, 5, 900, 40"))
    rep = build("endovis18_vqla", root)
    assert rep.counts() == {"vqla": 10}
    assert any("outside the 128x96 image" in why for _, why in rep.skipped)


def test_synth_adapter_finds_layouts(tmp_path):
    write_endovis18(tmp_path / "w" / "endovis" / "EndoVis-18-VQA")
    write_cholect50(tmp_path / "w" / "cholect50")
    layouts = find_layouts(tmp_path / "w")
    assert set(layouts) == {"endovis18_vqla", "cholect50"}
    rep = build_from_world(tmp_path / "w")
    assert len(rep.records) == 21 and all(r.id.startswith("synth-") for r in rep.records)
    r = next(r for r in rep.records if r.task == "triplet")
    assert r.images[0].path == "cholect50/videos/VID01/000000.png"
    with pytest.raises(SurgkitError, match="no native dataset layout"):
        build_from_world((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_build_file_with_cot_and_validate(endovis_root, tmp_path):
    res = build_records_file("endovis18_vqla", endovis_root, tmp_path / "r.jsonl", cot=True)
    assert res["written"] == 12 and res["template_failures"] == []
    v = validate_records_file(tmp_path / "r.jsonl", endovis_root, check_images=True)
    assert v == {"records": 12, "line_errors": [], "chains_valid": 12, "chain_problems": []}
    v2 = validate_records_file(tmp_path / "r.jsonl", tmp_path, check_images=True)
    assert len(v2["line_errors"]) == 12 and "image not found" in v2["line_errors"][0]


def test_records_from_the_synthetic_world(synth_world):
    import json

    from surgkit.reasoning import boxes as bx

    rep = build_from_world(synth_world)
    manifest = json.loads((synth_world / "world.json").read_text())["layouts"]["vqla"]
    datasets = {r.dataset for r in rep.records}
    assert {"synth-vlm", "synth-endovis18_vqla", "synth-cholect50", "synth-endoscapes"} <= datasets
    vqla = [r for r in rep.records if r.dataset == "synth-endovis18_vqla"]
    test_seqs = {f"seq_{n}" for n in manifest["test_sequences"]}
    assert all((r.split == "test") == (r.video_id in test_seqs) for r in vqla)
    # EndoVis-layout location answers equal the quadrant of the (scaled) box centre
    locs = [r for r in vqla if r.question_type == "location"]
    assert locs and all(bx.quadrant(r.answer_box(), *r.size) == r.answer for r in locs)
    # where the world's answer is not the box-centre quadrant (vlm file: a few), the chain makes no centre claim
    for r in (r for r in rep.records if r.question_type == "location"):
        claims = "has its centre in" in render_target(r, "cot")
        assert claims == (bx.quadrant(r.answer_box(), *r.size) == r.answer)
    assert all(bx.inside_image(b.bbox, *r.size) for r in rep.records for b in r.boxes)
    # every template chain passes the validator; chains with triplets state them in Level 2
    for r in rep.records:
        assert validate_chain(render_target(r, "cot"), r) == [], r.id
    assert any(r.labels.get("triplets") and r.dataset == "synth-vlm" for r in rep.records)


def test_validate_reports_unknown_answers(endovis_root, tmp_path):
    import json

    build_records_file("endovis18_vqla", endovis_root, tmp_path / "r.jsonl")
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    bad = json.loads(lines[1])
    bad["answer"] = "Dancing"
    lines[1] = json.dumps(bad)
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    v = validate_records_file(tmp_path / "r.jsonl")
    assert any("unknown VQLA answer 'Dancing'" in p for p in v["line_errors"])
