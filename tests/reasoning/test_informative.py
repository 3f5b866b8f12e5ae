"""The GRPO signal screen (DAPO dynamic sampling, once before training): which groups are kept."""

import dataclasses

import pytest

from surgkit.reasoning import generation
from surgkit.reasoning.endpoint import Answer
from surgkit.reasoning.informative import ScreenSettings, group_spreads, sampled_totals, screen
from surgkit.reasoning.render import render_target
from surgkit.reasoning.scoring import BoxSettings

from .helpers import phase_rec


def test_group_spreads_hand_computed():
    assert group_spreads([1.5, 1.5, 0.5, 0.0, 0.0, 0.0], 3) == [1.0, 0.0]
    assert group_spreads([0.25, 1.0], 1) == [0.0, 0.0]
    with pytest.raises(ValueError, match="groups of 2"):
        group_spreads([1.0, 2.0, 3.0], 2)


class _Processor:
    surgkit_box = BoxSettings()


def _fake_sampling(monkeypatch, completions: dict[str, list[str]], seen: list):
    def fake(model, processor, records, image_root, box, settings, on_batch=None, *, seed=None, shard=None):
        seen.append(settings)
        return [
            Answer(*t) if isinstance(t, tuple) else Answer(t, "ok")
            for r in records
            for t in completions[r.id]
        ]

    monkeypatch.setattr(generation, "generate_answers", fake)


def test_screen_keeps_only_groups_whose_total_reward_varies(monkeypatch):
    base = phase_rec()
    right = render_target(base, "cot")  # format 1 -> 0.5, accuracy 1: total 1.5
    wrong = right.replace("<answer>CalotTriangleDissection", "<answer>Preparation")  # total 0.5
    bare = "<answer>CalotTriangleDissection</answer>"  # no chain: format 0, accuracy 1: total 1.0
    recs = {k: dataclasses.replace(base, id=f"t/v1/{k}/q0") for k in ("same", "split", "cut", "format")}
    completions = {
        recs["same"].id: [right, right, right],
        recs["split"].id: [right, wrong, right],
        recs["cut"].id: [right, (right, "length"), right],  # cut at the token limit: unparseable, total 0
        recs["format"].id: [right, bare, right],
    }
    seen: list = []
    _fake_sampling(monkeypatch, completions, seen)
    settings = ScreenSettings(generations=3, temperature=0.5, max_new_tokens=64)
    records = list(recs.values())
    totals = sampled_totals(None, _Processor(), records, None, settings)
    assert totals == pytest.approx([1.5, 1.5, 1.5, 1.5, 0.5, 1.5, 1.5, 0.0, 1.5, 1.5, 1.0, 1.5])
    kept, stats = screen(None, _Processor(), records, None, settings)
    assert [r.id for r in kept] == [recs[k].id for k in ("split", "cut", "format")]
    assert (stats["candidates"], stats["kept"]) == (4, 3)
    assert stats["sampled_mean_reward"] == pytest.approx(sum(totals) / 12)
    # the screen samples the groups the trainer will: its group size and temperature, with sampling on
    g = seen[-1]
    assert (g.num_return_sequences, g.temperature, g.do_sample, g.max_new_tokens) == (3, 0.5, True, 64)

    # only the answer's accuracy counts: the group that differs in format alone carries no signal
    acc_only = sampled_totals(None, _Processor(), records, None, settings, weights={"accuracy": 1.0})
    assert group_spreads(acc_only, 3) == [0.0, 1.0, 1.0, 0.0]
