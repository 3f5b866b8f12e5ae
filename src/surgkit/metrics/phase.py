"""Surgical phase recognition metrics (spec §1), equal to the field's reference scripts.

Protocols (``evaluate(..., protocol=...)``):

``"relaxed"``
    The Cholec80/M2CAI16 Matlab evaluation (``Evaluate.m`` + ``Main.m`` of TMRNet / Surgformer,
    SV-RCNet for the older variant), behind most published Cholec80 tables (spec §1.5). A
    prediction within a 10 s window of a phase boundary is forgiven when it names a neighbouring
    phase (rule tables per ``variant``). **Quirk reproduced by default** ("tail bug", spec
    §1.5.1): the Early rule's mask is computed from the *last* t frames of a phase run but applied
    to its *first* t frames (Matlab logical indexing with a short mask). ``relaxed_fixed=True``
    applies it to the tail as intended.
``"strict"`` (default)
    Same per-video/per-phase recipe and Main.m aggregation with plain frame matches (spec §1.6).
``"sklearn-per-video"`` / ``"sklearn-pooled"``
    SelfSupSurg / Surgformer ``phase_metric.py`` (spec §1.6): sklearn
    ``precision_recall_fscore_support`` per video (classes present in that video's GT or
    prediction, undefined → 0, mean over classes, then mean and np.std (ddof 0) over videos) or on
    all frames pooled.

Main.m aggregation rules (spec §1.5.3), used by "relaxed" and "strict": per (phase, video)
values are clipped at 100 % (+Inf included), averaged over videos with nanmean, then
Jaccard = **mean** over phases (NaN propagates), Precision = **nanmean**, Recall = **mean**, each
with the std over *phases* (N−1); accuracy = mean and std (N−1) over *videos*; F1 (Surgformer
Main.m) from the unclipped per-video P and R, clipped, nanmean over videos, mean over phases,
its std over *videos* of the per-video nanmean over phases. Matlab's ``std`` of one value is 0,
which is kept. All outputs are fractions (the scripts' percent / 100).

Labels are 0-based phase ids (Cholec80 0..6, M2CAI16 0..7); the Matlab 1-based ids of the spec's
rule tables are id + 1.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from surgkit.errors import SurgkitError

__all__ = [
    "PROTOCOLS",
    "VARIANTS",
    "edit_score",
    "evaluate",
    "relaxed_difference",
    "segmental_f1",
]

PROTOCOLS = ("strict", "relaxed", "sklearn-per-video", "sklearn-pooled")

# variant -> (K, {1-based phase: (Late set, Early set)}, default (Late, Early), P=0 when never predicted)
_DEFAULT_RULE = (frozenset({-1}), frozenset({1}))
VARIANTS: dict[str, dict] = {
    "cholec80": {
        "num_phases": 7,
        "reference": "TMRNet / Surgformer Evaluate.m ('revised for cholec80')",
        "rules": {
            4: ({-1}, {1, 2}),
            5: ({-1}, {1, 2}),
            6: ({-1, -2}, {1, 2}),
            7: ({-1, -2}, {1, 2}),
        },
        "never_predicted_precision_zero": False,
    },
    "cholec80-svrcnet": {
        "num_phases": 7,
        "reference": "SV-RCNet evaluation_Cholec80/Evaluate.m (older)",
        "rules": {
            4: ({-1}, {1, 2}),
            5: ({-1}, {1, 2}),
            6: ({-1, -2}, {1}),
            7: ({-1, -2}, {1}),
        },
        "never_predicted_precision_zero": False,
    },
    "m2cai16": {
        "num_phases": 8,
        "reference": "TMRNet Evaluate_m2cai.m",
        "rules": {
            5: ({-1}, {1, 2}),
            6: ({-1}, {1, 2}),
            7: ({-1, -2}, {1, 2}),
            8: ({-1, -2}, {1, 2}),
        },
        "never_predicted_precision_zero": False,
    },
    "m2cai16-svrcnet": {
        "num_phases": 8,
        "reference": "SV-RCNet evaluation_M2CAI/Evaluate.m (P = 0 when a phase is never predicted)",
        "rules": {
            5: ({-1}, {1, 2}),
            6: ({-1}, {1, 2}),
            7: ({-1, -2}, {1, 2}),
            8: ({-1, -2}, {1, 2}),
        },
        "never_predicted_precision_zero": True,
    },
}


# ----------------------------------------------------------------------------------------- input
def _as_videos(seqs, name: str) -> list[np.ndarray]:
    """A list of per-video 1-D arrays; a single flat sequence counts as one video."""
    if isinstance(seqs, np.ndarray) and seqs.ndim == 1:
        return [seqs]
    seqs = list(seqs)
    if seqs and np.ndim(seqs[0]) == 0:
        return [np.asarray(seqs)]
    out = [np.asarray(s) for s in seqs]
    for v, s in enumerate(out):
        if s.ndim != 1:
            raise SurgkitError(f"{name} of video {v} must be 1-D, got shape {s.shape}")
    return out


def _validate(labels, preds, num_phases: int, video_names=None) -> tuple[list, list, list]:
    g_all, p_all = _as_videos(labels, "labels"), _as_videos(preds, "preds")
    if len(g_all) != len(p_all):
        raise SurgkitError(f"{len(g_all)} label videos but {len(p_all)} prediction videos")
    if not g_all:
        raise SurgkitError("no videos to evaluate")
    names = list(video_names) if video_names is not None else list(range(len(g_all)))
    if len(names) != len(g_all):
        raise SurgkitError(f"{len(names)} video names for {len(g_all)} videos")
    if num_phases < 1:
        raise SurgkitError(f"num_phases must be >= 1, got {num_phases}")
    gs, ps = [], []
    for name, g, p in zip(names, g_all, p_all, strict=True):
        if g.size == 0:
            raise SurgkitError(f"video {name} is empty")
        if g.shape != p.shape:
            raise SurgkitError(f"video {name}: {g.size} labels but {p.size} predictions")
        for what, x in (("label", g), ("prediction", p)):
            if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
                raise SurgkitError(f"video {name}: {what}s must be integer phase ids, got dtype {x.dtype}")
            if not np.issubdtype(x.dtype, np.integer):
                if not np.all(np.isfinite(x) & (x == np.round(x))):
                    bad = np.flatnonzero(~np.isfinite(np.asarray(x, float)) | (x != np.round(x)))
                    i = int(bad[0]) if bad.size else 0
                    raise SurgkitError(
                        f"video {name}, frame {i}: {what} {x[i].item()!r} is not an integer phase id"
                    )
                x = x.astype(np.int64)
            out = np.flatnonzero((x < 0) | (x >= num_phases))
            if out.size:
                i = int(out[0])
                raise SurgkitError(
                    f"video {name}, frame {i}: {what} {x[i]} outside 0..{num_phases - 1} (num_phases={num_phases})"
                )
        gs.append(g.astype(np.int64))
        ps.append(p.astype(np.int64))
    return gs, ps, names


# ------------------------------------------------------------------------ relaxed (Evaluate.m)
def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs [start, end] (inclusive) of True in ``mask``, in temporal order."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def _window(fps: float) -> int:
    window = 10.0 * fps
    if window < 1 or abs(window - round(window)) > 1e-9:
        raise SurgkitError(
            f"fps={fps}: the relaxed window 10*fps must be a positive integer number of frames"
        )
    return int(round(window))


def relaxed_difference(g, p, fps: float = 1.0, variant: str = "cholec80", relaxed_fixed: bool = False):
    """The relaxed difference u of Evaluate.m for one video (spec §1.5.1 steps 1–2); u == 0 = correct.

    ``g``, ``p``: 0-based phase ids. d = p − g; for each phase c and each maximal GT run of c
    (length L, t = min(10·fps, L)): the **Late** rule zeroes d ∈ Late in the first t frames
    (predicting the previous phase just after a transition). The **Early** rule (d ∈ Early,
    predicting the next phase just before a transition) is applied with the Evaluate.m **tail
    bug**: its mask is computed on the last t frames, after the Late rule, but zeroes the *first*
    t frames. ``relaxed_fixed=True`` zeroes the last t frames instead (the evident intent).
    """
    if variant not in VARIANTS:
        raise SurgkitError(f"unknown relaxed variant '{variant}' (choose from {', '.join(VARIANTS)})")
    spec = VARIANTS[variant]
    g = np.asarray(g, dtype=np.int64)
    d = np.asarray(p, dtype=np.int64) - g
    u = np.zeros_like(d)
    window = _window(fps)
    for c in range(spec["num_phases"]):
        late, early = (np.array(sorted(r)) for r in spec["rules"].get(c + 1, _DEFAULT_RULE))
        for s, e in _runs(g == c):
            x = d[s : e + 1].copy()
            t = min(window, x.size)
            head = x[:t]
            head[np.isin(head, late)] = 0
            tail_mask = np.isin(x[x.size - t :], early)
            if relaxed_fixed:
                x[x.size - t :][tail_mask] = 0
            else:  # Matlab: x(mask) with a mask of length t indexes x(1:t)
                x[:t][tail_mask] = 0
            u[s : e + 1] = x
    return u


# --------------------------------------------------------------------- per-video J/P/R (percent)
def _per_video_jpr(g, p, u, num_phases: int, precision_zero: bool):
    """J, P, R in percent for each phase of one video (spec §1.5.1 step 4 / §1.4), IEEE division."""
    ok = u == 0
    J, P, R = (np.full(num_phases, np.nan) for _ in range(3))
    with np.errstate(divide="ignore", invalid="ignore"):
        for c in range(num_phases):
            in_g, in_p = g == c, p == c
            n_g = int(in_g.sum())
            if n_g == 0:
                continue
            union = in_g | in_p
            tp = float(np.count_nonzero(union & ok))
            n_p = float(in_p.sum())
            J[c] = 100.0 * tp / union.sum()
            P[c] = 0.0 if (precision_zero and n_p == 0) else np.float64(100.0 * tp) / np.float64(n_p)
            R[c] = 100.0 * tp / n_g
    return J, P, R


def _matlab_std(x: np.ndarray, skip_nan: bool) -> float:
    """Matlab ``std`` / ``nanstd``: N−1 normalisation, 0 for a single value, NaN propagates (std)."""
    x = np.asarray(x, dtype=np.float64)
    if skip_nan:
        x = x[~np.isnan(x)]
    elif np.isnan(x).any():
        return float("nan")
    if x.size == 0:
        return float("nan")
    if x.size == 1:
        return 0.0
    return float(np.std(x, ddof=1))


def _nanmean(x, axis=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def _mainm_aggregate(J, P, R, acc, phase_mean: str = "mainm") -> dict:
    """Main.m aggregation (spec §1.5.3). J, P, R: (K, V) percent; acc: (V,) percent.

    ``phase_mean="nanmean"`` (a §1.6 option, not the reference) averages J, R and F over the
    phases with nanmean too, so a phase absent from every test video no longer makes them NaN.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        F = 2.0 * P * R / (P + R)  # from the unclipped values; Inf/Inf and 0/0 give NaN
    clip = {k: np.where(X > 100.0, 100.0, X) for k, X in (("J", J), ("P", P), ("R", R), ("F", F))}
    per_phase = {k: _nanmean(X, axis=1) for k, X in clip.items()}
    f_video = _nanmean(clip["F"], axis=0)
    skip = phase_mean == "nanmean"
    mean = _nanmean if skip else np.mean
    res = {
        "jaccard": float(mean(per_phase["J"])),
        "jaccard_std": _matlab_std(per_phase["J"], skip_nan=skip),
        "precision": float(_nanmean(per_phase["P"])),
        "precision_std": _matlab_std(per_phase["P"], skip_nan=True),
        "recall": float(mean(per_phase["R"])),
        "recall_std": _matlab_std(per_phase["R"], skip_nan=skip),
        "f1": float(mean(per_phase["F"])),
        "f1_std": _matlab_std(f_video, skip_nan=False),
        "video_accuracy": float(np.mean(acc)),
        "video_accuracy_std": _matlab_std(acc, skip_nan=False),
        "jaccard_per_phase": per_phase["J"],
        "precision_per_phase": per_phase["P"],
        "recall_per_phase": per_phase["R"],
        "f1_per_phase": per_phase["F"],
    }
    return {k: v / 100.0 for k, v in res.items()}  # percent -> fraction (std scales alike)


