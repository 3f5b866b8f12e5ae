"""Cross-validation runs: folds per task, two-phase training per fold, per-fold SCC/MAE (spec §3).

A run folder holds::

    experiment.json                  the experiment config, scheme and selection rule
    <task>/<fold>/unimodal/<m>/      phase-1 branch (save_pretrained + train_state.json)
    <task>/<fold>/fusion/            phase-2 model (absent for unimodal and AVG configs)
    <task>/<fold>/predictions.json   test-fold predictions of every model (marks the fold done)
    results.json, predictions.csv    per-fold metrics, summaries, Fisher-z across tasks

Re-running the same command resumes: finished folds and phases are skipped, an interrupted phase
continues from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from surgkit.errors import LeakageError, SurgkitError
from surgkit.prep.store import FeatureStore
from surgkit.skill import interop
from surgkit.skill.config import ExperimentConfig, FusionConfig
from surgkit.skill.data import LabelScale, ScoredVideo, load_videos
from surgkit.skill.model import SurgFusionNet, UnimodalBranch
from surgkit.skill.train import finish_phase, is_finished, predict, read_state, train_phase
from surgkit.utils.io import sha256_json, write_json, write_text

RUN_FORMAT = "surgkit-skill-run/1"
MAIN = "fusion"
LENGTH_ONLY = "length_only"  # the skeptic's baseline: a linear fit of the score on the video length


@dataclasses.dataclass
class RunOptions:
    """What a cross-validation run needs besides the experiment config."""

    data_dir: Path
    features_dir: Path
    out_dir: Path
    scheme: str = "LOUO"
    tasks: tuple[str, ...] | None = None
    dataset: str = "auto"
    k: int = 4  # kfold
    split_seed: int = 0
    device: str = "auto"
    unimodal_from: Path | None = None  # reuse phase-1 branches of another run (same scheme)
    allow_leakage: bool = False
    progress: bool = True
    only_folds: tuple[str, ...] | None = None  # run a subset of the folds (quick checks; stated in results)
    launch: Any = None  # surgkit.utils.launch.LaunchOptions: precision, accumulation, trackers
    workers: int = 1  # folds trained in parallel by this many processes (one torch thread each; 1 process)


def protocol_notes(exp: ExperimentConfig, scheme: str) -> list[str]:
    """Human-readable statement of the protocol and quirks a run used (written into every output)."""
    t, m = exp.train, exp.model
    notes = [
        f"scheme {scheme}; per-task SCC = arithmetic mean of per-fold Spearman ρ (pooled out-of-fold ρ also given); "
        "across tasks: Fisher z (tanh of mean atanh, |ρ| clipped to 1−1e-7); NaN folds excluded and counted",
        f"labels normalised by the fixed score range; MAE in {'score points' if t.mae_unit == 'points' else 'normalised units'}",
        f"loss {t.loss_alpha}·MSE + {1 - t.loss_alpha:g}·MAE; phase 1 SGD {t.phase1.epochs} ep, phase 2 AdamW {t.phase2.epochs} ep, cosine",
        f"length policy '{t.length_policy}' at train time, full length batch 1 at test"
        + (" (resampled)" if t.length_policy == "resample" else "")
        + "; zero padding masked out of BatchNorm statistics, convolutions and pooling",
        "BatchNorm running statistics: "
        + (
            "recomputed over the training set after each phase (precise BN)"
            if t.bn_recalibrate
            else "exponential moving average of training batches (momentum 0.1)"
        ),  # fmt: skip
        f"model {m.strategy} on {'+'.join(m.modalities)}; CSFB {'on' if m.use_csfb else 'off'}, DFB {'on' if m.use_dfb else 'off'}, "
        f"heads {m.heads_csfb}/{m.heads_dfb}, DRA main={m.dra_main}, gamma={m.dra_gamma}, final_norm={m.dra_final_norm}",
        f"policy temperature: {m.policy_tau}"
        + (
            f" {m.tau_init:g} → {m.tau_final:g} over phase 2"
            if m.policy_tau == "anneal"
            else f" (τ₀ = {m.tau_init:g})"
        ),
        f"scoring unit: {t.unit}",
    ]
    if scheme == "random_kfold":
        notes.append(
            "random k-fold grouped by video: a surgeon may be on both sides (the paper's clinical protocol)"
        )
    if t.select == "best_test":
        notes.append(
            "TEST-SET SELECTION: epochs chosen on the test fold (select=best_test), as in the literature; optimistic"
        )
    else:
        notes.append("model selection: last epoch (no test-set selection)")
    if m.maqa_exact:
        notes.append(
            "maqa_exact: DFB reproduces MAQA's negated-query quirk (vanilla attention, query bias sign flipped)"
        )
    if m.policy_eval == "gumbel":
        notes.append("policy_eval=gumbel: predictions are stochastic (MAQA behaviour)")
    return notes


def check_leakage(
    fold: interop.Fold,
    scheme: str,
    surgeons: dict[str, str],
    allow: bool,
    videos: dict[str, str] | None = None,
) -> None:
    """Refuse a fold whose test units are in its training set, whose test videos lend a scored segment to
    training, or (LOUO, kfold) whose test surgeons also operate in training."""
    both = sorted(set(fold.train) & set(fold.test))
    if videos:
        shared_videos = {videos[u] for u in fold.train} & {videos[u] for u in fold.test}
        both += [f"video {v}" for v in sorted(shared_videos)]
    if scheme in ("LOUO", "kfold"):
        shared = {surgeons[v] for v in fold.train} & {surgeons[v] for v in fold.test}
        both += [f"surgeon {s}" for s in sorted(shared)]
    if both and not allow:
        raise LeakageError(
            f"fold {fold.name}: test data also in training: {', '.join(both[:10])} (use --allow-leakage)"
        )


class CrossValidationRun:
    """Runs one experiment config under one scheme over the tasks of a dataset."""

    def __init__(self, exp: ExperimentConfig, opts: RunOptions):
        self.exp, self.opts = exp, opts
        self.labels = interop.load_labels(opts.data_dir, opts.dataset, exp.train.view, exp.train.unit)
        self.scale = LabelScale.from_labels(self.labels, exp.train.target)
        self.store = FeatureStore(opts.features_dir)
        self.model_cfg = self._resolve_model_config()
        self.out = Path(opts.out_dir)

    def _resolve_model_config(self) -> FusionConfig:
        mods = self.exp.model.modalities
        missing = [m for m in mods if m not in self.store.modalities]
        if missing:
            raise SurgkitError(
                f"{self.store.root}: no {', '.join(missing)} features (store has {', '.join(self.store.modalities)})"
            )
        dims = tuple(self.store.feature_dim(m) for m in mods)
        return dataclasses.replace(self.exp.model, input_dims=dims, num_outputs=self.scale.num_outputs)

    # -- bookkeeping ----------------------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {
            "format": RUN_FORMAT,
            "name": self.exp.name,
            "scheme": self.opts.scheme,
            "select": self.exp.train.select,
            "test_set_selection": self.exp.train.select == "best_test",
            "dataset": self.labels.dataset,
            "score_range": list(self.scale.score_range),
            "target": self.scale.target,
            "experiment": {**self.exp.to_dict(), "model": self.model_cfg.to_dict()},
            "features": {
                "root": str(self.store.root),
                "backbone": self.store.backbone,
                "fps": self.store.fps,
                "segment_frames": self.store.segment_frames,
            },
            "protocol": protocol_notes(self.exp, self.opts.scheme),
            "label_source": self.labels.source,
        }

    def _claim_run_dir(self) -> None:
        header = self._header()
        key = sha256_json({k: header[k] for k in ("experiment", "scheme", "dataset", "target")})
        path = self.out / "experiment.json"
        if path.is_file():
            from surgkit.utils.inputs import as_dict, read_json
            from surgkit.utils.io import to_json
            from surgkit.utils.runinfo import first_difference

            old = as_dict(read_json(path), path, "top level")
            if old.get("config_sha256") != key:
                fields = ("experiment", "scheme", "dataset", "target")
                diff = first_difference(
                    {k: old.get(k) for k in fields}, json.loads(to_json({k: header[k] for k in fields}))
                )
                what = f" ({diff[0]}={diff[1]!r}, this run has {diff[2]!r})" if diff else ""
                raise SurgkitError(
                    f"{path}: this run folder was made with another config or scheme{what}; use a new --out"
                )
        write_json(path, {**header, "config_sha256": key})

    # -- main loop ------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from surgkit.utils.progress import make_progress
        from surgkit.utils.tracking import start_run
        from surgkit.utils.training import make_accelerator

        self._claim_run_dir()
        accelerator = make_accelerator(self.opts.device, launch=self.opts.launch)
        launch = self.opts.launch
        self.log = start_run(self.out, "skill-train", {**self._header(), "processes": accelerator.num_processes},
                             report_to=launch.report_to if launch else None, accelerator=accelerator,
                             resume_step=None)  # fmt: skip
        tasks = list(self.opts.tasks or self.labels.tasks)
        unknown = [t for t in tasks if t not in self.labels.tasks]
        if unknown:
            raise SurgkitError(f"unknown task(s) {unknown}; {self.opts.data_dir} has {self.labels.tasks}")
        per_task: dict[str, Any] = {}
        with make_progress(disable=not self.opts.progress) as progress:
            for task in tasks:
                items = self.labels.for_task(task)
                videos = load_videos(
                    self.store,
                    items,
                    self.model_cfg.modalities,
                    self.scale,
                    self.exp.train.view,
                    self.exp.train.drop_partial_tail,
                )
                folds = interop.make_folds(items, self.opts.scheme, self.opts.k, self.opts.split_seed)
                if self.opts.only_folds:
                    folds = [f for f in folds if f.name in self.opts.only_folds]
                    if not folds:
                        raise SurgkitError(f"{task}: none of the folds {list(self.opts.only_folds)} exist")
                surgeons = {it.id: it.surgeon for it in items}
                units_video = {it.id: it.video_id for it in items}
                fold_results = []
                ftask = progress.add_task(f"{task} {self.opts.scheme}", total=len(folds), unit="folds")
                for fold in folds:
                    check_leakage(fold, self.opts.scheme, surgeons, self.opts.allow_leakage, units_video)
                if self.opts.workers > 1 and accelerator.num_processes == 1 and len(folds) > 1:
                    fold_results = self._run_folds_in_workers(task, folds, progress, ftask)
                for fold in folds if not fold_results else []:
                    fold_results.append(self._run_fold(task, fold, videos, accelerator, progress))
                    progress.update(ftask, advance=1)
                per_task[task] = {
                    "folds": fold_results,
                    "summary": summarise_folds(fold_results, self.scale.score_range, self.exp.train.mae_unit),
                }
        for task, done in self._finished_tasks(exclude=set(per_task)).items():
            per_task[task] = done  # tasks finished by earlier `--task` runs into the same folder
        per_task = {t: per_task[t] for t in sorted(per_task)}
        header = self._header()
        if self.opts.only_folds:
            header["protocol"].append(f"PARTIAL RUN: only folds {', '.join(self.opts.only_folds)} were run")
        results = {
            **header,
            "main_model": MAIN,
            "tasks": per_task,
            "across_tasks": across_tasks(per_task),
        }
        write_json(self.out / "results.json", results)
        write_predictions_csv(self.out / "predictions.csv", per_task)
        self.log.finish()
        return results

    def _run_folds_in_workers(self, task: str, folds: list[interop.Fold], progress, ftask) -> list[dict]:
        """Train the folds of ``task`` in ``opts.workers`` spawned processes (they die with this one).
        Every fold seeds itself from (seed, task, fold, part), so the records equal a sequential run's."""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        from surgkit.utils.workers import init_worker, main_identity

        opts = dataclasses.replace(self.opts, workers=1, progress=False)
        jobs = [(self.exp, opts, task, fold) for fold in folds]
        records = []
        with ProcessPoolExecutor(max_workers=min(self.opts.workers, len(folds)), mp_context=mp.get_context("spawn"),
                                 initializer=init_worker, initargs=main_identity()) as pool:  # fmt: skip
            for record, logged in pool.map(_fold_job, jobs):
                records.append(record)
                self.log.replay(logged)  # the fold's per-step loss/lr/grad norm/eval, in fold order
                progress.update(ftask, advance=1)
        return records

    def _inference_settings(self) -> dict[str, Any]:
        """What scoring a new video with a saved model needs (read by :mod:`surgkit.skill.predict`)."""
        t = self.exp.train
        return {
            "label_scale": self.scale.to_dict(),
            "length_policy": t.length_policy,
            "resample_length": t.resample_length,
            "drop_partial_tail": t.drop_partial_tail,
        }

    def _finished_tasks(self, exclude: set[str]) -> dict[str, Any]:
        """Tasks of this run folder (same config, by ``_claim_run_dir``) whose every fold finished in an
        earlier invocation, e.g. ``--task Suturing`` then ``--task Knot_Tying`` into one ``--out``: their
        fold records are read back so results.json keeps every task and the across-task Fisher-z row."""
        out: dict[str, Any] = {}
        if self.opts.only_folds:
            return out
        for task in self.labels.tasks:
            if task in exclude or not (self.out / task).is_dir():
                continue
            folds = interop.make_folds(
                self.labels.for_task(task), self.opts.scheme, self.opts.k, self.opts.split_seed
            )
            files = [self.out / task / f.name / "predictions.json" for f in folds]
            if folds and all(f.is_file() for f in files):
                records = [json.loads(f.read_text()) for f in files]
                summary = summarise_folds(records, self.scale.score_range, self.exp.train.mae_unit)
                out[task] = {"folds": records, "summary": summary}
        return out

    def _run_fold(
        self, task: str, fold: interop.Fold, videos: dict[str, ScoredVideo], accelerator, progress
    ) -> dict:
        fold_dir = self.out / task / fold.name
        pred_file = fold_dir / "predictions.json"
        if pred_file.is_file():
            return json.loads(pred_file.read_text())
        train = [videos[i] for i in fold.train]
        test = [videos[i] for i in fold.test]
        cfg, tcfg = self.model_cfg, self.exp.train
        selected: dict[str, int] = {}
        branches = {}
        for m in cfg.modalities:
            part_seed(tcfg.seed, task, fold.name, m)
            branches[m], selected[f"unimodal:{m}"] = self._phase1(
                task, fold, m, train, test, accelerator, progress
            )
        part_seed(tcfg.seed, task, fold.name, MAIN)  # fusion init and training independent of resume point
        model = SurgFusionNet(cfg)
        for m, branch in branches.items():
            model.load_branch(m, branch)
        preds: dict[str, np.ndarray] = {}
        model.to(accelerator.device)
        for m in cfg.modalities:
            preds[f"unimodal:{m}"] = predict(model.branches[m], test, tcfg, accelerator.device)
        if cfg.needs_phase2:
            model, selected[MAIN] = self._phase2(
                fold_dir, model, train, test, accelerator, progress, f"{task} {fold.name} fusion"
            )
        preds[MAIN] = predict(model, test, tcfg, accelerator.device)
        preds[LENGTH_ONLY] = length_only_predictions(train, test)
        record = fold_record(fold, test, preds, self.scale, tcfg.mae_unit, selected)
        write_json(pred_file, record)
        return record

    def _phase1(self, task, fold, modality, train, test, accelerator, progress) -> tuple[UnimodalBranch, int]:
        out_dir = self.out / task / fold.name / "unimodal" / modality
        if self.opts.unimodal_from is not None:
            out_dir = Path(self.opts.unimodal_from) / task / fold.name / "unimodal" / modality
            if not is_finished(out_dir):
                raise SurgkitError(f"{out_dir}: no finished phase-1 branch to reuse (--unimodal-from)")
        if is_finished(out_dir):
            branch = UnimodalBranch.from_pretrained(out_dir, map_location=accelerator.device)
            if branch.config != self.model_cfg.unimodal(modality):
                raise SurgkitError(f"{out_dir}: branch config differs from this experiment's")
            return branch, int(read_state(out_dir).get("selected_epoch", 0))
        tcfg = self.exp.train
        branch = UnimodalBranch(self.model_cfg.unimodal(modality))
        branch.fit_input_normalisation([v.features[modality] for v in train])  # training fold only
        sub = [_subset(v, [modality]) for v in train]
        sub_test = [_subset(v, [modality]) for v in test]
        groups = [{"params": list(branch.parameters())}]
        work = out_dir.parent / f".{modality}-work"
        res = train_phase(
            branch,
            groups,
            sub,
            tcfg.phase1,
            tcfg,
            optimizer_kind="sgd",
            work_dir=work,
            accelerator=accelerator,
            scale=self.scale,
            test_videos=sub_test,
            progress=progress,
            description=f"{task} {fold.name} {modality}",
            log=self.log,
        )
        finish_phase(
            work,
            out_dir,
            branch,
            res,
            {"modality": modality, "fold": fold.name, "task": task, **self._inference_settings()},
        )
        return branch, res.selected_epoch

    def _phase2(self, fold_dir, model: SurgFusionNet, train, test, accelerator, progress, desc):
        out_dir = fold_dir / "fusion"
        if is_finished(out_dir):
            loaded = SurgFusionNet.from_pretrained(out_dir, map_location=accelerator.device)
            return loaded, int(read_state(out_dir).get("selected_epoch", 0))
        tcfg = self.exp.train
        model.freeze_branches()
        body, head = model.fusion_parameters()
        groups = [{"params": body}, {"params": head, "lr": tcfg.phase2.lr * tcfg.phase2.head_lr_scale}]
        groups = [g for g in groups if g["params"]]
        work = fold_dir / ".fusion-work"
        res = train_phase(
            model,
            groups,
            train,
            tcfg.phase2,
            tcfg,
            optimizer_kind="adamw",
            work_dir=work,
            accelerator=accelerator,
            scale=self.scale,
            test_videos=test,
            progress=progress,
            description=desc,
            log=self.log,
        )
        finish_phase(work, out_dir, model, res, self._inference_settings())
        return model, res.selected_epoch


