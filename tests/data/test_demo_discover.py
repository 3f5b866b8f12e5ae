"""Dataset discovery and the demo step on a small hand-made world (real synth world: test_synth_roundtrip)."""

from __future__ import annotations

from surgkit.data.demo import demo_step
from surgkit.data.discover import discover
from surgkit.demo import DemoContext

from .helpers import encode, textured_frames, write
from .test_jigsaws import write_task
from .test_phase_readers import make_cholec80


def make_world(root):
    make_cholec80(root / "cholec80", n_videos=3, frames=60)
    trials = ["Suturing_B001", "Suturing_B002", "Suturing_C001", "Suturing_D001"]
    write_task(root / "jigsaws", "Suturing", trials)
    for k, t in enumerate(trials):
        encode(
            root / "jigsaws" / "Suturing" / "video" / f"{t}_capture1.avi",
            textured_frames(20 + k, 45, size=64),
            fps=30,
        )
    write(
        root / "cvs" / "surgeons_annotations.csv",
        "video,initial_minute,initial_second,final_minute,final_second,two_structures,cystic_plate,hepatocystic_triangle\n1,0,0,0,1,1,1,1\n",
    )
    return root


def test_discover_finds_layouts(tmp_path):
    make_world(tmp_path)
    found = discover(tmp_path)
    assert found == {
        "cholec80": tmp_path / "cholec80",
        "jigsaws": tmp_path / "jigsaws",
        "cholec80_cvs": tmp_path / "cvs",
    }


def test_demo_step_on_the_synthetic_world(synth_world, tmp_path):
    world, manifest = synth_world
    ctx = DemoContext(workdir=tmp_path / "work", size="tiny", artifacts={"world": world})
    section = demo_step(ctx)
    m = section.metrics
    assert section.status == "ok", section.notes
    read = {row[0] for row in section.tables[0][2]}
    assert {"cholec80", "cholect50", "endoscapes", "cholec80_boxes", "endovis18_vqla", "jigsaws"} <= read
    assert m["reader_errors"] == 0 and m["copy_refused"] and m["copy_similarity"] >= 0.8
    n_lap, n_jig = len(manifest["videos"]), len(manifest["trials"])
    assert (
        m["false_positive_pairs"] == 0
        and m["distinct_pairs_compared"] >= n_lap * (n_lap - 1) // 2 + n_jig * (n_jig - 1) // 2
    )
    louo = [t for t in section.tables if t[0].startswith("JIGSAWS")][0]
    assert [r[1] for r in louo[2]] == [f"user {u}" for u in manifest["layouts"]["jigsaws"]["users"]]