# ----------------------------------------------------------------------------- sklearn protocols
def _prf_sklearn(g: np.ndarray, p: np.ndarray, num_phases: int):
    """Per-class P, R, F, J over the classes present in g ∪ p (sklearn default labels), undefined → 0."""
    cm = np.bincount(g * num_phases + p, minlength=num_phases * num_phases).reshape(num_phases, num_phases)
    tp = np.diag(cm).astype(np.float64)
    n_pred, n_true = cm.sum(axis=0), cm.sum(axis=1)
    present = (n_pred + n_true) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.where(n_pred > 0, tp / n_pred, 0.0)
        rec = np.where(n_true > 0, tp / n_true, 0.0)
        f1 = np.where(prec + rec > 0, 2 * prec * rec / (prec + rec), 0.0)
        jac = np.where(n_pred + n_true - tp > 0, tp / (n_pred + n_true - tp), 0.0)
    nan = np.full(num_phases, np.nan)
    return {k: np.where(present, v, nan) for k, v in (("P", prec), ("R", rec), ("F", f1), ("J", jac))}


def _sklearn_protocol(gs, ps, num_phases: int, pooled: bool) -> dict:
    keys = {"P": "precision", "R": "recall", "F": "f1", "J": "jaccard"}
    acc = np.array([np.mean(g == p) for g, p in zip(gs, ps, strict=True)])
    out: dict = {"video_accuracy": float(acc.mean()), "video_accuracy_std": float(np.std(acc))}
    if pooled:
        res = _prf_sklearn(np.concatenate(gs), np.concatenate(ps), num_phases)
        for k, name in keys.items():
            out[name] = float(_nanmean(res[k]))
            out[f"{name}_per_phase"] = res[k]
        return out
    per_video = [_prf_sklearn(g, p, num_phases) for g, p in zip(gs, ps, strict=True)]
    for k, name in keys.items():
        stack = np.array([r[k] for r in per_video])  # (V, K), NaN = class absent from the video
        video_means = _nanmean(stack, axis=1)
        out[name] = float(video_means.mean())
        out[f"{name}_std"] = float(np.std(video_means))
        out[f"{name}_per_phase"] = _nanmean(stack, axis=0)
    return out


