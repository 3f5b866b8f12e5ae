"""Planning a JIGSAWS-like bench-top trial: gestures, two needle drivers, a near-static camera.

The camera is placed anew for every trial (offset and zoom, as when the endoscope is re-positioned
between sessions), drifts slightly, and is re-positioned a few times during the trial (smooth pan +
zoom moves of 1-2.5 s, independent of skill; ``camera_move`` events): optical flow is then dominated
by the camera and frames blur. With the per-trial lighting and pad texture this varies the RGB
appearance independently of skill, while the instruments' motion and the damage they leave on the pad
carry the skill (:class:`~surgkit.synth.skill.SkillProfile`).

With ``seconds`` a trial is a fixed-length recording of a suturing drill: the surgeon works through
the stitches until the time is up, so the video length does not depend on skill (experts get further
in the same time); without it the trial ends when its stitches are done.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from surgkit.synth.anatomy import CanvasKey, build_bench_scene
from surgkit.synth.motion import MotionStyle, TrackBuilder, min_jerk
from surgkit.synth.plan import (
    BENCH_VIEW,
    GRASPER,
    SlotTrack,
    VideoPlan,
    _cls_array,
    _smooth,
    camera_affine,
    camera_crop,
    to_screen,
    view_test,
)
from surgkit.synth.skill import BenchMetrics, SkillProfile, Surgeon, measure, score
from surgkit.synth.workflow import gesture_sequence

CAMERA_MOVE_EVERY_S = 15.0  # mean time between camera re-positionings
PULLS = ("pull",)  # action patterns that strain the tissue (a rough hand may tear it)


def _gesture_goals(g: str, k: int, scene, world: int, rng: np.random.Generator) -> dict[str, tuple]:
    """Where each hand goes in gesture ``g`` of stitch ``k``: {hand: (goal, pattern, amplitude)}."""
    c = world / 2
    marks = scene.marks[min(k, len(scene.marks) - 1)]
    j = lambda: rng.normal(0, 0.01 * world, 2)  # noqa: E731
    w = world
    table = {
        "G1": {"right": ((c + 0.12 * w, c + 0.16 * w), "close", 0)},
        "G5": {"right": ((c + 0.05 * w, c - 0.02 * w), "static", 0)},
        "G8": {"left": ((c - 0.03 * w, c - 0.02 * w), "close", 0), "right": (None, "stroke", 0.004)},
        "G2": {"right": (tuple(marks[1]), "static", 0)},
        "G3": {"right": (tuple(marks[0]), "stroke", 0.005)},
        "G6": {"left": ((marks[0][0] - 0.12 * w, marks[0][1] - 0.04 * w), "pull", 0.03)},
        "G4": {"left": ((c - 0.02 * w, c), "close", 0), "right": ((c + 0.02 * w, c), "close", 0)},
        "G9": {"right": ((marks[1][0] + 0.08 * w, marks[1][1]), "pull", 0.02)},
        "G10": {"left": ((c - 0.1 * w, c - 0.1 * w), "pull", 0.02)},
        "G11": {
            "left": ((c - 0.22 * w, c + 0.12 * w), "static", 0),
            "right": ((c + 0.22 * w, c + 0.12 * w), "static", 0),
        },
        "G12": {"left": ((c, c + 0.03 * w * (k % 2)), "close", 0)},
        "G13": {
            "left": ((c + 0.06 * w, c - 0.04 * w), "stroke", 0.02),
            "right": ((c + 0.04 * w, c), "static", 0),
        },
        "G14": {"right": ((c + 0.1 * w, c + 0.08 * w), "close", 0)},
        "G15": {"left": ((c - 0.15 * w, c), "pull", 0.02), "right": ((c + 0.15 * w, c), "pull", 0.02)},
    }
    out = {}
    for hand, (goal, pattern, amp) in table[g].items():
        out[hand] = (None if goal is None else np.asarray(goal, np.float64) + j(), pattern, amp * w)
    return out


def plan_bench_trial(
    index: int,
    task: str,
    surgeon: Surgeon,
    trial: int,
    repeats: int,
    rng: np.random.Generator,
    width: int,
    height: int,
    fps: float = 30.0,
    tempo: float = 1.0,
    pace: float = 1.0,
    seconds: float | None = None,
    profile: SkillProfile | None = None,
) -> VideoPlan:
    """Plan one JIGSAWS trial ``<task>_<U><NNN>`` (trial = super-trial number 1..9).

    ``repeats``: stitches (knots) on the pad; ``seconds``: fixed recording length (None: until the
    stitches are done); ``profile``: the surgeon's skill components (default: all = ``surgeon.skill``).
    """
    r_scene, r_work, r_score = rng.spawn(3)
    world = 2 * max(width, height)
    scene = build_bench_scene(r_scene, world, task, stitches=max(repeats, 2))
    prof = (profile or SkillProfile.uniform(surgeon.skill)).trial(r_work)
    style = MotionStyle.from_profile(prof, world)
    budget = None if seconds is None else max(int(round(seconds * fps)), 2)
    c = world / 2
    ports = {"left": np.array([0.1, 1.1]) * world, "right": np.array([0.9, 1.1]) * world}
    rests = {
        "left": np.array([c - 0.22 * world, c + 0.12 * world]),
        "right": np.array([c + 0.22 * world, c + 0.12 * world]),
    }
    r_l, r_r = r_work.spawn(2)
    hands = {
        "left": TrackBuilder(rests["left"], style, r_l, fps, pace),
        "right": TrackBuilder(rests["right"], style, r_r, fps, pace),
    }
    centre = np.array([c, c])
    lead = int(r_work.integers(int(0.5 * fps), int(1.5 * fps)))
    for b in hands.values():
        b.hold(lead)
    gestures: list[tuple[int, int, str]] = []
    tears: list[tuple[int, str]] = []
    p_tear = 0.9 * (1.0 - prof.handling) ** 1.2
    for g, k in gesture_sequence(task, r_work, repeats):
        start = len(hands["left"])
        if budget is not None and start >= budget:
            break
        for hand, (goal, pattern, amp) in _gesture_goals(g, k, scene, world, r_work).items():
            b = hands[hand]
            if goal is not None:
                d = b.here - centre
                b.move_to(goal, d / max(float(np.linalg.norm(d)), 1e-6), 0.7 * BENCH_VIEW * world)
            direction = b.here - centre
            direction = direction / max(float(np.linalg.norm(direction)), 1e-6)
            if pattern == "close":
                b._jaw = 0.9
            dwell = max(2, int(fps * tempo * r_work.uniform(0.5, 1.3) * (1 + 0.6 * (1 - prof.economy))))
            b.act(dwell, 0, pattern, direction, amp)
            if pattern in PULLS and r_work.random() < p_tear:
                tears.append((len(b) - 1, hand))
        end = max(len(b) for b in hands.values())
        for b in hands.values():
            b.pad_to(end)
        gestures.append((start, end - 1, g))
    if budget is None:
        frames = len(hands["left"]) + int(r_work.integers(int(0.3 * fps), int(1.0 * fps)))
    else:
        frames = budget
        gestures = [(a, min(e, frames - 1), g) for a, e, g in gestures if a < frames]
    tracks, acting = [], np.zeros(frames, bool)
    for depth, (name, b) in enumerate(hands.items()):
        pos, jaw, tag = b.finish(frames)
        acting |= tag >= 0
        tracks.append(
            SlotTrack(
                name,
                ports[name],
                depth,
                _cls_array([(0, GRASPER)], frames),
                pos,
                jaw,
                np.full(frames, -1, np.int16),
                b.stats,
            )
        )
    suture = _suture(task, gestures, scene, world, frames)
    camera, moves = _bench_camera(r_scene, frames, world, fps)
    aff = np.stack([camera_affine(cam, width, height, world, BENCH_VIEW) for cam in camera])
    in_view = np.stack(
        [view_test(to_screen(aff, t.tip.astype(np.float64)), width, height, False) for t in tracks], 1
    )
    out_view = float((~in_view).mean())
    slips = [(f, t.name) for t in tracks for f in t.stats.error_frames if f < frames]
    damage = sorted([(f, h, "slip") for f, h in slips] + [(f, h, "tear") for f, h in tears if f < frames])
    slot_of = {t.name: k for k, t in enumerate(tracks)}
    stains = np.array(
        [[f, *tracks[slot_of[h]].tip[f], r_scene.uniform(0.04, 0.06) * world] for f, h, _ in damage],
        np.float32,
    ).reshape(-1, 4)
    scene = dataclasses.replace(scene, stains=stains)
    key_index = np.searchsorted(stains[:, 0], np.arange(frames), side="right").astype(np.int16)
    metrics = measure(
        [t.tip for t in tracks],
        [t.cls >= 0 for t in tracks],
        fps,
        world,
        len(gestures),
        [t.stats for t in tracks],
        out_view,
        acting,
        "bench",
    )
    metrics = BenchMetrics(
        **{**dataclasses.asdict(metrics), "kind": "bench"},
        damage_per_minute=len(damage) / (frames / fps / 60.0),
        damage=len(damage),
    )
    letter = surgeon.name
    events = [{"frame": int(f), "slot": h, "type": kind} for f, h, kind in damage]
    events += [{"frame": int(a), "end": int(e), "type": "camera_move"} for a, e in moves]
    gain = (r_work.uniform(0.95, 1.05) * (1 + 0.02 * np.sin(np.arange(frames) / (3 * fps)))).astype(
        np.float32
    )
    return VideoPlan(
        kind="bench",
        name=f"{task}_{letter}{trial:03d}",
        index=index,
        fps=fps,
        width=width,
        height=height,
        world_size=world,
        view_fraction=BENCH_VIEW,
        circular=False,
        surgeon=surgeon,
        trial_skill=prof.mean,
        task=task,
        trial=trial,
        scene=scene,
        phase=np.full(frames, -1, np.int8),
        phase_order=(),
        gestures=gestures,
        camera=camera,
        smoke=np.zeros(frames, np.float32),
        blur=_camera_blur(camera, width, height, world),
        gain=gain,
        keys=[CanvasKey(n, (0, 0, 0), 0) for n in range(len(stains) + 1)],
        key_index=key_index,
        stage=np.zeros(frames, np.int8),
        exposure=np.zeros((frames, 3), np.float32),
        cvs=np.zeros((frames, 3), np.float32),
        slots=tracks,
        active=np.zeros((frames, 2), bool),
        in_view=in_view,
        metrics=metrics,
        scores=score(metrics, r_score),
        events=sorted(events, key=lambda e: (e["frame"], e["type"])),
        suture=suture,
    )


def _bench_camera(
    rng: np.random.Generator, frames: int, world: int, fps: float
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(T, 3) camera and its re-positioning moves [(start, end inclusive)]: per-trial placement (offset
    <= 3 % of the world, zoom 0.95..1.05), slow drift, and moves every ~CAMERA_MOVE_EVERY_S seconds, each a
    minimum-jerk pan (<= 7 % of the world) and zoom (x 0.88..1.14) over 1-2.5 s after which the camera stays."""
    c = world / 2 + rng.uniform(-0.03, 0.03, 2) * world
    drift = np.stack([_smooth(rng, frames, 4 * fps), _smooth(rng, frames, 4 * fps)], 1) * 0.006 * world
    centre = np.tile(c, (frames, 1))
    zoom = np.full(frames, rng.uniform(0.95, 1.05))
    moves: list[tuple[int, int]] = []
    count = int(rng.poisson(frames / fps / CAMERA_MOVE_EVERY_S))
    for start in np.sort(rng.integers(0, max(1, frames - int(fps)), count)):
        n = int(rng.uniform(1.0, 2.5) * fps)
        pan = rng.uniform(-0.07, 0.07, 2) * world
        factor = rng.uniform(0.88, 1.14)
        if (moves and start <= moves[-1][1] + fps // 2) or n < 2:
            continue  # no overlapping moves
        end = min(frames, int(start) + n)
        target = np.clip(centre[start] + pan, 0.38 * world, 0.62 * world)
        path = min_jerk(
            np.append(centre[start], zoom[start]),
            np.append(target, np.clip(zoom[start] * factor, 0.85, 1.2)),
            n,
        )
        centre[start:end], zoom[start:end] = path[: end - start, :2], path[: end - start, 2]
        centre[end:], zoom[end:] = path[-1, :2], path[-1, 2]
        moves.append((int(start), end - 1))
    return np.hstack([centre + drift, zoom[:, None]]).astype(np.float32), moves


def _camera_blur(camera: np.ndarray, width: int, height: int, world: int) -> np.ndarray:
    """(T, 2) motion blur (length px, angle rad) from the camera's screen-space velocity; below 2 px it is
    not applied by the renderer, so only camera moves blur."""
    crops = np.array([camera_crop(c, width, height, world, BENCH_VIEW) for c in camera], np.float64)
    v = np.diff(camera[:, :2].astype(np.float64), axis=0, prepend=camera[:1, :2]) * (width / crops[:, 2:3])
    speed = np.linalg.norm(v, axis=1)
    return np.stack([np.minimum(0.8 * speed, 9.0), np.arctan2(v[:, 1], v[:, 0])], 1).astype(np.float32)


def _suture(task: str, gestures: list[tuple[int, int, str]], scene, world: int, frames: int) -> dict:
    """Needle and thread state per frame, from the gestures.

    ``holder``: -1 needle lying on the pad, 0 held by the left tool, 1 by the right tool (no needle
    in Knot_Tying: -2). ``stitches``: how many stitches the thread has passed through. The needle is
    picked up at the end of G1/G12, pulled through by the left hand in G6, handed back in G4 and
    dropped at G11.
    """
    c = world / 2
    holder = np.full(frames, -1 if task != "Knot_Tying" else -2, np.int8)
    stitches = np.zeros(frames, np.int16)
    if task != "Knot_Tying":
        for start, end, g in gestures:
            if g == "G1":
                holder[end:] = 1
            elif g == "G6":
                holder[start:] = 0
            elif g == "G4":
                holder[(start + end) // 2 :] = 1
            elif g == "G11":
                holder[start:] = -1
            if g == "G3":
                stitches[end:] += 1
    points = [pt for left, right in scene.marks for pt in (right, left)]
    return {
        "holder": holder,
        "stitches": stitches,
        "rest": np.array([c + 0.12 * world, c + 0.16 * world]),
        "anchor": np.array([c + 0.05 * world, c - 0.3 * world]),
        "points": np.asarray(points, np.float64),
    }
