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


def test_demo_step_flags_the_copy_only(tmp_path):
    world = make_world(tmp_path / "world")
    ctx = DemoContext(workdir=tmp_path / "work", size="tiny", artifacts={"world": world})
    section = demo_step(ctx)
    m = section.metrics
    assert section.status == "ok", section.notes
    assert m["datasets_read"] == 3 and m["videos"] == 3 + 4 + 1
    assert m["copy_refused"] and m["copy_similarity"] >= 0.5  # clips of 1.5-2.4 s: fewer stable hashes
    assert m["false_positive_pairs"] == 0 and m["distinct_pairs_compared"] == 3 + 6
    louo = [t for t in section.tables if t[0].startswith("JIGSAWS")][0]
    assert [r[1] for r in louo[2]] == ["user B", "user C", "user D"]
