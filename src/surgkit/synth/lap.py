"""Planning a laparoscopic cholecystectomy video (phases, actions, camera, smoke, CVS)."""

from __future__ import annotations

import numpy as np

from surgkit.synth.anatomy import MAX_FAT, CanvasKey, build_lap_anatomy
from surgkit.synth.motion import MotionStyle, TrackBuilder
from surgkit.synth.plan import (
    LAP_VIEW,
    SlotTrack,
    VideoPlan,
    _cls_array,
    _do_action,
    _planned_array,
    _PointSampler,
    _Slot,
    _smooth,
    camera_affine,
    to_screen,
    view_test,
)
from surgkit.synth.skill import TRIAL_SD, Surgeon, measure, score
from surgkit.synth.workflow import (
    CLIPPING_SCRIPT,
    LEFT_ACTIONS,
    MIN_ACTIONS,
    RIGHT_ACTIONS,
    SHORT_CLIPPING_SCRIPT,
    SHORT_MIN_ACTIONS,
    SMOKE_INSTRUMENTS,
    SMOKE_VERBS,
    phase_action_counts,
    phase_sequence,
    triplet,
)
from surgkit.vocab import TRIPLET_COMPONENTS, VERBS

CLIP_VERB = VERBS.index("clip")


def _pick(rng: np.random.Generator, table: tuple[int, ...], n: int) -> list[int]:
    out: list[int] = []
    for _ in range(n):
        choices = [t for t in table if not out or t != out[-1]] or list(table)
        out.append(int(choices[int(rng.integers(len(choices)))]))
    return out


def _dwell(rng: np.random.Generator, fps: float, skill: float, tempo: float) -> int:
    return max(2, int(fps * tempo * rng.uniform(1.5, 3.5) * (1.0 + 0.6 * (1.0 - skill))))


def plan_lap_video(
    index: int,
    name: str,
    surgeon: Surgeon,
    seconds: float,
    rng: np.random.Generator,
    width: int,
    height: int,
    fps: float = 25.0,
    tempo: float = 1.0,
    pace: float = 1.0,
    short: bool = False,
) -> VideoPlan:
    """Plan one cholecystectomy of about ``seconds`` (actual length depends on the surgeon).

    ``tempo`` scales the time spent acting; ``short`` uses one clip per structure and one action
    minimum per phase (the tiny preset's test videos).
    """
    r_scene, r_work, r_cam, r_score, r_cvs = rng.spawn(5)
    world = 2 * max(width, height)
    scene = build_lap_anatomy(r_scene, world)
    skill = float(np.clip(surgeon.skill + r_work.normal(0, TRIAL_SD), 0, 1))
    style = MotionStyle.from_skill(skill, world)
    sample = _PointSampler(scene, reach=0.3 * world)
    order = phase_sequence(r_work)
    minimum = SHORT_MIN_ACTIONS if short else MIN_ACTIONS
    counts = phase_action_counts(r_work, order, seconds, 2.0 + 3.0 * tempo, minimum)
    ports = {
        "left": np.array([-0.05, 0.33]) * world,
        "right": np.array([1.05, 0.42]) * world,
        "assist": np.array([0.55, 1.08]) * world,
    }
    rngs = dict(zip(ports, r_work.spawn(3), strict=False))
    slots = {k: _Slot(k, p, TrackBuilder(p, style, rngs[k], fps, pace), []) for k, p in ports.items()}
    wander_dist = 0.5 * LAP_VIEW * world

    def wander(slot: _Slot) -> tuple:
        d = slot.builder.here - np.array([0.47, 0.5]) * world
        return (d / max(float(np.linalg.norm(d)), 1e-6), wander_dist)

    # operating hand drives the timeline
    right, starts = slots["right"], {}
    for p in order:
        starts[p] = len(right.builder)
        stage = int(p >= 4)
        acts = (
            list(SHORT_CLIPPING_SCRIPT if short else CLIPPING_SCRIPT)
            if p == 2
            else _pick(rngs["right"], RIGHT_ACTIONS[p], counts[p])
        )
        for tid in acts:
            goal = sample(TRIPLET_COMPONENTS[tid][2], stage, rngs["right"])
            _do_action(right, tid, goal, _dwell(rngs["right"], fps, skill, tempo), world, wander(right))
    right.withdraw()
    frames = len(right.builder) + int(0.5 * fps)
    bounds = [starts[p] for p in order] + [frames]

    # assisting hand fills each phase; the third port helps now and then
    left, assist = slots["left"], slots["assist"]
    for k, p in enumerate(order):
        end, stage = bounds[k + 1], int(p >= 4)
        if LEFT_ACTIONS[p]:
            while len(left.builder) < end - fps:
                tid = _pick(rngs["left"], LEFT_ACTIONS[p], 1)[0]
                goal = sample(TRIPLET_COMPONENTS[tid][2], stage, rngs["left"])
                _do_action(left, tid, goal, _dwell(rngs["left"], fps, skill, tempo) * 2, world, wander(left))
        else:
            left.withdraw()
        left.builder.pad_to(end)
        a_tid = None
        if p == 5 and rngs["assist"].random() < 0.6:
            a_tid = triplet("irrigator", "aspirate", "fluid")
        elif p in (1, 3) and rngs["assist"].random() < 0.3:
            a_tid = triplet("grasper", "retract", "liver")
        assist.builder.pad_to(bounds[k])
        if a_tid is not None:
            goal = sample(TRIPLET_COMPONENTS[a_tid][2], stage, rngs["assist"])
            dwell = max(int(0.5 * (bounds[k + 1] - bounds[k])), 1)
            _do_action(assist, a_tid, goal, dwell, world, (None, 0.0))
            assist.withdraw()

    tracks = []
    depth = r_cam.permutation(3)
    for k, slot in enumerate(slots.values()):
        pos, jaw, tag = slot.builder.finish(frames)
        tracks.append(
            SlotTrack(
                slot.name,
                slot.port,
                int(depth[k]),
                _cls_array(slot.changes, frames),
                pos,
                jaw,
                _planned_array(tag),
                slot.builder.stats,
            )
        )
    phase = np.zeros(frames, np.int8)
    for k, p in enumerate(order):
        phase[bounds[k] : bounds[k + 1]] = p
    return _finish_lap(
        index,
        name,
        surgeon,
        skill,
        scene,
        order,
        phase,
        tracks,
        fps,
        width,
        height,
        world,
        r_cam,
        r_cvs,
        r_score,
    )


