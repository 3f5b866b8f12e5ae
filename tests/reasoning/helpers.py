"""Hand-made records for the unit tests."""

from __future__ import annotations

from surgkit.reasoning.records import Record


def rec(**kw) -> Record:
    base = dict(
        id="t/v1/10/q0",
        dataset="t",
        split="train",
        video_id="v1",
        images=[dict(path="a.png", width=100, height=80)],
        task="phase",
        question="Which phase?",
        answer="CalotTriangleDissection",
    )
    base.update(kw)
    return Record.from_dict(base)


def phase_rec() -> Record:
    return rec(
        labels=dict(
            phase="CalotTriangleDissection",
            triplets=[
                dict(instrument="hook", verb="dissect", target="cystic_duct"),
                dict(instrument="grasper", verb="retract", target="gallbladder"),
            ],
        ),
        boxes=[dict(label="hook", bbox=[60, 10, 90, 30]), dict(label="grasper", bbox=[5, 50, 30, 75])],
    )


def location_rec() -> Record:
    """EndoVis-style location question on a 1280x1024 frame; answer box in the right-top quadrant."""
    return rec(
        id="e/seq_1/frame1/q2",
        images=[dict(path="a.png", width=1280, height=1024)],
        task="vqla",
        question_type="location",
        question="Where is bipolar_forceps located?",
        answer="right-top",
        labels=dict(
            object="bipolar_forceps", organ="kidney", states={"bipolar_forceps": "Tissue_Manipulation"}
        ),
        boxes=[dict(label="bipolar_forceps", bbox=[700, 60, 1180, 430], role="answer")],
    )
