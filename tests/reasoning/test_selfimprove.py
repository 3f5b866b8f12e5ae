from surgkit.reasoning import generation
from surgkit.reasoning.endpoint import Answer
from surgkit.reasoning.render import render_target
from surgkit.reasoning.scoring import BoxSettings
from surgkit.reasoning.selfimprove import SelfImproveSettings, sample_chains

from .helpers import location_rec, phase_rec


def test_dual_pathway_accepts_valid_self_chains_and_falls_back(monkeypatch):
    good = phase_rec()
    other = location_rec()
    own = render_target(good, "cot").replace("So the current phase", "Hence the current phase")
    hallucinated = render_target(other, "cot").replace("(bipolar forceps)", "(bipolar forceps) and a clipper")

    def fake_generate(model, processor, batch, root, box, settings, **kwargs):
        assert settings.num_return_sequences == 2 and settings.do_sample
        out = []
        for r in batch:  # a right chain cut at the token limit is rejected too
            texts = (
                ["<think>garbage</think>", own]
                if r.id == good.id
                else [hallucinated, render_target(r, "cot")]
            )
            out += [Answer(texts[0]), Answer(texts[1], "ok" if r.id == good.id else "length")]
        return out

    monkeypatch.setattr(generation, "generate_answers", fake_generate)
    accepted, fallback, stats = sample_chains(
        None, None, [good, other], None, SelfImproveSettings(samples=2), BoxSettings()
    )
    assert [r.id for r in accepted] == [good.id] and [r.id for r in fallback] == [other.id]
    assert accepted[0].reasoning["source"] == "self" and "Hence" in accepted[0].reasoning["level3"]
    assert fallback[0].reasoning is None  # the template chain is rendered at SFT time
    assert stats["acceptance_rate"] == 0.5 and stats["rejections_by_kind"]["instrument"] == 1
    assert stats["rejections_by_kind"]["length"] == 1
    # the stored self chain is what Stage-4 SFT trains on
    assert "Hence the current phase" in render_target(accepted[0], "cot")