def _camera(rng: np.random.Generator, right_tip: np.ndarray, world: int, fps: float) -> np.ndarray:
    n = len(right_tip)
    centre = np.array([0.47, 0.5]) * world
    follow = np.stack(
        [
            np.convolve(
                np.pad(right_tip[:, k], (int(fps), int(fps)), mode="edge"),
                np.ones(2 * int(fps) + 1) / (2 * int(fps) + 1),
                mode="valid",
            )
            for k in range(2)
        ],
        1,
    )
    off = 0.5 * (follow - centre)
    norm = np.linalg.norm(off, axis=1, keepdims=True)
    off = off * np.minimum(1.0, 0.12 * world / np.maximum(norm, 1e-6))
    drift = 0.03 * world * np.stack([_smooth(rng, n, 3 * fps), _smooth(rng, n, 3 * fps)], 1)
    shake = np.zeros((n, 2))
    for start in np.nonzero(rng.random(n) < 1.0 / (12 * fps))[0]:
        d = rng.normal(0, 1, 2)
        d *= 0.035 * world / max(float(np.linalg.norm(d)), 1e-6)
        up, down = max(2, int(0.2 * fps)), max(2, int(0.6 * fps))
        prof = np.concatenate([np.linspace(0, 1, up), np.linspace(1, 0, down)])
        seg = shake[start : start + len(prof)]
        seg += np.outer(prof[: len(seg)], d)
    c = centre + off + drift + shake
    zoom = 1.1 + 0.15 * np.tanh(_smooth(rng, n, 4 * fps))
    return np.column_stack([c, zoom]).astype(np.float32)