# ------------------------------------------------------------------------------------ evaluate
def evaluate(
    labels,
    preds,
    num_phases: int,
    protocol: str = "strict",
    fps: float = 1,
    *,
    variant: str | None = None,
    relaxed_fixed: bool = False,
    video_names: Sequence | None = None,
    never_predicted: str | None = None,
    phase_mean: str = "mainm",
) -> dict:
    """Phase recognition metrics of per-video label/prediction sequences (spec §1).

    Parameters
    ----------
    labels, preds : lists of per-video integer arrays (0-based phase ids), equal lengths per video.
    num_phases : K (Cholec80 7, M2CAI16 8).
    protocol : ``"strict"``, ``"relaxed"``, ``"sklearn-per-video"`` or ``"sklearn-pooled"``.
    fps : frame rate of the sequences; the relaxed window is 10·fps frames (must be an integer).
    variant : relaxed rule table: ``"cholec80"`` (TMRNet/Surgformer, default for K = 7),
        ``"cholec80-svrcnet"``, ``"m2cai16"`` (default for K = 8), ``"m2cai16-svrcnet"``.
    relaxed_fixed : apply the relaxed Early rule to the end of each phase (fixes the Evaluate.m
        tail bug); default False reproduces published numbers.
    never_predicted : per-video precision of a phase present in GT but never predicted:
        ``"nan"`` (Matlab IEEE rule, default; relaxed TP > 0 gives +Inf, clipped to 100 %) or
        ``"zero"`` (SV-RCNet M2CAI; the default of variant ``"m2cai16-svrcnet"``).
    phase_mean : ``"mainm"`` (reference: Jaccard, recall, F1 plain mean over phases, precision
        nanmean) or ``"nanmean"`` (all four nanmean; an option of spec §1.6, not the reference).

    Returns a dict of fractions: ``image_accuracy`` (all frames pooled, plain matches, §1.2),
    ``video_accuracy`` ± ``video_accuracy_std``, ``precision``, ``recall``, ``jaccard``, ``f1``
    with their ``*_std`` and ``*_per_phase`` arrays, ``per_video`` details and ``protocol``.
    """
    if protocol not in PROTOCOLS:
        raise SurgkitError(f"unknown phase protocol '{protocol}' (choose from {', '.join(PROTOCOLS)})")
    gs, ps, names = _validate(labels, preds, num_phases, video_names)
    image_acc = float(sum(int((g == p).sum()) for g, p in zip(gs, ps, strict=True)) / sum(g.size for g in gs))
    info: dict = {"name": protocol, "units": "fraction", "video_names": names}
    if protocol.startswith("sklearn"):
        if never_predicted is not None or phase_mean != "mainm" or relaxed_fixed or variant is not None:
            raise SurgkitError(
                f"protocol '{protocol}' has fixed rules: never_predicted, phase_mean, variant and relaxed_fixed "
                "apply to the strict and relaxed protocols only"
            )
        res = _sklearn_protocol(gs, ps, num_phases, pooled=protocol == "sklearn-pooled")
        info.update(
            reference="SelfSupSurg / Surgformer phase_metric.py (sklearn precision_recall_fscore_support)",
            classes="per video: labels present in GT or prediction; undefined values -> 0",
            std="np.std over videos (ddof=0)" if protocol == "sklearn-per-video" else "none (pooled)",
        )
        return {"image_accuracy": image_acc, **res, "protocol": info}

    if phase_mean not in ("mainm", "nanmean"):
        raise SurgkitError(f"phase_mean must be 'mainm' or 'nanmean', got {phase_mean!r}")
    if never_predicted not in (None, "nan", "zero"):
        raise SurgkitError(f"never_predicted must be 'nan' or 'zero', got {never_predicted!r}")
    precision_zero = never_predicted == "zero"
    if protocol == "relaxed":
        variant = variant or ("m2cai16" if num_phases == 8 else "cholec80")
        if variant not in VARIANTS:
            raise SurgkitError(f"unknown relaxed variant '{variant}' (choose from {', '.join(VARIANTS)})")
        if VARIANTS[variant]["num_phases"] != num_phases:
            raise SurgkitError(
                f"relaxed variant '{variant}' is defined for {VARIANTS[variant]['num_phases']} phases, "
                f"got num_phases={num_phases}"
            )
        _window(fps)
        if never_predicted is None:
            precision_zero = VARIANTS[variant]["never_predicted_precision_zero"]
        us = [relaxed_difference(g, p, fps, variant, relaxed_fixed) for g, p in zip(gs, ps, strict=True)]
        info.update(
            reference=VARIANTS[variant]["reference"] + " + Main.m",
            variant=variant,
            fps=fps,
            window_frames=_window(fps),
            relaxed_fixed=bool(relaxed_fixed),
            quirks=[
                "tail bug: Early-rule mask from the last t frames applied to the first t frames"
                + (" (FIXED: applied to the last t frames)" if relaxed_fixed else " (reproduced)"),
                "relaxed TP counts frames forgiven inside another phase: per-video J/P/R can exceed 100%,"
                " clipped at 100% before averaging",
            ],
        )
    else:
        us = [p - g for g, p in zip(gs, ps, strict=True)]
        info.update(reference="per-video recipe of spec §1.4 with Main.m aggregation (plain matches)")
    info["aggregation"] = (
        "Main.m: clip>100%, nanmean over videos; jaccard/recall mean and precision nanmean over phases, "
        "std over phases (N-1); accuracy mean/std over videos (N-1); F1 (Surgformer) mean over phases, "
        "std over videos"
        if phase_mean == "mainm"
        else "Main.m with nanmean over phases for all of J, P, R, F1 (non-reference option)"
    )
    info["never_predicted_precision"] = "zero" if precision_zero else "nan (IEEE 0/0; TP/0 = Inf clipped)"
    J, P, R = (np.empty((num_phases, len(gs))) for _ in range(3))
    acc = np.empty(len(gs))
    for v, (g, p, u) in enumerate(zip(gs, ps, us, strict=True)):
        J[:, v], P[:, v], R[:, v] = _per_video_jpr(g, p, u, num_phases, precision_zero)
        acc[v] = 100.0 * np.count_nonzero(u == 0) / u.size
    out = {"image_accuracy": image_acc, **_mainm_aggregate(J, P, R, acc, phase_mean)}
    if protocol == "relaxed":
        out["relaxed_image_accuracy"] = float(sum(int((u == 0).sum()) for u in us) / sum(u.size for u in us))
    out["per_video"] = {
        "accuracy": acc / 100.0,
        "jaccard": J / 100.0,
        "precision": P / 100.0,
        "recall": R / 100.0,
    }
    out["protocol"] = info
    return out


