"""``surgkit eval``: file formats, tables, --json and one-line errors naming file and line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from surgkit.metrics.phase import evaluate as phase_evaluate
from surgkit.metrics.triplet import evaluate as triplet_evaluate
from surgkit.metrics.vqla import evaluate as vqla_evaluate
from surgkit.metrics.vqla import vqla_gt_to_normalized

G_A = [0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2]
P_A = [0, 0, 0, 1, 0, 1, 1, 1, 2, 2, 2, 1]
G_B = [0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3]
P_B = [0, 0, 1, 1, 2, 2, 2, 2, 2, 3, 2]


def _phase_csv(path, videos, column="phase", names=False):
    from surgkit.vocab import CHOLEC80_PHASES

    lines = [f"video,frame,{column}"]
    for name, seq in videos.items():
        lines += [f"{name},{i},{CHOLEC80_PHASES[x] if names else x}" for i, x in enumerate(seq)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_phase_relaxed_from_csv_json_npz_equals_python_api(run_cli, tmp_path):
    labels = _phase_csv(tmp_path / "gt.csv", {"video41": G_A, "video42": G_B}, names=True)
    (tmp_path / "pred.json").write_text(json.dumps({"video42": P_B, "video41": P_A}))
    np.savez(tmp_path / "pred.npz", video41=np.array(P_A), video42=np.array(P_B))
    expected = phase_evaluate([G_A, G_B], [P_A, P_B], 7, "relaxed", fps=0.2)
    for pred in ("pred.json", "pred.npz"):
        code, out, err = run_cli(
            "eval", "phase", labels, tmp_path / pred, "--protocol", "relaxed", "--fps", "0.2", "--json"
        )
        assert code == 0, err
        res = json.loads(out)
        assert res["precision"] == pytest.approx(expected["precision"])
        assert res["video_accuracy"] == pytest.approx(0.829545, abs=1e-6)
        assert res["jaccard"] is None  # NaN -> null in strict JSON
        assert res["protocol"]["variant"] == "cholec80" and res["protocol"]["relaxed_fixed"] is False
    code, out, _ = run_cli("eval", "phase", labels, tmp_path / "pred.npz", "--segmental")
    assert code == 0 and "video accuracy" in out and "edit score" in out and "CalotTriangleDissection" in out


def test_phase_errors_name_file_and_line(run_cli, tmp_path):
    labels = _phase_csv(tmp_path / "gt.csv", {"v1": G_A})
    bad = tmp_path / "bad.csv"
    bad.write_text("video,frame,phase\nv1,0,0\nv1,1,Dissection\n")
    code, _, err = run_cli("eval", "phase", labels, bad)
    assert code == 2 and "bad.csv:3:" in err and "'Dissection'" in err and "Traceback" not in err
    bad.write_text("video,frame,phase\nv1,0,0\nv1,0,1\n")
    code, _, err = run_cli("eval", "phase", labels, bad)
    assert code == 2 and "bad.csv:3:" in err and "frame 0 appears twice" in err
    short = _phase_csv(tmp_path / "short.csv", {"v1": P_A[:5]})
    code, _, err = run_cli("eval", "phase", labels, short)
    assert code == 2 and "video v1: 12 labelled frames but 5 predicted" in err
    shifted = tmp_path / "shifted.csv"  # same length, different frame indices: refused as Main.m does
    shifted.write_text("video,frame,phase\n" + "".join(f"v1,{i + 25},{x}\n" for i, x in enumerate(P_A)))
    code, _, err = run_cli("eval", "phase", labels, shifted)
    assert code == 2 and "video v1: predicted frame 25 where the labels have frame 0" in err
    other = _phase_csv(tmp_path / "other.csv", {"v2": P_A})
    code, _, err = run_cli("eval", "phase", labels, other)
    assert code == 2 and "no predictions for video(s) v1" in err
    oob = _phase_csv(tmp_path / "oob.csv", {"v1": [9] * 12})
    code, _, err = run_cli("eval", "phase", labels, oob)
    assert code == 2 and "oob.csv:2: phase id 9 outside 0..6" in err
    np.savez(tmp_path / "obj.npz", v1=np.array(["a", None], dtype=object))
    code, _, err = run_cli("eval", "phase", labels, tmp_path / "obj.npz")
    assert code == 2 and "obj.npz" in err and "pickle" in err


def _triplet_data(rng):
    y = (rng.random((30, 100)) < 0.1).astype(int)
    s = rng.random((30, 100))
    vids = np.repeat(["VID01", "VID02", "VID03"], 10)
    return y, s, vids


def test_triplet_npz_and_csv(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    y, s, vids = _triplet_data(rng)
    np.savez(tmp_path / "t.npz", targets=y, video_ids=vids)
    np.savez(tmp_path / "s.npz", scores=s, video_ids=vids)
    code, out, err = run_cli(
        "eval", "triplet", tmp_path / "t.npz", tmp_path / "s.npz", "--json", "--topk", "5"
    )
    assert code == 0, err
    res = json.loads(out)
    ref = triplet_evaluate(y, s, vids, topk=(5,))
    for comp in ("i", "v", "t", "iv", "it", "ivt"):
        assert res[comp] == pytest.approx(ref[comp])
    assert res["topk"]["ivt@5"] == pytest.approx(ref["topk"]["ivt@5"])
    header = "video,frame," + ",".join(f"c{k}" for k in range(100))
    frames = np.tile(np.arange(10), 3)
    for name, m in (("t.csv", y), ("s.csv", s)):
        rows = [
            f"{v},{f}," + ",".join(str(x) for x in row) for v, f, row in zip(vids, frames, m, strict=True)
        ]
        (tmp_path / name).write_text(header + "\n" + "\n".join(rows) + "\n")
    code, out, _ = run_cli(
        "eval", "triplet", tmp_path / "t.csv", tmp_path / "s.csv", "--mode", "global", "--ignore-null"
    )
    assert code == 0 and "mAP ivt" in out and "ivtmetrics" in out
    lines = (tmp_path / "s.csv").read_text().splitlines()
    lines[5] = lines[5].replace("VID01,4,", "VID02,4,")
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    code, _, err = run_cli("eval", "triplet", tmp_path / "t.csv", tmp_path / "s.csv")
    assert code == 2 and "s.csv:6:" in err and "video VID02 frame 4" in err


def test_skill_and_vqla(run_cli, tmp_path):
    (tmp_path / "skill.csv").write_text(
        "fold,trial,true,pred\n1,B001,10,12\n1,C001,15,14\n1,D001,20,22\n2,B002,25,22\n2,C002,30,29\n2,D002,12,11\n"
    )
    code, out, err = run_cli("eval", "skill", tmp_path / "skill.csv", "--json")
    assert code == 0, err
    res = json.loads(out)
    assert [f["fold"] for f in res["per_fold"]] == ["1", "2"]
    assert res["pooled"]["mae"] == pytest.approx(np.mean([2, 1, 2, 3, 1, 1]))
    code, out, _ = run_cli("eval", "skill", tmp_path / "skill.csv")
    assert code == 0 and "Fisher" in out

    (tmp_path / "vqla.csv").write_text(
        "answer_true,answer_pred,gt_x1,gt_y1,gt_x2,gt_y2,pred_cx,pred_cy,pred_w,pred_h\n"
        "kidney,kidney,101,201,400,500,0.195,0.34,0.2334,0.29\n"
        "Grasping,Idle,1,1,640,512,0.7,0.7,0.2,0.2\n"
    )
    code, out, err = run_cli("eval", "vqla", tmp_path / "vqla.csv", "--json")
    assert code == 0, err
    res = json.loads(out)
    gt = vqla_gt_to_normalized([[101, 201, 400, 500], [1, 1, 640, 512]])
    pred = np.array([[0.195 - 0.1167, 0.34 - 0.145, 0.195 + 0.1167, 0.34 + 0.145], [0.6, 0.6, 0.8, 0.8]])
    ref = vqla_evaluate([0, 2], [0, 1], pred, gt)
    assert res["miou_legacy"] == pytest.approx(ref["miou_legacy"]) and res["miou"] == pytest.approx(
        ref["miou"]
    )
    assert res["accuracy"] == 0.5 and "LEGACY" in res["protocol"]["miou_legacy"]
    (tmp_path / "bad.csv").write_text("answer_true,answer_pred\nkidney,kidney\nkidney\n")
    code, _, err = run_cli("eval", "vqla", tmp_path / "bad.csv")
    assert code == 2 and "bad.csv:3:" in err and "expected 2 columns, found 1" in err
    (tmp_path / "bad.json").write_text('[{"answer_true": 0}]')
    code, _, err = run_cli("eval", "vqla", tmp_path / "bad.json")
    assert code == 2 and "bad.json: record 0: missing field answer_pred" in err


def test_phase_txt_folders_in_cholec80_layout(run_cli, tmp_path):
    from surgkit.vocab import CHOLEC80_PHASES

    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir(), pred_dir.mkdir()
    for vid, g, p in (("41", G_A, P_A), ("42", G_B, P_B)):
        rows = "".join(f"{i}\t{CHOLEC80_PHASES[x]}\n" for i, x in enumerate(g))
        (gt_dir / f"video{vid}-phase.txt").write_text("Frame\tPhase\n" + rows)
        rows = "".join(f"{i} {x}\n" for i, x in enumerate(p))  # digits, as TMRNet prediction files
        (pred_dir / f"video{vid}_pred.txt").write_text("Frame Phase\n" + rows)
    code, out, err = run_cli(
        "eval", "phase", gt_dir, pred_dir, "--protocol", "relaxed", "--fps", "0.2", "--json"
    )
    assert code == 0, err
    res = json.loads(out)
    assert res["video_accuracy"] == pytest.approx(0.829545, abs=1e-6)
    assert res["protocol"]["video_names"] == ["41", "42"]
    # the header line is always skipped (ReadPhaseLabel.m): a file without one loses its first frame
    (pred_dir / "video42_pred.txt").write_text("".join(f"{i} {x}\n" for i, x in enumerate(P_B)))
    code, _, err = run_cli("eval", "phase", gt_dir, pred_dir)
    assert code == 2 and "video 42: 11 labelled frames but 10 predicted" in err
    (pred_dir / "video42_pred.txt").write_text("Frame Phase\n0 1 extra\n")
    code, _, err = run_cli("eval", "phase", gt_dir, pred_dir)
    assert code == 2 and "video42_pred.txt:2: expected 'frame phase', got 3 fields" in err
