"""Planning a JIGSAWS-like bench-top trial: gestures, two needle drivers, a near-static camera.

The camera is placed anew for every trial (offset and zoom, as when the endoscope is re-positioned
between sessions) and drifts slightly within it; with the per-trial lighting and pad texture this
varies the RGB appearance independently of skill, while the instruments' motion carries the skill.
"""

from __future__ import annotations

import numpy as np

from surgkit.synth.anatomy import CanvasKey, build_bench_scene
from surgkit.synth.motion import MotionStyle, TrackBuilder
from surgkit.synth.plan import (
    BENCH_VIEW,
    GRASPER,
    SlotTrack,
    VideoPlan,
    _cls_array,
    _smooth,
    camera_affine,
    to_screen,
    view_test,
)
from surgkit.synth.skill import TRIAL_SD, Surgeon, measure, score
from surgkit.synth.workflow import gesture_sequence


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
) -> VideoPlan:
    """Plan one JIGSAWS trial ``<task>_<U><NNN>`` (trial = super-trial number 1..5)."""
    r_scene, r_work, r_score = rng.spawn(3)
    world = 2 * max(width, height)
    scene = build_bench_scene(r_scene, world, task, stitches=max(repeats, 2))
    skill = float(np.clip(surgeon.skill + r_work.normal(0, TRIAL_SD), 0, 1))
    style = MotionStyle.from_skill(skill, world)
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
    for g, k in gesture_sequence(task, r_work, repeats):
        start = len(hands["left"])
        for hand, (goal, pattern, amp) in _gesture_goals(g, k, scene, world, r_work).items():
            b = hands[hand]
            if goal is not None:
                d = b.here - centre
                b.move_to(goal, d / max(float(np.linalg.norm(d)), 1e-6), 0.5 * BENCH_VIEW * world)
            direction = b.here - centre
            direction = direction / max(float(np.linalg.norm(direction)), 1e-6)
            if pattern == "close":
                b._jaw = 0.9
            dwell = max(2, int(fps * tempo * r_work.uniform(0.5, 1.3) * (1 + 0.6 * (1 - skill))))
            b.act(dwell, 0, pattern, direction, amp)
        end = max(len(b) for b in hands.values())
        for b in hands.values():
            b.pad_to(end)
        gestures.append((start, end - 1, g))
    frames = len(hands["left"]) + int(r_work.integers(int(0.3 * fps), int(1.0 * fps)))
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
    camera = _bench_camera(r_scene, frames, world, fps)
    aff = np.stack([camera_affine(cam, width, height, world, BENCH_VIEW) for cam in camera])
    in_view = np.stack(
        [view_test(to_screen(aff, t.tip.astype(np.float64)), width, height, False) for t in tracks], 1
    )
    out_view = float((~in_view).mean())
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
    letter = surgeon.name
    events = [
        {"frame": int(f), "slot": t.name, "type": "slip"}
        for t in tracks
        for f in t.stats.error_frames
        if f < frames
    ]
    gain = (r_work.uniform(0.9, 1.1) * (1 + 0.02 * np.sin(np.arange(frames) / (3 * fps)))).astype(np.float32)
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
        trial_skill=skill,
        task=task,
        trial=trial,
        scene=scene,
        phase=np.full(frames, -1, np.int8),
        phase_order=(),
        gestures=gestures,
        camera=camera,
        smoke=np.zeros(frames, np.float32),
        blur=np.zeros((frames, 2), np.float32),
        gain=gain,
        keys=[CanvasKey(0, (0, 0, 0), 0)],
        key_index=np.zeros(frames, np.int16),
        stage=np.zeros(frames, np.int8),
        exposure=np.zeros((frames, 3), np.float32),
        cvs=np.zeros((frames, 3), np.float32),
        slots=tracks,
        active=np.zeros((frames, 2), bool),
        in_view=in_view,
        metrics=metrics,
        scores=score(metrics, r_score),
        events=sorted(events, key=lambda e: e["frame"]),
        suture=suture,
    )


def _bench_camera(rng: np.random.Generator, frames: int, world: int, fps: float) -> np.ndarray:
    """(T, 3) camera: per-trial placement (offset <= 4 % of the world, zoom 0.92..1.08) + slow drift."""
    c = world / 2 + rng.uniform(-0.04, 0.04, 2) * world
    drift = np.stack([_smooth(rng, frames, 4 * fps), _smooth(rng, frames, 4 * fps)], 1) * 0.006 * world
    zoom = np.full((frames, 1), rng.uniform(0.92, 1.08))
    return np.hstack([c + drift, zoom]).astype(np.float32)


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
