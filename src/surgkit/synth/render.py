"""Rendering frames and their exact ground truth from a :class:`~surgkit.synth.plan.VideoPlan`.

Per frame: warp the world canvas of the frame's state with the camera (``cv2.warpAffine``), draw
the inserted instruments far-to-near (so nearer ones occlude), then apply smoke, camera motion
blur, lighting gain and the endoscope vignette. Smoke, blur and lighting change the RGB image
but not the masks: the masks are the drawn instrument pixels inside the field of view.

Box convention: ``(x1, y1, x2, y2)`` in pixels with exclusive ``x2, y2``: a mask pixel (x, y)
satisfies ``x1 <= x < x2`` and ``y1 <= y < y2``; ``w = x2 - x1``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import cv2
import numpy as np

from surgkit.synth.instruments import SHAFT_WIDTH, draw_prims, instrument_prims
from surgkit.synth.plan import VideoPlan
from surgkit.synth.texture import smoke_texture, vignette
from surgkit.vocab import INSTRUMENTS, NULL_TRIPLETS, TRIPLET_COMPONENTS, VERBS

CLIPPER = INSTRUMENTS.index("clipper")
CLIP = VERBS.index("clip")


@dataclasses.dataclass
class InstrumentTruth:
    """One visible instrument in a frame."""

    slot: int  # instance id = slot + 1 in the instance mask
    cls: int  # CholecT50 instrument id
    box: tuple[int, int, int, int]  # x1, y1, x2 (exclusive), y2 (exclusive)
    area: int
    tip: tuple[float, float]  # tip in screen px (may lie outside the frame)
    tip_in_view: bool
    triplet: int  # the triplet it performs, or its null triplet (94 + cls)
    acting: bool


class FrameTruth:
    """Exact ground truth of one frame.

    ``class_mask`` and ``anatomy_mask`` are computed on first use (the writers read them at 1 fps,
    so most frames never need them); ``class_mask`` or ``anatomy_mask`` may be given as arrays or
    as zero-argument functions returning them.
    """

    def __init__(
        self,
        index: int,
        phase: int,  # Cholec80 phase id, -1 for bench trials
        gesture: str | None,  # JIGSAWS gesture, bench trials only
        instruments: list[InstrumentTruth],
        instance_mask: np.ndarray,  # uint8 HxW, 0 background, slot + 1
        class_mask: np.ndarray | Callable[[], np.ndarray],  # uint8 HxW, 0 background, instrument id + 1
        anatomy_mask: np.ndarray
        | Callable[[], np.ndarray],  # target id + 1 (lap) / BENCH_LABELS index; 0 outside
        cvs: np.ndarray,  # (3,) mean of 3 annotators
        smoke: float,
    ):
        self.index, self.phase, self.gesture, self.instruments = index, phase, gesture, instruments
        self.instance_mask, self.cvs, self.smoke = instance_mask, cvs, smoke
        self._class_mask, self._anatomy_mask = class_mask, anatomy_mask

    @property
    def class_mask(self) -> np.ndarray:
        if callable(self._class_mask):
            self._class_mask = self._class_mask()
        return self._class_mask

    @property
    def anatomy_mask(self) -> np.ndarray:
        if callable(self._anatomy_mask):
            self._anatomy_mask = self._anatomy_mask()
        return self._anatomy_mask

    @property
    def triplets(self) -> list[int]:
        """Sorted unique triplet ids of the frame (null triplets for idle visible instruments)."""
        return sorted({i.triplet for i in self.instruments})

    @property
    def tools(self) -> set[int]:
        return {i.cls for i in self.instruments}


class Renderer:
    """Frames of one plan, lazily: ``for frame, truth in Renderer(plan): ...``.

    Memory is a few canvases and frame-sized buffers, independent of the video length.
    ``truth=False`` skips masks and boxes for speed (the frame is identical).
    """

    def __init__(self, plan: VideoPlan, truth: bool = True):
        self.plan, self.truth = plan, truth
        w, h = plan.width, plan.height
        gain, inside = vignette(w, h, plan.circular)
        self.vignette = np.repeat(np.round(gain * 230)[..., None], 3, axis=2).astype(np.uint8)
        self.outside = ~inside
        rng = np.random.default_rng([plan.index, 7])
        tex = smoke_texture(rng, (2 * h, 2 * w))
        self.smoke_alpha = np.repeat(np.round(tex * 255)[..., None], 3, axis=2).astype(np.uint8)
        self.smoke_rgb = (
            self.smoke_alpha.astype(np.float32) / 255 * np.array([205, 195, 190], np.float32)
        ).astype(np.uint8)
        self.order = sorted(range(len(plan.slots)), key=lambda k: plan.slots[k].depth)
        self._kernels: dict[tuple[int, int], np.ndarray] = {}
        self._labels = None if truth is False else [plan.scene.label_map(s) for s in (0, 1)]

    def __len__(self) -> int:
        return self.plan.frames

    def __iter__(self) -> Iterator[tuple[np.ndarray, FrameTruth | None]]:
        for t in range(self.plan.frames):
            yield self.render(t)

    def _blur_kernel(self, length: float, angle: float) -> np.ndarray:
        key = (int(round(length)), int(round(np.degrees(angle) / 15.0)) % 12)
        if key not in self._kernels:
            n = key[0] | 1
            k = np.zeros((n, n), np.float32)
            a = np.radians(key[1] * 15.0)
            c = (n - 1) / 2
            d = np.array([np.cos(a), np.sin(a)]) * c
            cv2.line(
                k,
                (int(round(c - d[0])), int(round(c - d[1]))),
                (int(round(c + d[0])), int(round(c + d[1]))),
                1.0,
                1,
            )
            self._kernels[key] = k / k.sum()
        return self._kernels[key]

    def render(self, t: int) -> tuple[np.ndarray, FrameTruth | None]:
        """Frame ``t`` as (uint8 HxWx3 RGB, FrameTruth or None)."""
        p = self.plan
        w, h = p.width, p.height
        m = p.affine(t)
        x0, y0, cw, ch = p.crop(t)
        canvas = p.scene.canvas(p.keys[int(p.key_index[t])])
        frame = cv2.resize(canvas[y0 : y0 + ch, x0 : x0 + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        inst = np.zeros((h, w), np.uint8) if self.truth else None
        scale = float(np.hypot(m[0, 0], m[0, 1]))
        if p.suture is not None:
            self._draw_suture(frame, t, m, scale)
        tips = {}
        for k in self.order:
            s = p.slots[k]
            cls = int(s.cls[t])
            if cls < 0:
                continue
            tip = m[:, :2] @ s.tip[t].astype(np.float64) + m[:, 2]
            port = m[:, :2] @ s.port + m[:, 2]
            tips[k] = tip
            loaded = cls == CLIPPER and s.jaw[t] > 0.3
            width = SHAFT_WIDTH * p.world_size * scale * (0.9 + 0.08 * s.depth)
            prims = instrument_prims(cls, tip, port, float(s.jaw[t]), width, 0.85 + 0.1 * s.depth, loaded)
            # the class mask is not drawn: it is class[slot] of the instance mask (same prims, same order)
            draw_prims(frame, [] if inst is None else [(inst, k + 1)], prims)
        out = self._post(frame, t)
        if not self.truth:
            return out, None
        return out, self._truth(t, inst, tips, m)

    def _draw_suture(self, frame: np.ndarray, t: int, m: np.ndarray, scale: float) -> None:
        """Needle (a half-circle) and thread, drawn under the instruments and not part of their masks."""
        p, su = self.plan, self.plan.suture
        holder = int(su["holder"][t])
        if holder >= 0:
            slot = p.slots[holder]
            tip = slot.tip[t].astype(np.float64)
            shaft = tip - slot.port
            ang = float(np.degrees(np.arctan2(shaft[1], shaft[0]))) + 90.0
        else:
            tip, ang = su["rest"], 20.0
        radius = max(2, int(round(0.018 * p.world_size * scale)))
        centre = m[:, :2] @ tip + m[:, 2]
        c = (int(round(centre[0])), int(round(centre[1])))
        points = [su["anchor"], *su["points"][: 2 * int(su["stitches"][t])]]
        tail = centre + radius * np.array([np.cos(np.radians(ang)), np.sin(np.radians(ang))])
        screen = [m[:, :2] @ q + m[:, 2] for q in points] + [tail]
        cv2.polylines(frame, [np.round(screen).astype(np.int32)], False, (70, 40, 110), 1, cv2.LINE_AA)
        if holder > -2:
            cv2.ellipse(
                frame, c, (radius, radius), ang, 0, 180, (215, 215, 225), max(1, radius // 4), cv2.LINE_AA
            )

    def _post(self, frame: np.ndarray, t: int) -> np.ndarray:
        p = self.plan
        length = float(p.blur[t, 0])
        if length >= 2.0:
            frame = cv2.filter2D(frame, -1, self._blur_kernel(length, float(p.blur[t, 1])))
        smoke = float(p.smoke[t])
        if smoke > 0.01:
            h, w = frame.shape[:2]
            oy, ox = int(t * 0.6) % h, int(t * 1.1) % w
            alpha = self.smoke_alpha[oy : oy + h, ox : ox + w]
            # frame * (1 - s a) + s a * colour, in uint8 arithmetic
            frame = cv2.subtract(frame, cv2.multiply(frame, alpha, scale=smoke / 255.0))
            frame = cv2.scaleAdd(self.smoke_rgb[oy : oy + h, ox : ox + w], smoke, frame)
        return cv2.multiply(frame, self.vignette, scale=float(p.gain[t]) / 230.0)

    def _truth(self, t: int, inst: np.ndarray, tips: dict, m: np.ndarray) -> FrameTruth:
        p = self.plan
        inst[self.outside] = 0
        stage = int(p.stage[t])
        crop = p.crop(t)
        lut = np.zeros(256, np.uint8)  # instance value (slot + 1) -> class id + 1
        for k in tips:
            lut[k + 1] = int(p.slots[k].cls[t]) + 1
        instruments = []
        for k, tip in sorted(tips.items()):
            x, y, bw, bh = cv2.boundingRect((inst == k + 1).view(np.uint8))
            if bw == 0:
                continue
            cls = int(p.slots[k].cls[t])
            acting = bool(p.active[t, k])
            trip = int(p.slots[k].planned[t]) if acting else NULL_TRIPLETS[cls]
            assert trip < 0 or TRIPLET_COMPONENTS[trip][0] == cls
            area = int(np.count_nonzero(inst[y : y + bh, x : x + bw] == k + 1))
            instruments.append(
                InstrumentTruth(
                    k,
                    cls,
                    (x, y, x + bw, y + bh),
                    area,
                    (float(tip[0]), float(tip[1])),
                    bool(p.in_view[t, k]),
                    trip,
                    acting,
                )
            )
        gesture = None
        for start, end, g in p.gestures:
            if start <= t <= end:
                gesture = g
                break
        return FrameTruth(
            t,
            int(p.phase[t]),
            gesture,
            instruments,
            inst,
            lambda: lut[inst],
            lambda: self._anatomy(stage, crop),
            p.cvs[t].copy(),
            float(p.smoke[t]),
        )

    def _anatomy(self, stage: int, crop: tuple[int, int, int, int]) -> np.ndarray:
        """Anatomy labels of the view (nearest neighbour, 0 outside the field of view)."""
        p = self.plan
        x0, y0, cw, ch = crop
        anat = cv2.resize(
            self._labels[stage][y0 : y0 + ch, x0 : x0 + cw],
            (p.width, p.height),
            interpolation=cv2.INTER_NEAREST_EXACT,
        )
        anat[self.outside] = 0
        return anat
