"""Skill-driven instrument-tip trajectories.

A surgeon's latent skill ``s`` in [0, 1] sets a :class:`MotionStyle`; a :class:`TrackBuilder`
turns a sequence of goals (move to a point, act there, withdraw) into a per-frame tip path.

How skill shows up (each effect is a published correlate of expertise in the motion-analysis
literature: smoothness/jerk, path length, idle time, tremor, out-of-view time, errors):

* transits follow a minimum-jerk profile ``p0 + (p1 - p0) (10 tau^3 - 15 tau^4 + 6 tau^5)``,
  slower for low skill;
* low skill adds **detours** (an extra via-point, longer path, a velocity zero mid-way),
  **overshoot + corrective sub-movements**, **idle pauses** before moves, **wandering out of the
  view**, **errors** (a slip away from the target followed by a new approach) and physiological
  **tremor** (AR(2) noise resonant at ~6 Hz, RMS amplitude growing as skill falls).

The builder records what it did (:class:`TrackStats`) so the skill scores can be derived from
the motion actually generated rather than from the latent value directly.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class MotionStyle:
    """Motion parameters of one surgeon on one trial (all lengths in world pixels)."""

    skill: float
    speed: float  # transit speed, world px / s
    p_detour: float
    detour_gain: float
    overshoot: float
    tremor_px: float
    p_pause: float
    pause_s: float
    p_wander: float
    error_rate: float  # expected errors per acted goal

    @classmethod
    def from_profile(cls, profile, world_size: int) -> MotionStyle:
        """Motion parameters from a :class:`~surgkit.synth.skill.SkillProfile` (bench trials): economy sets
        speed and detours, smoothness overshoot and tremor, flow pauses and wandering, handling errors.
        The ranges are those of :meth:`from_skill` except tremor (2x), wandering and errors, which are
        stronger so that a camera at the bench-top's distance sees them."""
        ue, us, uf, uh = (1.0 - float(np.clip(v, 0.0, 1.0)) for v in profile.values())
        return cls(
            skill=float(profile.mean),
            speed=world_size * (0.35 + 0.55 * (1 - ue)),
            p_detour=0.75 * ue,
            detour_gain=0.15 + 0.45 * ue,
            overshoot=0.3 * us,
            tremor_px=world_size * (0.0008 + 0.012 * us),
            p_pause=0.7 * uf,
            pause_s=0.3 + 1.8 * uf,
            p_wander=0.6 * uf**1.5,
            error_rate=0.45 * uh**1.5,
        )

    @classmethod
    def from_skill(cls, skill: float, world_size: int) -> MotionStyle:
        """Map latent skill (0 novice .. 1 expert) to motion parameters."""
        u = 1.0 - float(np.clip(skill, 0.0, 1.0))
        return cls(
            skill=float(skill),
            speed=world_size * (0.35 + 0.55 * (1 - u)),
            p_detour=0.75 * u,
            detour_gain=0.15 + 0.45 * u,
            overshoot=0.3 * u,
            tremor_px=world_size * (0.0008 + 0.006 * u),
            p_pause=0.7 * u,
            pause_s=0.3 + 1.8 * u,
            p_wander=0.35 * u**1.5,
            error_rate=0.3 * u**2,
        )


@dataclasses.dataclass
class TrackStats:
    """What the builder did: the raw material of the skill scores."""

    moves: int = 0
    straight: float = 0.0  # sum of straight-line goal-to-goal distances
    detours: int = 0
    corrections: int = 0
    pause_frames: int = 0
    wander_frames: int = 0
    errors: int = 0
    error_frames: list[int] = dataclasses.field(default_factory=list)


def min_jerk(p0: np.ndarray, p1: np.ndarray, n: int) -> np.ndarray:
    """n points (excluding p0, including p1) of the minimum-jerk path from p0 to p1."""
    tau = np.arange(1, n + 1, dtype=np.float64) / n
    s = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    return p0[None, :] + s[:, None] * (p1 - p0)[None, :]


def tremor(rng: np.random.Generator, n: int, fps: float, rms: float, hz: float = 6.0) -> np.ndarray:
    """(n, 2) AR(2) noise resonant at ``hz`` with the given RMS amplitude (physiological tremor)."""
    if n == 0 or rms <= 0:
        return np.zeros((n, 2))
    from scipy.signal import lfilter  # imported here: scipy.signal costs seconds to import

    r, w = 0.9, 2 * np.pi * min(hz, 0.45 * fps) / fps
    e = rng.normal(0, 1, (n + 50, 2))
    x = lfilter([1.0], [1.0, -2 * r * np.cos(w), r * r], e, axis=0)[50:]
    return x * (rms / max(float(np.sqrt((x**2).mean())), 1e-9))


