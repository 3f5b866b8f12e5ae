"""Cross-validation runs on synthetic features: learning, folds and leakage, resume, selection flags, CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from surgkit.errors import LeakageError, SurgkitError
from surgkit.skill import interop
from surgkit.skill.config import ExperimentConfig, FusionConfig, PhaseConfig, TrainConfig, load_experiment
from surgkit.skill.protocol import RunOptions, check_leakage, run_cross_validation

SMALL_MODEL = {"d_model": 16, "proj_hidden": 32, "num_fusionnets": 2, "heads_csfb": 2, "heads_dfb": 2}


def small_experiment(e1: int, e2: int, **train) -> ExperimentConfig:
    """The default SurgFusion-Net config (table4_dra) at width 16 and a short schedule."""
    exp = load_experiment("table4_dra")
    tcfg = dataclasses.replace(
        exp.train,
        checkpoint_every=0,
        phase1=dataclasses.replace(exp.train.phase1, epochs=e1, lr=0.05, batch_size=6),
        phase2=dataclasses.replace(exp.train.phase2, epochs=e2, lr=5e-3, head_lr_scale=1.0, batch_size=6),
        **train,
    )
    return dataclasses.replace(exp, model=dataclasses.replace(exp.model, **SMALL_MODEL), train=tcfg)


@pytest.fixture(scope="module")
def learning_run(synthetic_skill, tmp_path_factory):
    """One held-out fold (half of the surgeons) of a surgeon-grouped 2-fold split, trained once."""
    data, feats = synthetic_skill
    out = tmp_path_factory.mktemp("learn") / "run"
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_cross_validation(
            small_experiment(40, 40),
            RunOptions(
                data, feats, out, scheme="kfold", k=2, device="cpu", progress=False, only_folds=("fold_0",)
            ),
        )
    finally:
        torch.set_num_threads(before)
    return res, out


def test_fusion_learns_where_rgb_is_corrupted(learning_run, synthetic_skill):
    """Flow and masks carry the skill signal, RGB is swamped by camera motion: fusion must beat RGB-only.

    Measured (seed 0, 24 held-out videos of 4 unseen surgeons) are printed for the report.
    """
    res, _ = learning_run
    summary = res["tasks"]["Suturing"]["summary"]
    scc = {name: s["scc_mean"] for name, s in summary.items()}
    print("held-out SCC:", {k: round(v, 3) for k, v in scc.items()})
    assert scc["fusion"] > 0.3
    assert scc["fusion"] > scc["unimodal:rgb"] + 0.2
    fold = res["tasks"]["Suturing"]["folds"][0]
    assert len(fold["test"]) == 24 and fold["train_size"] == 24
    items = interop.load_labels(synthetic_skill[0]).for_task("Suturing")
    test_users = {it.surgeon for it in items if it.id in fold["test"]}
    train_users = {it.surgeon for it in items if it.id not in fold["test"]}
    assert len(test_users) == 4 and not test_users & train_users


def test_run_outputs_state_protocol_and_are_consistent(learning_run):
    res, out = learning_run
    assert res["test_set_selection"] is False and res["select"] == "last"
    assert any("PARTIAL RUN" in n for n in res["protocol"])
    assert any("last epoch" in n for n in res["protocol"])
    fold = res["tasks"]["Suturing"]["folds"][0]
    fusion = fold["models"]["fusion"]
    true, pred = np.array(fold["true"]), np.array(fusion["pred"])
    from scipy.stats import spearmanr

    assert fusion["scc"] == pytest.approx(spearmanr(pred, true).statistic, abs=1e-12)
    assert fusion["mae"] == pytest.approx(np.abs(pred - true).mean())
    assert np.all((pred >= 6) & (pred <= 30))
    lines = (out / "predictions.csv").read_text().splitlines()
    assert len(lines) == 1 + 5 * 24  # header + (3 branches + fusion + length-only baseline) × test videos
    saved = json.loads((out / "results.json").read_text())
    assert saved["tasks"]["Suturing"]["summary"]["fusion"]["scc_mean"] == pytest.approx(fusion["scc"])
    assert (out / "Suturing" / "fold_0" / "fusion" / "model.safetensors").is_file()


def test_rerun_resumes_without_training(learning_run, synthetic_skill, monkeypatch):
    res, out = learning_run
    data, feats = synthetic_skill

    def boom(*a, **k):
        raise AssertionError("a finished fold must not be trained again")

    monkeypatch.setattr("surgkit.skill.protocol.train_phase", boom)
    again = run_cross_validation(
        small_experiment(40, 40),
        RunOptions(
            data, feats, out, scheme="kfold", k=2, device="cpu", progress=False, only_folds=("fold_0",)
        ),
    )
    assert again["tasks"]["Suturing"]["summary"] == res["tasks"]["Suturing"]["summary"]
    with pytest.raises(SurgkitError, match="another config"):
        run_cross_validation(
            small_experiment(41, 40), RunOptions(data, feats, out, scheme="kfold", k=2, progress=False)
        )


def test_interrupted_phase_resumes_to_identical_weights(synthetic_skill, tmp_path):
    """A phase killed after a checkpoint continues from it and ends with the same weights (CPU, seeded)."""
    from surgkit.prep.store import FeatureStore
    from surgkit.skill.data import LabelScale, load_videos
    from surgkit.skill.model import UnimodalBranch
    from surgkit.skill.train import train_phase
    from surgkit.utils.training import make_accelerator, seed_everything

    data, feats = synthetic_skill
    labels = interop.load_labels(data)
    scale = LabelScale.from_labels(labels)
    videos = list(load_videos(FeatureStore(feats), labels.items[:12], ["flow"], scale).values())
    tcfg = TrainConfig(checkpoint_every=2, phase1=PhaseConfig(epochs=5, lr=0.05, batch_size=4))
    acc = make_accelerator("cpu")

    def run(work, progress=None):
        seed_everything(0)
        branch = UnimodalBranch(FusionConfig(**SMALL_MODEL, input_dims=(16, 16, 16)).unimodal("flow"))
        train_phase(branch, [{"params": list(branch.parameters())}], videos, tcfg.phase1, tcfg,
                    optimizer_kind="sgd", work_dir=work, accelerator=acc, scale=scale, progress=progress)  # fmt: skip
        return branch.state_dict()

    class Killer:  # stands in for the progress bar; kills the job during epoch 3
        def add_task(self, *a, **k):
            return 0

        def update(self, *a, **k):
            self.n = getattr(self, "n", 0) + 1
            if self.n == 3:
                raise KeyboardInterrupt

    straight = run(tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", Killer())
    assert (tmp_path / "b" / "checkpoint-00000002").is_dir()
    resumed = run(tmp_path / "b")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)


def test_best_test_selection_is_flagged_everywhere(synthetic_skill, tmp_path):
    data, feats = synthetic_skill
    exp = small_experiment(2, 2, select="best_test")
    exp = dataclasses.replace(exp, model=dataclasses.replace(exp.model, strategy="cat"))
    res = run_cross_validation(exp, RunOptions(data, feats, tmp_path / "r", scheme="kfold", k=2, device="cpu",
                                               progress=False, only_folds=("fold_1",)))  # fmt: skip
    assert res["test_set_selection"] is True
    assert any("TEST-SET SELECTION" in n for n in res["protocol"])
    sel = res["tasks"]["Suturing"]["folds"][0]["models"]["fusion"]["selected_epoch"]
    assert 1 <= sel <= 2
    from surgkit.skill.table import table_rows

    assert table_rows([tmp_path / "r"])[0]["test_set_selection"] is True
    # a run that crashed between the phases retrains the fusion to exactly the same result
    import shutil

    fold_dir = tmp_path / "r" / "Suturing" / "fold_1"
    shutil.rmtree(fold_dir / "fusion")
    (fold_dir / "predictions.json").unlink()
    again = run_cross_validation(exp, RunOptions(data, feats, tmp_path / "r", scheme="kfold", k=2, device="cpu",
                                                 progress=False, only_folds=("fold_1",)))  # fmt: skip
    assert again["tasks"]["Suturing"]["folds"][0]["models"] == res["tasks"]["Suturing"]["folds"][0]["models"]


def test_jigsaws_folds_and_leakage_guard(synthetic_skill):
    data, _ = synthetic_skill
    items = interop.load_labels(data).for_task("Suturing")
    louo = interop.make_folds(items, "LOUO")
    loso = interop.make_folds(items, "LOSO")
    assert len(louo) == 8 and all(len(f.test) == 6 for f in louo)
    assert len(loso) == 5  # trial numbers 1..6 end in 1..5 or 6 → super-trials 1-5 present
    for folds in (louo, loso):
        tested = [v for f in folds for v in f.test]
        assert sorted(tested) == sorted(set(tested))
    surgeons = {it.id: it.surgeon for it in items}
    leaky = interop.Fold("bad", louo[0].train + louo[0].test[:1], louo[0].test)
    with pytest.raises(LeakageError, match="bad"):
        check_leakage(leaky, "LOUO", surgeons, allow=False)
    check_leakage(leaky, "LOUO", surgeons, allow=True)
    same_surgeon = interop.Fold("kf", louo[0].train + [louo[1].test[0]], louo[1].test[1:])
    with pytest.raises(LeakageError, match="surgeon"):
        check_leakage(same_surgeon, "kfold", surgeons, allow=False)


def test_cli_train_table_predict_eval(run_cli, synthetic_skill, tmp_path):
    data, feats = synthetic_skill
    sets = [f"--set=model.{k}={v}" for k, v in SMALL_MODEL.items()] + [
        "--set=train.phase1.epochs=2",
        "--set=train.phase2.epochs=1",
    ]
    run = tmp_path / "run"
    code, out, err = run_cli("skill", "train", "--data", data, "--features", feats, "--config", "table3_csfb_flow_mask",
                             "--scheme", "LOUO", "--out", run, "--fold", "user_B", "--fold", "user_C", *sets)  # fmt: skip
    assert code == 0, err
    assert "fusion" in out
    code, out, err = run_cli("skill", "table", run, "--out", tmp_path / "tab")
    assert code == 0, err
    assert "table3_csfb_flow_mask" in out
    rows = json.loads((tmp_path / "tab.json").read_text())["rows"]
    assert rows[0]["scheme"] == "LOUO" and rows[0]["n_folds"] == 2
    ckpt = run / "Suturing" / "user_B" / "fusion"
    code, out, err = run_cli(
        "skill", "predict", feats, "--checkpoint", ckpt, "--video", "Suturing_B001_capture1", "--json"
    )
    assert code == 0, err
    pred = json.loads(out)[0]
    assert 6 <= pred["score"] <= 30 and set(pred["unimodal"]) == {"flow", "mask"}
    code, out, err = run_cli("skill", "attention", feats, "--checkpoint", ckpt, "--out", tmp_path / "fig",
                             "--video", "Suturing_B001_capture1", "--stage", "1")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "fig" / "Suturing_B001_capture1_csfb_stage1.png").stat().st_size > 1000
    code, out, err = run_cli("skill", "eval", run, "--json")
    assert code == 0 and json.loads(out)["scheme"] == "LOUO"
    code, out, err = run_cli(
        "skill", "train", "--data", data, "--features", feats, "--config", "no_such_config", "--out", run
    )
    assert code == 2 and "no_such_config" in err


def test_demo_step_tiny(synthetic_skill, tmp_path):
    """The demo hook on tiny synthetic data: a section with the four models and attention figures."""
    from surgkit.demo import DemoContext
    from surgkit.skill.demo import demo_step
    from surgkit.skill.synthetic import make_synthetic_skill_data

    data, feats = make_synthetic_skill_data(
        tmp_path / "world", users=3, trials_per_user=2, dim=8, length=(6, 12)
    )
    ctx = DemoContext(
        workdir=tmp_path / "demo", size="tiny", artifacts={"world": tmp_path / "world", "features": feats}
    )
    section = demo_step(ctx)
    assert section.key == "skill"
    assert {"scc_rgb", "scc_flow", "scc_mask", "scc_fusion", "mae_fusion", "scc_pooled_length_only"} <= set(
        section.metrics
    )
    assert [r[0] for r in section.tables[0][2]] == [
        "Fusion (CSFB + DFB, DRA)",
        "RGB only",
        "Flow only",
        "Mask only",
        "Length only (skeptic's baseline)",
    ]
    learning = section.metrics["learning"]
    assert set(learning) == {"scc_fusion_vs_best_single", "mae_fusion_vs_best_single", "scc_fusion_vs_length"}
    singles = [section.metrics[f"scc_pooled_{m}"] for m in ("rgb", "flow", "mask")]
    entry = learning["scc_fusion_vs_best_single"]
    assert entry["model"] == pytest.approx(section.metrics["scc_pooled_fusion"], abs=1e-4)
    assert entry["baseline"] == pytest.approx(max(singles), abs=1e-4) and entry["n"] == 6
    candidates = [section.metrics["scc_pooled_length_only"], abs(section.metrics["length_score_spearman"])]
    assert learning["scc_fusion_vs_length"]["baseline"] == pytest.approx(np.nanmax(candidates), abs=1e-4)
    stats = section.metrics["attention"]
    assert 0 <= stats["csfb_weight_min"] <= stats["csfb_weight_max"] <= 1 and "policy_tau" in stats
    ranges = {k: v for k, v in stats.items() if isinstance(v, dict) and "min" in v}
    assert "gamma_scale_kappa" in ranges  # every merged range has a finite mean (no NaN in results.json)
    assert all(v["min"] <= v["mean"] <= v["max"] for v in ranges.values()), ranges
    assert any("LOUO" in n for n in section.notes)


def test_four_fold_lists_and_clinical_kfold(synthetic_skill, tmp_path):
    data, _ = synthetic_skill
    items = interop.load_labels(data).for_task("Suturing")
    folds = interop.make_folds(items, "4fold")
    assert len(folds) == 4
    tested = [v for f in folds for v in f.test]
    assert len(tested) == len(set(tested)) and set(tested) <= {it.id for it in items}
    assert "Suturing_B001" in folds[0].test  # MUSDL fold 0 of SU starts with B001 (spec §1.2)
    videos = []
    for i in range(6):
        rating = {"rater": "R1", "items": dict.fromkeys(["depth_perception", "bimanual_dexterity", "efficiency",
                                                         "force_sensitivity", "robotic_control"], 1 + i % 5)}  # fmt: skip
        videos.append({"id": f"rah_{i:03d}", "surgeon": f"S{i % 3}", "procedure": "vault_closure",
                       "segments": [{"name": "suturing_1", "ratings": [rating]}]})  # fmt: skip
    (tmp_path / "skill.json").write_text(json.dumps({"format": "surgkit-clinical-skill/1", "videos": videos}))
    labels = interop.load_labels(tmp_path)
    assert labels.dataset == "clinical" and labels.score_range == (5.0, 25.0)
    assert labels.tasks == ["vault_closure"]
    kf = interop.make_folds(labels.items, "kfold", k=3, seed=1)
    surgeon = {it.id: it.surgeon for it in labels.items}
    for f in kf:
        assert not {surgeon[v] for v in f.test} & {surgeon[v] for v in f.train}


def test_item_targets_give_per_item_breakdown(synthetic_skill, tmp_path):
    """train.target=items: one output per OSATS item; predictions sum to the GRS and list the items."""
    from surgkit.skill.predict import evaluate_checkpoint, predict_features

    data, feats = synthetic_skill
    exp = small_experiment(1, 1, target="items")
    exp = dataclasses.replace(exp, model=dataclasses.replace(exp.model, strategy="avg"))
    res = run_cross_validation(exp, RunOptions(data, feats, tmp_path / "r", scheme="kfold", k=2, device="cpu",
                                               progress=False, only_folds=("fold_0",)))  # fmt: skip
    fold = res["tasks"]["Suturing"]["folds"][0]
    items = np.array(fold["models"]["fusion"]["pred_items"])
    assert items.shape == (24, 6)
    np.testing.assert_allclose(items.sum(1), fold["models"]["fusion"]["pred"], atol=1e-3)
    branch = tmp_path / "r" / "Suturing" / "fold_0" / "unimodal" / "flow"
    rows = predict_features(branch, feats, [f"{fold['test'][0]}_capture1"])
    assert len(rows[0]["items"]) == 6 and rows[0]["score"] == pytest.approx(sum(rows[0]["items"].values()))
    ev = evaluate_checkpoint(branch, data, feats)
    assert ev["tasks"]["Suturing"]["n"] == 48 and -1 <= ev["tasks"]["Suturing"]["scc"] <= 1


def test_unimodal_from_reuses_phase1_branches(learning_run, synthetic_skill, tmp_path, monkeypatch):
    """Table IV rows share the phase-1 branches: --unimodal-from loads them instead of retraining."""
    from surgkit.skill import protocol

    res, run = learning_run
    data, feats = synthetic_skill
    calls = []
    real = protocol.train_phase

    def spy(model, *a, **k):
        calls.append(k["optimizer_kind"])
        return real(model, *a, **k)

    monkeypatch.setattr(protocol, "train_phase", spy)
    exp = small_experiment(40, 1)
    exp = dataclasses.replace(exp, name="negative", model=dataclasses.replace(exp.model, strategy="negative"))
    out = run_cross_validation(exp, RunOptions(data, feats, tmp_path / "neg", scheme="kfold", k=2, device="cpu",
                                               progress=False, only_folds=("fold_0",), unimodal_from=run))  # fmt: skip
    assert calls == ["adamw"]  # only the fusion branch was trained
    for m in ("rgb", "flow", "mask"):
        key = f"unimodal:{m}"
        assert out["tasks"]["Suturing"]["summary"][key] == res["tasks"]["Suturing"]["summary"][key]


def test_cosine_schedule_per_epoch_matches_closed_form(learning_run):
    """T6: lr after epoch e is η_min + (lr₀ − η_min)(1 + cos(π e / E)) / 2 (CosineAnnealingLR, per epoch)."""
    _, run = learning_run
    state = json.loads((run / "Suturing" / "fold_0" / "unimodal" / "flow" / "train_state.json").read_text())
    lrs = np.array([h["lr"] for h in state["history"]])
    epochs, lr0, eta = 40, 0.05, 5e-6
    e = np.arange(1, epochs + 1)
    np.testing.assert_allclose(
        lrs, eta + (lr0 - eta) * (1 + np.cos(np.pi * e / epochs)) / 2, rtol=1e-9, atol=1e-12
    )
    assert state["selected_epoch"] == epochs and state["selection"] == "last"


def test_fusion_combines_modalities_that_each_see_part_of_the_skill(tmp_path):
    """Each modality carries one independent skill component (GRS from their mean), so no single branch
    can rank the trials well: pooled over both held-out halves of a surgeon-grouped 2-fold split (48
    trials), the fusion must beat the average single modality by a clear margin, and length.

    Measured at this width and schedule (seeds 0/1/2; pooled SCC rgb, flow, mask -> fusion):
    -0.03, 0.46, 0.63 -> 0.54; 0.19, 0.45, 0.43 -> 0.55; 0.22, 0.26, 0.30 -> 0.42. The fusion beats the
    best single modality in 2 of 3 seeds only, so that is reported (docs/skill.md), not asserted.
    A fusion that uses one modality only (or averages what it cannot weigh) fails here.
    """
    from surgkit.skill.synthetic import make_synthetic_skill_data

    data, feats = make_synthetic_skill_data(
        tmp_path / "world", users=8, trials_per_user=6, dim=16, length=(8, 16), complementary=True,
        component_noise=0.5, rgb_signal=1.0, mask_signal=1.0, camera_motion=0.0, seed=0,
    )  # fmt: skip
    res = run_cross_validation(
        small_experiment(40, 40),
        RunOptions(data, feats, tmp_path / "run", scheme="kfold", k=2, progress=False),
    )
    summary = res["tasks"]["Suturing"]["summary"]
    pooled = {name: s["scc_pooled"] for name, s in summary.items()}
    print("held-out pooled SCC:", {k: round(v, 3) for k, v in pooled.items()})
    assert sum(len(f["test"]) for f in res["tasks"]["Suturing"]["folds"]) == 48
    singles = [pooled[f"unimodal:{m}"] for m in ("rgb", "flow", "mask")]
    assert pooled["fusion"] > np.mean(singles) + 0.1
    assert pooled["fusion"] > max(pooled["length_only"], 0.0) + 0.3
