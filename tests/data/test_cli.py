"""``surgkit data check|splits|leakage`` through the real entry point."""

from __future__ import annotations

import json

from .helpers import encode, textured_frames
from .test_jigsaws import trials_of, write_task
from .test_phase_readers import make_cholec80


def test_check_prints_summary_and_problems(run_cli, tmp_path):
    make_cholec80(tmp_path, n_videos=1, video=False)
    code, out, err = run_cli("data", "check", "--dataset", "cholec80", "--root", tmp_path, "--labels-only")
    assert code == 0, err
    assert "cholec80" in out and "CalotTriangleDissection" in out and "no video file" in out
    code, out, _ = run_cli(
        "data", "check", "--dataset", "cholec80", "--root", tmp_path, "--labels-only", "--json"
    )
    summary = json.loads(out)
    assert (
        summary["counts"]["videos"] == 1 and summary["classes"]["phase (labelled frames)"]["Preparation"] == 2
    )
    assert summary["skipped"][0]["item"] == "video01"


def test_check_bad_input_is_one_line_exit_2(run_cli, tmp_path):
    make_cholec80(tmp_path, n_videos=1, video=False)
    code, out, err = run_cli("data", "check", "--dataset", "cholec80", "--root", tmp_path)
    assert code == 2 and "missing video for video01" in err and "Traceback" not in err
    code, _, err = run_cli("data", "check", "--dataset", "nosuch", "--root", tmp_path)
    assert code == 2 and "unknown dataset 'nosuch'" in err


def test_splits_json(run_cli, tmp_path):
    write_task(tmp_path, "Needle_Passing", trials_of("Needle_Passing"))
    code, out, err = run_cli(
        "data", "splits", "--dataset", "jigsaws", "--root", tmp_path, "--scheme", "LOUO", "--json"
    )
    assert code == 0, err
    folds = json.loads(out)
    assert len(folds) == 7 and folds[0]["scheme"] == "LOUO" and all(f["test"] for f in folds)
    code, out, _ = run_cli("data", "splits", "--dataset", "jigsaws", "--root", tmp_path, "--scheme", "LOSO")
    assert code == 0 and "[LOSO] 1_Out: train 23, val 0, test 5" in out
    code, _, err = run_cli(
        "data", "splits", "--dataset", "jigsaws", "--root", tmp_path, "--scheme", "official"
    )
    assert code == 2 and "no single official split" in err


def test_leakage_across_roots(run_cli, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    frames = textured_frames(3, 40, size=64)
    encode(a / "video01.mp4", frames, fps=10)
    encode(a / "video02.mp4", textured_frames(4, 40, size=64), fps=10)
    encode(b / "other_name.mp4", frames, fps=10, size=(48, 48), crf=35)
    code, out, err = run_cli("data", "leakage", a, b, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [(p["a"], p["b"]) for p in report["pairs"]] == [("a:video01.mp4", "b:other_name.mp4")]
    assert report["media"] == {str(a): 2, str(b): 1}
