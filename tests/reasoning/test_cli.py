import json


def test_build_validate_eval_from_cli(run_cli, endovis_root, tmp_path):
    out = tmp_path / "r.jsonl"
    code, stdout, err = run_cli(
        "reason", "build", "--from", "endovis18_vqla", "--root", str(endovis_root), "--out", str(out), "--cot"
    )
    assert code == 0, err
    assert "wrote 12 records" in stdout
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(r["reasoning"]["verified"] and r["reasoning"]["source"] == "template" for r in recs)
    code, stdout, _ = run_cli("reason", "validate", str(out), "--root", str(endovis_root), "--check-images")
    assert code == 0 and "12 valid chains" in stdout
    # an API model's plain answers, evaluated offline from a predictions file
    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": r["id"], "completion": r["answer"]}) + "\n" for r in recs))
    code, stdout, err = run_cli(
        "reason",
        "eval",
        "--records",
        str(out),
        "--predictions",
        str(preds),
        "--out",
        str(tmp_path / "ev"),
        "--split",
        "all",
    )
    assert code == 0, err
    m = json.loads(stdout)
    g = m["groups"]["endovis18_vqla/vqla"]
    assert g["accuracy"] == 1.0 and g["unparseable_box_rate"] == 1.0 and g["miou"] == 0.0
    assert m["arena"]["benchmarks"]["vqa"]["value_pct"] == 100.0
    assert (tmp_path / "ev" / "metrics.json").is_file()


def test_cli_user_errors_exit_2(run_cli, tmp_path):
    code, _, err = run_cli(
        "reason", "build", "--from", "nope", "--root", str(tmp_path), "--out", str(tmp_path / "x.jsonl")
    )
    assert code == 2 and "unknown source 'nope'" in err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    code, _, err = run_cli(
        "reason", "eval", "--records", str(bad), "--predictions", str(bad), "--out", str(tmp_path)
    )
    assert code == 2 and "bad.jsonl:1:" in err
    code, _, err = run_cli("reason", "validate", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "no such file" in err


def test_build_vqla_box_size_option(run_cli, synth_world, tmp_path):
    root = synth_world / "endovis18_vqla" / "EndoVis-18-VQA"
    out = tmp_path / "v.jsonl"
    code, stdout, err = run_cli(
        "reason", "build", "--from", "endovis18_vqla", "--root", str(root), "--out", str(out)
    )
    assert code == 0 and "outside the 128x128 image" in err  # the world writes boxes in the 1280x1024 frame
    code, stdout2, err2 = run_cli(
        "reason",
        "build",
        "--from",
        "endovis18_vqla",
        "--root",
        str(root),
        "--out",
        str(out),
        "--vqla-box-size",
        "1280x1024",
    )
    assert code == 0 and "skipped" not in err2
    assert int(stdout2.split()[1]) > int(stdout.split()[1])
    code, _, err = run_cli(
        "reason",
        "build",
        "--from",
        "endovis18_vqla",
        "--root",
        str(root),
        "--out",
        str(out),
        "--vqla-box-size",
        "big",
    )
    assert code == 2 and "bad size 'big'" in err
