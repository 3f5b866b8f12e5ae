"""JIGSAWS reader and its cross-validation schemes on name-only fixtures with the real trial lists."""

from __future__ import annotations

import pytest

from surgkit.data import jigsaws
from surgkit.data.splits import jigsaws_setup_folds, make_splits
from surgkit.errors import DataFormatError

from .helpers import write

# Oracle: the 4-fold lists of spec skill.md §1.2 (MUSDL splits.pkl), as text. Their union is each task's
# full trial list (39/36/28 trials, matching the spec's counts table: SU lacks H002, NP has no user G).
SPEC_4FOLD = {
    "Suturing": [
        "B001 C002 C003 D004 E001 E004 F004 G004 I002",
        "C004 C005 D003 D005 E003 F005 G002 G003 H001 H005",
        "B003 B005 D001 E005 F001 F002 F003 H004 I004 I005",
        "B002 B004 C001 D002 E002 G001 G005 H003 I001 I003",
    ],
    "Knot_Tying": [
        "B001 C004 F005 G001 G003 H003 H005 I001 I002",
        "B004 D005 E001 E002 E003 E004 E005 G004 G005",
        "B002 B003 C001 D001 D002 F001 G002 H004 I005",
        "C002 C003 C005 D003 D004 F002 F003 F004 I003",
    ],
    "Needle_Passing": [
        "B002 B003 B004 C002 D004 E004 F004",
        "D001 D005 E003 E005 H002 H005 I004",
        "B001 C003 C004 C005 E001 F003 I002",
        "C001 D002 D003 F001 H004 I003 I005",
    ],
}
SPEC_LOSO = {"Suturing": [8, 7, 8, 8, 8], "Knot_Tying": [7, 7, 8, 7, 7], "Needle_Passing": [5, 5, 6, 7, 5]}
SPEC_COUNTS = {"Suturing": 39, "Knot_Tying": 36, "Needle_Passing": 28}


def trials_of(task: str) -> list[str]:
    return sorted(f"{task}_{s}" for fold in SPEC_4FOLD[task] for s in fold.split())


def write_task(root, task, trials, video_for=()):
    lines = []
    for k, t in enumerate(trials):
        items = [1 + (k + j) % 5 for j in range(6)]
        lines.append(f"{t}\t\t{'NIE'[k % 3]}\t{sum(items)}\t\t" + "\t".join(map(str, items)))
    write(root / task / f"meta_file_{task}.txt", "\n".join(lines) + "\n")
    for t in video_for:
        write(root / task / "video" / f"{t}_capture1.avi", "")
    return root


@pytest.fixture(scope="module")
def jroot(tmp_path_factory):
    root = tmp_path_factory.mktemp("jigsaws")
    for task in SPEC_4FOLD:
        write_task(root, task, trials_of(task))
    return root


def test_meta_file_spec_example(tmp_path):
    write(
        tmp_path / "Suturing" / "meta_file_Suturing.txt",
        "Suturing_B001\t\tN\t13\t\t2\t2\t2\t2\t3\t2\nSuturing_C002\t\tI\t18\t\t3\t3\t3\t3\t3\t3\n"
        "Suturing_D003\t\tE\t24\t\t4\t4\t4\t4\t4\t4\n",
    )
    write(tmp_path / "Suturing" / "transcriptions" / "Suturing_B001.txt", "78 240 G1 \n241 399 G5\n")
    ds = jigsaws.load(tmp_path, task="SU")
    assert list(ds.videos) == ["Suturing_B001", "Suturing_C002", "Suturing_D003"]
    s = ds.skill["Suturing_B001"]
    assert s.score == 13 and s.level == "N" and list(s.items.values()) == [2, 2, 2, 2, 3, 2]
    assert ds.videos["Suturing_C002"].subject == "C" and ds.videos["Suturing_D003"].extra["super_trial"] == 3
    assert [(g.start, g.end, g.label) for g in ds.segments] == [(77, 239, "G1"), (240, 398, "G5")]
    # no video files: trials are kept for the folds and reported, not dropped silently
    assert {k.item for k in ds.skipped} == set(ds.videos) and all(
        "no capture1 video" in k.reason for k in ds.skipped
    )