def _cvs(
    rng: np.random.Generator, phase: np.ndarray, skill: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CVS state per frame: (visible exposure (T, 3), annotator mean (T, 3), fat level 0..3 (T, 3),
    votes (T, 3 criteria, 3 annotators)).

    Each region is exposed along a ramp during Calot dissection; the rendered fat level is the
    exposure quantised to 4 levels, and annotator j votes 1 if ``visible + bias_j > 0.6``.
    """
    n = len(phase)
    idx = np.nonzero(phase == 1)[0]
    a, b = (int(idx[0]), int(idx[-1]) + 1) if len(idx) else (n, n)
    t = np.arange(n)
    exposure = np.zeros((n, 3))
    for k in range(3):
        top = 1.0 if rng.random() < 0.45 + 0.55 * skill else rng.uniform(0.25, 0.5)
        t0 = a + (b - a) * rng.uniform(0.15, 0.7)
        ramp = max(1.0, 0.25 * (b - a))
        exposure[:, k] = top * np.clip((t - t0) / ramp, 0, 1)
    fat = np.rint(MAX_FAT * (1 - exposure)).astype(np.int8)
    visible = 1 - fat / MAX_FAT
    bias = rng.uniform(-0.2, 0.2, 3)
    votes = (visible[:, :, None] + bias[None, None, :]) > 0.6
    return visible.astype(np.float32), votes.mean(2).astype(np.float32), fat, votes.astype(np.uint8)


def _finish_lap(
    index, name, surgeon, skill, scene, order, phase, tracks, fps, width, height, world, r_cam, r_cvs, r_score
) -> VideoPlan:
    n = len(phase)
    right = tracks[1]
    camera = _camera(r_cam, right.tip.astype(np.float64), world, fps)
    affines = np.stack([camera_affine(c, width, height, world, LAP_VIEW) for c in camera])
    stage = (np.isin(phase, (4, 5, 6))).astype(np.int8)
    in_view = np.zeros((n, len(tracks)), bool)
    active = np.zeros((n, len(tracks)), bool)
    for k, tr in enumerate(tracks):
        scr = to_screen(affines, tr.tip.astype(np.float64))
        in_view[:, k] = view_test(scr, width, height, True) & (tr.cls >= 0)
        ix = np.clip(np.rint(tr.tip).astype(int), 0, world - 1)
        lab = np.where(stage == 1, scene.labels[1][ix[:, 1], ix[:, 0]], scene.labels[0][ix[:, 1], ix[:, 0]])
        target = np.array([TRIPLET_COMPONENTS[t][2] if t >= 0 else -2 for t in tr.planned])
        inst = np.array([TRIPLET_COMPONENTS[t][0] if t >= 0 else -2 for t in tr.planned])
        active[:, k] = (tr.planned >= 0) & (lab == target + 1) & in_view[:, k] & (inst == tr.cls)
    # smoke from energy devices acting, with a per-video intensity
    smoking = np.zeros(n)
    for k, tr in enumerate(tracks):
        verb = np.array([TRIPLET_COMPONENTS[t][1] if t >= 0 else -1 for t in tr.planned])
        smoking += active[:, k] & np.isin(verb, list(SMOKE_VERBS)) & np.isin(tr.cls, list(SMOKE_INSTRUMENTS))
    decay, gain_in = 0.94 ** (25.0 / fps), 0.05 * 25.0 / fps
    smoke = np.zeros(n, np.float32)
    level, intensity = 0.0, r_cam.uniform(0.4, 1.0)
    for t in range(n):
        level = min(1.0, level * decay + gain_in * min(smoking[t], 1.0))
        smoke[t] = 0.75 * intensity * level
    # camera blur from screen-space camera speed
    scale = width * camera[:, 2] / (LAP_VIEW * world)
    vel = np.vstack([[0, 0], np.diff(camera[:, :2], axis=0)]) * scale[:, None]
    speed = np.linalg.norm(vel, axis=1)
    blur = np.column_stack(
        [np.where(speed > 1.5, np.minimum(speed, 12.0), 0.0), np.arctan2(vel[:, 1], vel[:, 0])]
    )
    gain = r_cam.uniform(0.85, 1.1) * (
        1 + 0.03 * np.sin(2 * np.pi * np.arange(n) / (7 * fps) + r_cam.uniform(0, 6))
    )
    exposure, cvs, fat, votes = _cvs(r_cvs, phase, skill)
    # clips appear once a clip action that touched its target has ended
    clips = np.zeros(n, np.int32)
    planned = right.planned
    is_clip = np.array([t >= 0 and TRIPLET_COMPONENTS[t][1] == CLIP_VERB for t in planned])
    runs = np.flatnonzero(np.diff(np.concatenate([[0], is_clip.astype(int), [0]])))
    for s, e in zip(runs[::2], runs[1::2], strict=False):
        if active[s:e, 1].any():
            clips[e:] += 1
    clips = np.minimum(clips, len(scene.clip_points))
    keys, key_index, lookup = [], np.zeros(n, np.int16), {}
    for t in range(n):
        key = CanvasKey(int(stage[t]), tuple(int(v) for v in fat[t]), int(clips[t]))
        if key not in lookup:
            lookup[key] = len(keys)
            keys.append(key)
        key_index[t] = lookup[key]
    out_view = float(np.mean([(~in_view[:, k] & (tr.cls >= 0)).mean() for k, tr in enumerate(tracks)]))
    goals = tracks[1].stats.moves
    metrics = measure(
        [t.tip for t in tracks],
        [t.cls >= 0 for t in tracks],
        fps,
        world,
        goals,
        [t.stats for t in tracks],
        out_view,
        tracks[1].planned >= 0,
        "lap",
    )
    events = [
        {"frame": int(f), "slot": tr.name, "type": "slip"}
        for tr in tracks
        for f in tr.stats.error_frames
        if f < n
    ]
    return VideoPlan(
        kind="lap",
        name=name,
        index=index,
        fps=fps,
        width=width,
        height=height,
        world_size=world,
        view_fraction=LAP_VIEW,
        circular=True,
        surgeon=surgeon,
        trial_skill=skill,
        task=None,
        trial=None,
        scene=scene,
        phase=phase,
        phase_order=tuple(order),
        gestures=[],
        camera=camera,
        smoke=smoke,
        blur=blur.astype(np.float32),
        gain=gain.astype(np.float32),
        keys=keys,
        key_index=key_index,
        stage=stage,
        exposure=exposure,
        cvs=cvs,
        cvs_votes=votes,
        slots=tracks,
        active=active,
        in_view=in_view,
        metrics=metrics,
        scores=score(metrics, r_score),
        events=sorted(events, key=lambda e: e["frame"]),
    )