# --------------------------------------------------------------- segmental metrics (MS-TCN eval)
def _segments(seq, bg_class) -> tuple[list, np.ndarray, np.ndarray]:
    """(labels, starts, exclusive ends) of the maximal runs of ``seq``, background runs dropped."""
    seq = list(seq)
    labels, starts, ends = [], [], []
    for i, lab in enumerate(seq):
        if i == 0 or lab != seq[i - 1]:
            labels.append(lab)
            starts.append(i)
            ends.append(i + 1)
        else:
            ends[-1] = i + 1
    keep = [k for k, lab in enumerate(labels) if lab not in bg_class]
    return [labels[k] for k in keep], np.array([starts[k] for k in keep]), np.array([ends[k] for k in keep])


def _levenshtein(a: list, b: list) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]


def _paired_videos(labels, preds) -> list[tuple[list, list]]:
    gl, pl = _as_videos(labels, "labels"), _as_videos(preds, "preds")
    if len(gl) != len(pl):
        raise SurgkitError(f"{len(gl)} label videos but {len(pl)} prediction videos")
    for v, (g, p) in enumerate(zip(gl, pl, strict=True)):
        if g.size == 0:
            raise SurgkitError(f"video {v} is empty")
        if g.shape != p.shape:
            raise SurgkitError(f"video {v}: {g.size} labels but {p.size} predictions")
    return [(g.tolist(), p.tolist()) for g, p in zip(gl, pl, strict=True)]