def length_only_predictions(train: list[ScoredVideo], test: list[ScoredVideo]) -> np.ndarray:
    """Normalised predictions of the length-only baseline: least squares y = a + b·T (T = segments) fitted
    on the training fold, applied to the test fold. Where length carries the score (experts finish sooner)
    this baseline is hard to beat; a model that does not beat it has not shown it sees skill."""
    lengths = np.array([[1.0, v.length] for v in train])
    targets = np.stack([v.target for v in train]).astype(np.float64)
    coef, *_ = np.linalg.lstsq(lengths, targets, rcond=None)
    return np.array([[1.0, v.length] for v in test]) @ coef


def _fold_job(job: tuple) -> tuple[dict, list]:
    """One fold in a worker process (see :meth:`CrossValidationRun._run_folds_in_workers`): its record
    and its log records (the parent process holds the run's trackers and replays them)."""
    import torch

    from surgkit.utils.tracking import recording_logger
    from surgkit.utils.training import make_accelerator

    exp, opts, task, fold = job
    torch.set_num_threads(1)
    run = CrossValidationRun(exp, opts)
    run.log = recording_logger(run.out)
    items = [it for it in run.labels.for_task(task) if it.id in set(fold.train) | set(fold.test)]
    cfg, t = run.model_cfg, exp.train
    videos = load_videos(run.store, items, cfg.modalities, run.scale, t.view, t.drop_partial_tail)
    record = run._run_fold(task, fold, videos, make_accelerator(opts.device, launch=opts.launch), None)
    return record, run.log.recorded


