"""Records from the synthetic world: the one place that knows how the world is laid out.

The world (``surgkit synth``) writes the native layouts of the real datasets; this adapter finds
each layout under the world root and runs the same reader + builder as for real data, so synthetic
and real records are made by identical code. Layouts are detected by their marker files:

- EndoVis18-VQLA: ``seq_<n>/vqla/label/*.txt``
- CholecT50: ``labels/VID*.json``
- Cholec80: ``phase_annotations/*-phase.txt``
- Endoscapes: ``{train,val,test}/annotation*_coco*.json``

Record ids and ``dataset`` are prefixed with ``synth-`` so they never mix with real data.
"""

from __future__ import annotations

from pathlib import Path

from surgkit.errors import SurgkitError

MARKERS = {
    "endovis18_vqla": "seq_*/vqla/label",
    "cholect50": "labels/VID*.json",
    "cholec80": "phase_annotations/*-phase.txt",
    "endoscapes": "*/annotation*coco*.json",
}


def find_layouts(world: Path, max_depth: int = 3) -> dict[str, Path]:
    """{source: dataset root} for every native layout found under ``world`` (shallowest first)."""
    found: dict[str, Path] = {}
    candidates = [world] + sorted(
        p for d in range(1, max_depth + 1) for p in world.glob("/".join(["*"] * d)) if p.is_dir()
    )
    for folder in candidates:
        for source, pattern in MARKERS.items():
            if source not in found and any(folder.glob(pattern)):
                found[source] = folder
    return found


def build_from_world(world: str | Path, stride: int = 1):
    """One :class:`BuildReport` with the records of every layout the world wrote (ids ``synth-…``)."""
    from surgkit.reasoning.builders import BuildReport, build
    from surgkit.reasoning.records import ImageRef

    world = Path(world)
    layouts = find_layouts(world)
    if not layouts:
        raise SurgkitError(f"{world}: no native dataset layout found (expected one of {', '.join(MARKERS)})")
    report = BuildReport("synth")
    for source, root in layouts.items():
        sub = build(source, root, stride=stride, frames_dir=world / "surgkit_frames")
        rel = root.resolve().relative_to(world.resolve())
        for r in sub.records:
            r.id = f"synth-{r.id}"
            r.dataset = f"synth-{r.dataset}"
            r.images = [  # new objects: builders may share one image list between a frame's records
                ImageRef(im.path if Path(im.path).is_absolute() else str(rel / im.path), im.width, im.height)
                for im in r.images
            ]
            r.provenance["world_layout"] = str(rel)
        report.records += sub.records
        report.skipped += [(f"{source}:{item}", why) for item, why in sub.skipped]
        report.notes += [f"{source} ({rel}): {n}" for n in sub.notes]
    return report