def edit_score(labels, preds, bg_class: Sequence = ()) -> float:
    """Segmental edit score (MS-TCN ``eval.py``, spec §1.7), mean over videos, as a fraction.

    Per video: 1 − Lev(P_seg, Y_seg) / max(|P_seg|, |Y_seg|) on the label sequences of the
    segments (maximal runs, ``bg_class`` runs removed), unit-cost Levenshtein distance.
    """
    scores = []
    for g, p in _paired_videos(labels, preds):
        yl, pl = _segments(g, set(bg_class))[0], _segments(p, set(bg_class))[0]
        longest = max(len(yl), len(pl))
        scores.append(1.0 if longest == 0 else 1.0 - _levenshtein(pl, yl) / longest)
    return float(np.mean(scores))


def _f1_counts(g: list, p: list, tau: float, bg_class: set) -> tuple[int, int, int]:
    """Greedy MS-TCN matching of one video: (TP, FP, FN) at IoU threshold tau (inclusive)."""
    yl, ys, ye = _segments(g, bg_class)
    pl, ps, pe = _segments(p, bg_class)
    hit = np.zeros(len(yl), dtype=bool)
    tp = fp = 0
    for j in range(len(pl)):
        if not yl:
            fp += 1
            continue
        inter = np.minimum(pe[j], ye) - np.maximum(ps[j], ys)
        union = np.maximum(pe[j], ye) - np.minimum(ps[j], ys)
        iou = inter / union * np.array([pl[j] == lab for lab in yl])
        best = int(np.argmax(iou))
        if iou[best] >= tau and not hit[best]:
            tp += 1
            hit[best] = True
        else:
            fp += 1
    return tp, fp, len(yl) - int(hit.sum())


