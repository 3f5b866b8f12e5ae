"""Demo step: SurgFusion-Net on the synthetic world's JIGSAWS-format trials (LOUO).

Needs ``ctx.artifacts["world"]`` (synth step; labels in ``<world>/jigsaws``) and
``ctx.artifacts["features"]`` (prep step: feature store of the world's JIGSAWS videos; a path, or a
dict with a ``"jigsaws"`` entry). Trains the three unimodal branches and the DRA fusion model with
small epochs and reports SCC/MAE for RGB-only, each branch and the fusion, plus CSFB attention curves.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

from surgkit.demo import DemoContext, DemoSection
from surgkit.errors import SurgkitError

# (phase-1 epochs, phase-2 epochs, d_model, K) per demo size; lr scaled up for the short schedules
SIZES = {"tiny": (3, 3, 16, 2), "demo": (40, 30, 32, 4)}
MODEL_LABELS = {"unimodal:rgb": "RGB only", "unimodal:flow": "Flow only", "unimodal:mask": "Mask only",
                "fusion": "Fusion (CSFB + DFB, DRA)"}  # fmt: skip


def _features_dir(artifacts: dict[str, Any]) -> Path:
    feats = artifacts.get("features")
    if isinstance(feats, dict):
        feats = feats.get("jigsaws") or next(iter(feats.values()), None)
    if feats is None:
        raise SurgkitError("the skill demo needs the prep step's feature store (ctx.artifacts['features'])")
    return Path(feats)


def _data_dir(artifacts: dict[str, Any]) -> Path:
    if "world" not in artifacts:
        raise SurgkitError("the skill demo needs the synthetic world (ctx.artifacts['world'])")
    world = Path(artifacts["world"])
    return world / "jigsaws" if (world / "jigsaws").is_dir() else world


@contextlib.contextmanager
def _torch_threads(n: int):
    """Tiny models are overhead-bound: one thread avoids contention on small machines."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def demo_experiment(size: str, seed: int):
    """The demo's experiment: default SurgFusion-Net (DRA, CSFB + DFB) at a small width and schedule."""
    from surgkit.skill.config import load_experiment

    e1, e2, d, k = SIZES["tiny" if size == "tiny" else "demo"]
    exp = load_experiment("table4_dra")
    model = dataclasses.replace(
        exp.model, d_model=d, proj_hidden=2 * d, num_fusionnets=k, heads_csfb=2, heads_dfb=2
    )
    train = dataclasses.replace(
        exp.train,
        seed=seed,
        checkpoint_every=0,
        phase1=dataclasses.replace(exp.train.phase1, epochs=e1, lr=0.05, batch_size=8),
        phase2=dataclasses.replace(exp.train.phase2, epochs=e2, lr=5e-3, head_lr_scale=1.0, batch_size=8),
    )
    return dataclasses.replace(exp, name="demo_surgfusion_dra", model=model, train=train)