def test_grs_must_equal_item_sum(tmp_path):
    write(tmp_path / "Suturing" / "meta_file_Suturing.txt", "Suturing_B001\t\tN\t14\t\t2\t2\t2\t2\t3\t2\n")
    with pytest.raises(DataFormatError, match=r"meta_file_Suturing.txt:1: GRS 14 != sum"):
        jigsaws.load(tmp_path, task="Suturing")


def test_item_out_of_range_and_column_count(tmp_path):
    write(tmp_path / "Suturing" / "meta_file_Suturing.txt", "Suturing_B001\t\tN\t13\t\t2\t2\t2\t2\t6\t-1\n")
    with pytest.raises(DataFormatError, match=r":1: overall_performance = 6 out of range \[1, 5\]"):
        jigsaws.load(tmp_path, task="Suturing")
    write(tmp_path / "Suturing" / "meta_file_Suturing.txt", "Suturing_B001\t\tN\t13\t\t2\t2\t2\t2\t3\n")
    with pytest.raises(DataFormatError, match=r":1: expected 9 fields .* found 8"):
        jigsaws.load(tmp_path, task="Suturing")


@pytest.mark.parametrize("task", list(SPEC_4FOLD))
def test_loso_louo_match_spec(jroot, task):
    ds = jigsaws.load(jroot, task=task)
    assert len(ds.videos) == SPEC_COUNTS[task]
    loso = make_splits(ds, "LOSO")
    assert [len(s.test) for s in loso] == SPEC_LOSO[task]
    louo = make_splits(ds, "LOUO")
    assert len(louo) == (7 if task == "Needle_Passing" else 8)
    assert all(3 <= len(s.test) <= 5 for s in louo)
    for folds in (loso, louo):
        tests = [t for s in folds for t in s.test]
        assert sorted(tests) == sorted(ds.videos)  # folds partition the trials
        for s in folds:
            assert set(s.train) | set(s.test) == set(ds.videos) and not set(s.train) & set(s.test)
    for s in louo:  # no surgeon on both sides
        assert not {ds.videos[t].subject for t in s.train} & {ds.videos[t].subject for t in s.test}


@pytest.mark.parametrize("task", list(SPEC_4FOLD))
def test_four_fold_table_matches_spec(jroot, task):
    ds = jigsaws.load(jroot, task=task)
    folds = make_splits(ds, "4fold")
    assert [sorted(s.test) for s in folds] == [
        sorted(f"{task}_{x}" for x in f.split()) for f in SPEC_4FOLD[task]
    ]
    assert sorted(t for s in folds for t in s.test) == sorted(ds.videos)
    assert all(not s.notes for s in folds)


def test_official_setup_files_agree_with_derived_louo(tmp_path):
    task = "Needle_Passing"
    trials = trials_of(task)
    write_task(tmp_path, task, trials)
    users = sorted({t.split("_")[-1][0] for t in trials})
    base = tmp_path / "Experimental_setup" / task / "unBalanced" / "GestureRecognition" / "UserOut"
    for u in users:
        k = "BCDEFGHI".index(u) + 1  # 1_Out..8_Out map to B..I; NP has no 6_Out
        for part, chosen in (
            ("Test", [t for t in trials if t.split("_")[-1][0] == u]),
            ("Train", [t for t in trials if t.split("_")[-1][0] != u]),
        ):
            lines = [f"{t}_000080_002050.txt           {t}.txt" for t in chosen]
            write(base / f"{k}_Out" / "itr_1" / f"{part}.txt", "\n".join(lines) + "\n")
    from_files = jigsaws_setup_folds(tmp_path, task, "LOUO")
    assert "6_Out" not in [s.name for s in from_files]
    derived = make_splits(jigsaws.load(tmp_path, task=task), "LOUO")
    assert [sorted(s.test) for s in from_files] == [sorted(s.test) for s in derived]
    assert [sorted(s.train) for s in from_files] == [sorted(s.train) for s in derived]