def part_seed(seed: int, *parts: str) -> None:
    """Seed everything from (seed, task, fold, part), so each phase starts from the same RNG state
    whether the run went straight through or resumed after a crash."""
    import zlib

    from surgkit.utils.training import seed_everything

    seed_everything(seed + zlib.crc32("/".join(parts).encode()))


def _subset(video: ScoredVideo, modalities: list[str]) -> ScoredVideo:
    return dataclasses.replace(video, features={m: video.features[m] for m in modalities})


# -- metrics and summaries ---------------------------------------------------------------------------
def fold_record(
    fold, test, preds, scale: LabelScale, mae_unit: str, selected: dict[str, int]
) -> dict[str, Any]:
    """Per-fold predictions (score points) and SCC/MAE of every model."""
    true = np.array([v.score for v in test], dtype=float)
    lo, hi = scale.score_range
    models = {}
    for name, p in preds.items():
        score = scale.to_score(p)
        err = interop.mae(score, true)
        models[name] = {
            "scc": interop.spearman(score, true),
            "mae": err if mae_unit == "points" else err / (hi - lo),
            "pred": [float(s) for s in score],
            "selected_epoch": selected.get(name),
        }
        if scale.target == "items":
            models[name]["pred_items"] = scale.to_items(p).round(4).tolist()
    return {
        "name": fold.name,
        "test": [v.id for v in test],
        "true": true.tolist(),
        "train_size": len(fold.train),
        "models": models,
    }