def segmental_f1(
    labels,
    preds,
    overlaps: Sequence[float] = (0.1, 0.25, 0.5),
    bg_class: Sequence = (),
    average: str = "pooled",
) -> dict:
    """Segmental F1@τ (MS-TCN ``eval.py``, spec §1.7) as fractions.

    Each predicted segment (temporal order) takes the GT segment of the same label with the
    highest IoU (first maximum); it is a TP if IoU ≥ τ and that GT segment is not yet hit, else a
    FP (greedy). FN = unmatched GT segments. ``average="pooled"`` (the reference) sums TP/FP/FN
    over videos before F1 = 2PR/(P+R) (NaN → 0); ``"per-video"`` averages per-video F1 instead.
    Returns ``{"f1@0.10": ..., "counts": {...}, "average": ...}``.
    """
    if average not in ("pooled", "per-video"):
        raise SurgkitError(f"unknown average '{average}' (choose 'pooled' or 'per-video')")
    videos = _paired_videos(labels, preds)
    out: dict = {
        "average": average,
        "counts": {},
        "protocol": {
            "name": "ms-tcn-segmental-f1",
            "reference": "MS-TCN eval.py (Lea et al. TCN): greedy matching, IoU >= tau, first argmax",
            "average": "TP/FP/FN summed over videos" if average == "pooled" else "mean of per-video F1",
            "bg_class": list(bg_class),
            "units": "fraction",
        },
    }
    for tau in overlaps:
        counts = np.array([_f1_counts(g, p, tau, set(bg_class)) for g, p in videos], dtype=np.float64)
        key = f"f1@{tau:.2f}"
        rows = counts.sum(axis=0, keepdims=True) if average == "pooled" else counts
        tp, fp, fn = rows.T
        with np.errstate(divide="ignore", invalid="ignore"):
            prec, rec = tp / (tp + fp), tp / (tp + fn)
            f1 = np.nan_to_num(2 * prec * rec / (prec + rec))
        out[key] = float(f1.mean())
        total = counts.sum(axis=0).astype(int)
        out["counts"][key] = {"tp": int(total[0]), "fp": int(total[1]), "fn": int(total[2])}
    return out