class TrackBuilder:
    """Builds one instrument's tip path frame by frame from goals.

    Each frame stores the tip position, a jaw opening in [0, 1] and the *goal tag* (an int the
    caller uses to label actions; -1 while moving or idle). Tremor is added by :meth:`finish`.
    """

    def __init__(
        self, start: np.ndarray, style: MotionStyle, rng: np.random.Generator, fps: float, pace: float = 1.0
    ):
        self.style, self.rng, self.fps = style, rng, fps
        self.tfps = fps / pace  # frames per second of *planned* time: pace > 1 makes everything quicker
        self.pos: list[np.ndarray] = []
        self.jaw: list[float] = []
        self.tag: list[int] = []
        self.stats = TrackStats()
        self._p = np.asarray(start, np.float64)
        self._jaw = 0.6

    def __len__(self) -> int:
        return len(self.pos)

    @property
    def here(self) -> np.ndarray:
        return self._p.copy()

    def _emit(self, pts: np.ndarray, tag: int = -1, jaw: np.ndarray | float | None = None) -> None:
        jaws = np.broadcast_to(self._jaw if jaw is None else jaw, (len(pts),))
        for p, j in zip(pts, jaws, strict=False):
            self.pos.append(np.asarray(p, np.float64))
            self.jaw.append(float(j))
            self.tag.append(tag)
        if len(pts):
            self._p = np.asarray(pts[-1], np.float64)
            self._jaw = float(jaws[-1])

    def hold(self, frames: int, tag: int = -1, jaw: float | None = None) -> None:
        """Stay still (tremor comes later)."""
        if frames > 0:
            self._emit(np.repeat(self._p[None], frames, 0), tag, jaw)

    def _segment(self, p1: np.ndarray, speed_gain: float = 1.0) -> None:
        d = float(np.linalg.norm(p1 - self._p))
        secs = 0.25 + d / (self.style.speed * speed_gain)
        self._emit(min_jerk(self._p, p1, max(2, int(round(secs * self.tfps)))))

    def move_to(
        self, goal: np.ndarray, wander_dir: np.ndarray | None = None, wander_dist: float = 0.0
    ) -> None:
        """Transit to ``goal`` with the style's pauses, wandering, detours and overshoot."""
        st, rng = self.style, self.rng
        goal = np.asarray(goal, np.float64)
        if rng.random() < st.p_pause:
            n = int(rng.uniform(0.5, 1.0) * st.pause_s * self.tfps)
            self.hold(n)
            self.stats.pause_frames += n
        if wander_dir is not None and wander_dist > 0 and rng.random() < st.p_wander:
            start = len(self)
            self._segment(self._p + wander_dir * wander_dist * rng.uniform(1.0, 1.4))
            self.hold(int(rng.uniform(0.3, 1.2) * self.tfps))
            self.stats.wander_frames += len(self) - start
        d = goal - self._p
        dist = float(np.linalg.norm(d))
        self.stats.moves += 1
        self.stats.straight += dist
        if dist > 1e-6 and rng.random() < st.p_detour:
            normal = np.array([-d[1], d[0]]) / dist
            via = (
                self._p
                + 0.5 * d
                + normal * dist * st.detour_gain * rng.uniform(0.5, 1.0) * rng.choice([-1, 1])
            )
            self._segment(via)
            self.stats.detours += 1
        if dist > 1e-6 and st.overshoot > 0.02:
            over = goal + (goal - self._p) * st.overshoot * rng.uniform(0.5, 1.0)
            self._segment(over, speed_gain=1.2)
            self._segment(goal, speed_gain=0.6)
            self.stats.corrections += 1
        else:
            self._segment(goal)

    def act(
        self,
        frames: int,
        tag: int,
        pattern: str = "static",
        direction: np.ndarray | None = None,
        amplitude: float = 0.0,
        jaw: float | None = None,
    ) -> None:
        """Work at the current point for ``frames`` frames, tagged ``tag``.

        Patterns: ``static`` (hold), ``stroke`` (back-and-forth along ``direction`` at 1.2 Hz, e.g.
        hook dissection), ``pull`` (a ramp along ``direction``, e.g. retraction), ``close`` (jaws close
        over the first third, e.g. grasp/clip/cut).
        """
        if frames <= 0:
            return
        rng = self.rng
        if rng.random() < self.style.error_rate:
            self._slip()
        base = self._p.copy()
        t = np.arange(frames) / self.fps
        off = np.zeros((frames, 2))
        u = np.zeros(2) if direction is None else np.asarray(direction, np.float64)
        if pattern == "stroke":
            off = np.outer(amplitude * np.sin(2 * np.pi * 1.2 * t), u)
        elif pattern == "pull":
            off = np.outer(amplitude * np.minimum(t / 1.0, 1.0), u)
        jaws = None
        if pattern == "close" or jaw is not None:
            closing = np.clip(1.0 - t / max(t[-1] / 3, 1e-3), 0.0, 1.0) * self._jaw
            jaws = closing if jaw is None else np.full(frames, jaw)
        self._emit(base + off, tag, jaws)
        self._p = base + off[-1] if pattern == "pull" else base

    def _slip(self) -> None:
        """An error: the tip slips away from the target, pauses, and comes back."""
        rng = self.rng
        start = self._p.copy()
        ang = rng.uniform(0, 2 * np.pi)
        away = start + self.style.speed * 0.12 * np.array([np.cos(ang), np.sin(ang)])
        self.stats.errors += 1
        self.stats.error_frames.append(len(self))
        self._emit(min_jerk(start, away, max(2, int(0.12 * self.tfps))))
        self.hold(int(0.4 * self.tfps))
        self._segment(start, speed_gain=0.7)

    def pad_to(self, frames: int) -> None:
        """Hold (untagged) until the track has ``frames`` frames."""
        self.hold(frames - len(self))

    def finish(self, frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pos (n, 2) with tremor, jaw (n,), tag (n,)) cut or padded to ``frames``."""
        self.pad_to(frames)
        pos = np.asarray(self.pos[:frames], np.float64)
        pos = pos + tremor(self.rng, len(pos), self.fps, self.style.tremor_px)
        return (
            pos.astype(np.float32),
            np.asarray(self.jaw[:frames], np.float32),
            np.asarray(self.tag[:frames], np.int32),
        )