def summarise_folds(
    folds: list[dict[str, Any]], score_range: tuple[float, float], mae_unit: str = "points"
) -> dict[str, Any]:
    """Per model, via :func:`surgkit.metrics.skill.cross_validation_summary`: mean ± std (N−1) of the
    per-fold SCC (undefined folds excluded and counted) and MAE, plus pooled out-of-fold SCC/MAE."""
    out = {}
    unit = 1.0 if mae_unit == "points" else float(score_range[1] - score_range[0])
    names = [n for n in folds[0]["models"] if all(n in f["models"] for f in folds)] if folds else []
    for name in names:
        rows = [
            {"name": f["name"], "pred": f["models"][name]["pred"], "true": f["true"], "ids": f["test"]}
            for f in folds
        ]
        summary = interop.cv_summary(rows, score_range)
        mean, pooled = summary["mean_over_folds"], summary["pooled"]
        out[name] = {
            "scc_mean": mean["spearman"],
            "scc_std": mean["spearman_std"],
            "mae_mean": mean["mae"] / unit,
            "mae_std": mean["mae_std"] / unit,
            "scc_pooled": pooled["spearman"],
            "mae_pooled": pooled["mae"] / unit,
            "n_folds": len(folds),
            "nan_folds": len(summary["undefined_spearman_folds"]),
        }
    return out