def demo_step(ctx: DemoContext) -> DemoSection:
    from surgkit.skill.protocol import RunOptions, run_cross_validation

    data_dir, features_dir = _data_dir(ctx.artifacts), _features_dir(ctx.artifacts)
    exp = demo_experiment(ctx.size, ctx.seed)
    out = Path(ctx.workdir) / "skill" / "louo"
    t0 = time.perf_counter()
    with _torch_threads(1):
        opts = RunOptions(data_dir, features_dir, out, scheme="LOUO", device=ctx.device)
        results = run_cross_validation(exp, opts)
        figures = _attention_figures(results, out, Path(ctx.workdir) / "figures", exp)
    seconds = time.perf_counter() - t0
    task = next(iter(results["tasks"]))
    summary = results["tasks"][task]["summary"]
    rows = [
        [MODEL_LABELS.get(name, name), f"{s['scc_mean']:.3f} ± {s['scc_std']:.3f}", f"{s['scc_pooled']:.3f}",
         f"{s['mae_mean']:.2f} ± {s['mae_std']:.2f}", f"{s['n_folds']} ({s['nan_folds']} NaN)"]
        for name, s in summary.items()
    ]  # fmt: skip
    metrics = {f"scc_{name.split(':')[-1]}": round(s["scc_mean"], 4) for name, s in summary.items()}
    metrics |= {f"scc_pooled_{name.split(':')[-1]}": round(s["scc_pooled"], 4) for name, s in summary.items()}
    metrics |= {f"mae_{name.split(':')[-1]}": round(s["mae_mean"], 3) for name, s in summary.items()}
    folds = results["tasks"][task]["folds"]
    metrics |= {
        "videos": sum(len(f["test"]) for f in folds),
        "folds": len(folds),
        "seconds": round(seconds, 1),
    }
    fusion, rgb = summary["fusion"]["scc_mean"], summary["unimodal:rgb"]["scc_mean"]
    return DemoSection(
        key="skill",
        title="Skill assessment: SurgFusion-Net (RGB + flow + masks, DRA)",
        summary=(
            f"LOUO on the synthetic {task} trials ({metrics['videos']} videos, {metrics['folds']} folds): "
            f"fusion SCC {fusion:.3f} vs RGB-only {rgb:.3f} (mean over folds; pooled out-of-fold "
            f"{summary['fusion']['scc_pooled']:.3f} vs {summary['unimodal:rgb']['scc_pooled']:.3f}). "
            "Unimodal branches trained first (SGD, cosine), "
            "then frozen while the fusion branch trains (AdamW); hybrid loss 0.5·MSE + 0.5·MAE on GRS scaled to [0, 1]."
        ),
        metrics=metrics,
        tables=[(f"{task}, LOUO, mean ± std over folds (MAE in GRS points)",
                 ["Model", "SCC", "SCC pooled", "MAE", "Folds"], rows)],  # fmt: skip
        figures=figures,
        notes=results["protocol"] + [f"features: {results['features']['backbone']} (from the prep step)",
                                     "LOUO folds hold 4 trials each, so per-fold ρ is noisy; the pooled out-of-fold "
                                     "ρ over all 32 trials is the steadier ranking number", f"demo schedule: {exp.train.phase1.epochs}/{exp.train.phase2.epochs} epochs, "
                                     f"d={exp.model.d_model}, K={exp.model.num_fusionnets} (paper: 300 epochs, d=256, K=10)"],
    )  # fmt: skip


def _attention_figures(results: dict, run_dir: Path, fig_dir: Path, exp) -> list[tuple[Path, str]]:
    """CSFB attention curves (paper Fig. 4) for up to two test videos of the first fold."""
    from surgkit.prep.store import FeatureStore
    from surgkit.skill.data import resolve_store_id
    from surgkit.skill.model import SurgFusionNet
    from surgkit.skill.viz import csfb_attention, plot_attention_curves

    task = next(iter(results["tasks"]))
    fold = results["tasks"][task]["folds"][0]
    model = SurgFusionNet.from_pretrained(run_dir / task / fold["name"] / "fusion").eval()
    store = FeatureStore(results["features"]["root"])
    seg_s = store.segment_frames / store.fps
    out = []
    for vid in fold["test"][:2]:
        feats = store.load_all(resolve_store_id(store, vid, exp.train.view), model.config.modalities)
        t = next(iter(feats.values())).shape[0]
        stage = 2 if t // 4 >= 4 else 1
        w = csfb_attention(model, feats, stage)
        path = plot_attention_curves(w, model.config.modalities, fig_dir / f"skill_attention_{vid}.png",
                                     f"{vid} (held out, fold {fold['name']}): CSFB stage {stage}", seg_s * 2**stage)  # fmt: skip
        out.append(
            (path, f"CSFB stage-{stage} attention weight per modality over time, {vid} (paper Fig. 4 style)")
        )
    return out
