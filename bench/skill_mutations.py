"""The mistakes the skill tests catch: each mistake is put into a copy of ``src/`` on purpose and the
named tests are run against that copy; a mistake no test turns red is reported as MISSED. Prints one
JSON object per mistake, then a summary (``docs/skill.md``, "Mistakes the tests catch", lists them).

    python bench/skill_mutations.py              # every mistake (a few minutes on 2 cores)
    python bench/skill_mutations.py 0 4 11       # some of them, by index

Run from the repository root with the venv's python; the tests see ``SURGKIT_SHARED`` as set (or
``../shared``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL, ATTN, TRAIN, PROTO = (f"src/surgkit/skill/{n}.py" for n in ("model", "attention", "train", "protocol"))
T_MODEL, T_ATTN, T_FIX = (
    "tests/skill/test_model.py",
    "tests/skill/test_attention.py",
    "tests/skill/test_fixes.py",
)
T_PROTO = "tests/skill/test_protocol.py"

# (mistake, file, text, replacement, tests that must go red)
MISTAKES: list[tuple[str, str, str, str, list[str]]] = [
    ("DFB query built from C_i alone (CSFB output ignored)", MODEL,
     "self.query(torch.cat([c, s], dim=1))", "self.query(torch.cat([c, torch.zeros_like(s)], dim=1))",
     [f"{T_MODEL}::test_dfb_query_uses_the_csfb_output"]),
    ("FusionNet weights normalised over K instead of over the modalities", MODEL,
     "        return torch.softmax(logits, dim=1)\n", "        return torch.softmax(logits, dim=2)\n",
     [f"{T_MODEL}::test_fusionnet_weights_are_a_softmax_over_modalities"]),
    ("Fisher z replaced by an arithmetic mean (metric)", "src/surgkit/metrics/skill.py",
     "return float(np.tanh(np.mean(np.arctanh(np.clip(r, -1.0 + clip, 1.0 - clip)))))", "return float(np.mean(r))",
     ["tests/metrics/test_skill.py", f"{T_FIX}::test_across_task_scc_is_the_fisher_z_mean_not_the_arithmetic_mean"]),
    ("Fisher z replaced by an arithmetic mean (across tasks)", PROTO,
     '"scc_fisher_z": interop.fisher_z_mean(', '"scc_fisher_z": np.mean(',
     [f"{T_FIX}::test_across_task_scc_is_the_fisher_z_mean_not_the_arithmetic_mean"]),
    ("hybrid loss replaced by MSE (function)", TRAIN,
     "return alpha * F.mse_loss(pred, target) + (1.0 - alpha) * F.l1_loss(pred, target)",
     "return F.mse_loss(pred, target)", [f"{T_FIX}::test_hybrid_loss_is_half_mse_plus_half_mae"]),
    ("hybrid loss replaced by MSE (in the trainer)", TRAIN,
     "loss = hybrid_loss(pmodel(part, valid[rows]).score, y[rows], tcfg.loss_alpha)",
     "loss = F.mse_loss(pmodel(part, valid[rows]).score, y[rows])",
     [f"{T_FIX}::test_training_minimises_the_hybrid_loss"]),
    ("negative attention: mask added before the negation", ATTN,
     "            return torch.softmax(-scores + m, dim=-1)\n", "            return torch.softmax(-(scores + m), dim=-1)\n",
     [f"{T_FIX}::test_negative_attention_matches_maqa_reference_with_its_policy_mask"]),
    ("negative attention scaled by sqrt(d) instead of sqrt(d_h)", ATTN,
     "/ math.sqrt(self.head_dim)", "/ math.sqrt(self.dim)",
     [f"{T_FIX}::test_negative_attention_matches_maqa_reference_with_its_policy_mask"]),
    ("default DRA normalisation back to a softmax over probabilities", ATTN,
     '        final_norm: str = "renorm",\n', '        final_norm: str = "softmax",\n',
     [f"{T_ATTN}::test_default_dra_reduces_exactly_to_negative_and_vanilla_attention"]),
    ("gamma a constant (no response to the principal direction)", ATTN,
     "        return kappa * misalignment(rows, main, self.eps)", "        return kappa",
     [f"{T_ATTN}::test_divergence_gamma_is_zero_on_the_principal_direction_and_grows_away_from_it"]),
    ("policy draws that ignore the temperature (MAQA's hard draw)", MODEL,
     "F.gumbel_softmax(logits / tau.clamp_min(1e-4), tau=1.0", "F.gumbel_softmax(logits, tau=1.0",
     [f"{T_MODEL}::test_annealed_policy_temperature_makes_training_choices_agree_with_evaluation"]),
    ("csfb_kv=temporal without the key padding mask", MODEL,
     "out, w = self.attn(q.transpose(1, 2), kv, keep)", "out, w = self.attn(q.transpose(1, 2), kv)",
     ["tests/skill/test_padding.py::test_video_output_does_not_depend_on_padding"]),
    ("skill predict ignoring length_policy=resample", "src/surgkit/skill/predict.py",
     "        if resample_to is not None:", "        if False:",
     [f"{T_FIX}::test_predict_scores_like_the_run_under_resample"]),
    ("--task runs overwriting results.json", PROTO,
     "            if task in exclude or not (self.out / task).is_dir():", "            if True:",
     [f"{T_FIX}::test_runs_split_by_task_keep_every_task_and_the_fisher_z_row"]),
    ("fusion fed the first modality's features for every modality", MODEL,
     "feats = {m: [self.feature_dropout(u.detach()) for u in o.features] for m, o in outs.items()}",
     "feats = {m: [self.feature_dropout(u.detach()) for u in outs[cfg.modalities[0]].features] for m in outs}",
     [f"{T_PROTO}::test_fusion_learns_where_rgb_is_corrupted",
      f"{T_PROTO}::test_fusion_combines_modalities_that_each_see_part_of_the_skill"]),
    ("AVG fusion averaging every token (policy mask ignored)", ATTN,
     "            out = weights @ z\n", "            out = z.mean(1, keepdim=True).expand(b, lq, -1)\n",
     [f"{T_ATTN}::test_avg_and_cat_fusions_replace_attention_with_feature_fusion"]),
    ("length-only baseline fitted on the training and the test fold", PROTO,
     "coef, *_ = np.linalg.lstsq(lengths, targets, rcond=None)",
     "coef, *_ = np.linalg.lstsq(np.array([[1.0, v.length] for v in train + test]), "
     "np.stack([v.target for v in train + test]).astype(np.float64), rcond=None)",
     [f"{T_FIX}::test_length_only_baseline_is_a_least_squares_line_fitted_on_the_training_fold"]),
]  # fmt: skip


def run_one(index: int) -> dict:
    """Apply mistake ``index`` to a copy of src/ and run its tests against the copy."""
    name, path, old, new, tests = MISTAKES[index]
    with tempfile.TemporaryDirectory(prefix="skill-mutation-") as tmp:
        src = Path(tmp) / "src"
        shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__"))
        target = Path(tmp) / path
        text = target.read_text()
        if text.count(old) != 1:
            return {
                "index": index,
                "mistake": name,
                "error": f"{path}: the text to break occurs {text.count(old)}×",
            }
        target.write_text(text.replace(old, new))
        env = {**os.environ, "PYTHONPATH": str(src), "SURGKIT_SHARED": os.environ.get("SURGKIT_SHARED", "")}
        if not env["SURGKIT_SHARED"]:
            env.pop("SURGKIT_SHARED")
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
        res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = res.stdout.strip().splitlines()
    failed = sorted({ln.split(" ")[1] for ln in lines if ln.startswith("FAILED ")})
    return {"index": index, "mistake": name, "file": path, "tests": tests, "caught": res.returncode == 1,
            "failed": failed, "summary": lines[-1] if lines else res.stderr[-300:]}  # fmt: skip


def main() -> None:
    chosen = [int(a) for a in sys.argv[1:]] or list(range(len(MISTAKES)))
    rows = []
    for i in chosen:
        rows.append(run_one(i))
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"mistakes": len(rows), "caught": sum(r.get("caught", False) for r in rows),
                      "missed": [r["mistake"] for r in rows if not r.get("caught")]}))  # fmt: skip


if __name__ == "__main__":
    main()