def across_tasks(per_task: dict[str, Any]) -> dict[str, Any]:
    """Fisher-z mean of the per-task SCC and arithmetic mean of the per-task MAE, per model."""
    names = set.intersection(*(set(t["summary"]) for t in per_task.values())) if per_task else set()
    return {
        n: {
            "scc_fisher_z": interop.fisher_z_mean([t["summary"][n]["scc_mean"] for t in per_task.values()]),
            "mae_mean": float(np.mean([t["summary"][n]["mae_mean"] for t in per_task.values()])),
            "tasks": sorted(per_task),
        }
        for n in sorted(names)
    }


def write_predictions_csv(path: Path, per_task: dict[str, Any]) -> None:
    lines = ["task,fold,video,model,true,pred"]
    for task, tres in per_task.items():
        for f in tres["folds"]:
            for name, m in f["models"].items():
                for vid, t, p in zip(f["test"], f["true"], m["pred"], strict=True):
                    lines.append(f"{task},{f['name']},{vid},{name},{t:g},{p:.4f}")
    write_text(path, "\n".join(lines) + "\n")


def run_cross_validation(exp: ExperimentConfig, opts: RunOptions) -> dict[str, Any]:
    """Train and evaluate ``exp`` under ``opts.scheme``; returns (and writes) results.json."""
    from surgkit.utils.lock import output_lock

    with output_lock(opts.out_dir, "surgkit skill train"):  # one writer per run folder
        return CrossValidationRun(exp, opts).run()
