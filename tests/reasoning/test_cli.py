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


def test_training_stages_through_the_cli(run_cli, endovis_root, tmp_path):
    """reason tiny-model -> sft (simple, cot) -> grpo -> self-improve -> eval, all through the CLI."""
    recs = tmp_path / "r.jsonl"
    assert (
        run_cli("reason", "build", "--from", "endovis18_vqla", "--root", endovis_root, "--out", recs)[0] == 0
    )
    code, out, err = run_cli("reason", "tiny-model", "--records", recs, "--out", tmp_path / "tiny")
    assert code == 0, err
    common = ["--records", recs, "--root", endovis_root, "--device", "cpu", "--no-lora"]
    code, out, err = run_cli(
        "reason", "sft", "--model", tmp_path / "tiny", *common, "--out", tmp_path / "s1",
        "--stage", "simple", "--max-steps", "2", "--batch-size", "2", "--lr", "1e-3",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip().endswith(str(tmp_path / "s1" / "model")) and "'loss'" not in out
    code, out, err = run_cli(
        "reason", "sft", "--model", tmp_path / "s1" / "model", *common, "--out", tmp_path / "s2",
        "--max-steps", "2", "--batch-size", "2",
    )  # fmt: skip
    assert code == 0, err
    grpo_args = [
        "reason", "grpo", "--model", tmp_path / "s2" / "model", *common, "--out", tmp_path / "s3",
        "--max-steps", "1", "--num-generations", "2", "--batch-size", "2", "--max-completion-length", "8",
        "--beta", "0", "--rewards", "format_hierarchical=0.5,accuracy=1",
    ]  # fmt: skip
    # a 2-step model's 8-token samples earn no reward: the screen finds no group with a signal, and says so
    code, out, err = run_cli(*grpo_args, "--screen-min-spread", "0")
    assert code == 2 and "no prompt's 2 sampled completions differ in reward" in err
    code, out, err = run_cli(*grpo_args, "--scale-rewards", "none")
    assert code == 0, err
    log = [json.loads(x) for x in (tmp_path / "s3" / "train_log.jsonl").read_text().splitlines()]
    assert any("rewards/accuracy/mean" in e for e in log)
    assert json.loads((tmp_path / "s3" / "training.json").read_text())["settings"]["scale_rewards"] == "none"
    code, out, err = run_cli(
        "reason", "self-improve", "--model", tmp_path / "s3" / "model", *common, "--out", tmp_path / "s4",
        "--samples", "2", "--max-new-tokens", "8", "--sft-steps", "1", "--grpo-steps", "1",
        "--num-generations", "2", "--max-completion-length", "8", "--batch-size", "2",
    )  # fmt: skip
    assert code == 0, err
    hist = json.loads((tmp_path / "s4" / "self_improve.json").read_text())["rounds"]
    assert hist[0]["questions"] == 6 and hist[0]["accepted_self"] + hist[0]["fallback_template"] == 6
    code, out, err = run_cli(
        "reason", "eval", "--records", recs, "--root", endovis_root, "--model", tmp_path / "s4" / "round1" / "grpo" / "model",
        "--out", tmp_path / "ev", "--device", "cpu", "--max-new-tokens", "8", "--split", "all",
    )  # fmt: skip
    assert code == 0, err
    m = json.loads(out)
    assert m["groups"]["endovis18_vqla/vqla"]["n"] == 12 and sum(m["statuses"].values()) == 12


def test_cli_refuses_another_model_in_the_same_eval_folder(run_cli, endovis_root, tmp_path):
    recs = tmp_path / "r.jsonl"
    run_cli("reason", "build", "--from", "endovis18_vqla", "--root", endovis_root, "--out", recs)
    rows = [json.loads(x) for x in recs.read_text().splitlines()]
    for name in ("a", "b"):
        (tmp_path / f"{name}.jsonl").write_text(
            "".join(json.dumps({"id": r["id"], "completion": name}) + "\n" for r in rows)
        )
    args = ["reason", "eval", "--records", recs, "--out", tmp_path / "ev", "--split", "all"]
    assert run_cli(*args, "--predictions", tmp_path / "a.jsonl")[0] == 0
    code, _, err = run_cli(*args, "--predictions", tmp_path / "b.jsonl")
    assert code == 2 and "source.path" in err and "--overwrite" in err
    assert run_cli(*args, "--predictions", tmp_path / "b.jsonl", "--overwrite")[0] == 0
