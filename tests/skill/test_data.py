"""Scored videos from feature stores: bad input names the video; label scale; length policies."""

from __future__ import annotations

import numpy as np
import pytest

from surgkit.errors import SurgkitError
from surgkit.prep.store import FeatureStore, FeatureStoreWriter
from surgkit.skill.data import LabelScale, balanced_batches, fit_length, load_video, resample
from surgkit.skill.interop import SkillItem
from surgkit.utils.io import save_tensors
from surgkit.vocab import OSATS_ITEMS

SCALE = LabelScale((6.0, 30.0), OSATS_ITEMS)
ITEMS = dict(zip(OSATS_ITEMS, [3.0, 3.0, 4.0, 3.0, 3.0, 2.0], strict=True))


def _store(root, videos: dict[str, dict[str, int]], dim=4):
    with FeatureStoreWriter(root, backbone="test", fps=10, segment_frames=32) as w:
        for vid, mods in videos.items():
            for m, t in mods.items():
                w.write(vid, m, np.ones((t, dim), np.float32), num_frames=32 * t)
    return FeatureStore(root)


def _item(vid="Suturing_B001", score=18.0):
    return SkillItem(vid, "Suturing", "B", score, ITEMS)


def test_mismatched_segment_counts_name_the_video(tmp_path):
    store = _store(tmp_path, {"Suturing_B001_capture1": {"rgb": 5, "flow": 5}})
    save_tensors(store.path("Suturing_B001_capture1", "flow"), {"features": np.ones((7, 4), np.float32)})
    with pytest.raises(SurgkitError, match="Suturing_B001"):
        load_video(FeatureStore(tmp_path), _item(), ["rgb", "flow"], SCALE)


def test_missing_modality_names_the_video(tmp_path):
    store = _store(
        tmp_path, {"Suturing_B001_capture1": {"rgb": 5, "flow": 5}, "Suturing_B002_capture1": {"rgb": 5}}
    )
    with pytest.raises(SurgkitError, match=r"Suturing_B002.*missing modality flow"):
        load_video(store, _item("Suturing_B002"), ["rgb", "flow"], SCALE)
    store.path("Suturing_B001_capture1", "flow").unlink()  # listed in the index, file gone
    with pytest.raises(SurgkitError, match="Suturing_B001"):
        load_video(store, _item(), ["rgb", "flow"], SCALE)


def test_video_without_features_and_score_out_of_range_name_the_video(tmp_path):
    store = _store(tmp_path, {"Suturing_B001_capture1": {"rgb": 5}})
    with pytest.raises(SurgkitError, match="Suturing_C004.*no features"):
        load_video(store, _item("Suturing_C004"), ["rgb"], SCALE)
    with pytest.raises(SurgkitError, match=r"Suturing_B001.*score 31 outside the score range \[6, 30\]"):
        load_video(store, _item(score=31.0), ["rgb"], SCALE)
    bad_items = LabelScale((6.0, 30.0), OSATS_ITEMS, target="items")
    with pytest.raises(SurgkitError, match="Suturing_B001.*item scores"):
        bad_items.normalise(
            SkillItem("Suturing_B001", "Suturing", "B", 18.0, {**ITEMS, "time_and_motion": 6.0})
        )


def test_label_scale_round_trip_and_fixed_range():
    """§1.3: y = (GRS − 6) / 24; items: (v − 1) / 4, GRS recovered as the sum of the items."""
    y = SCALE.normalise(_item(score=18.0))
    assert y.tolist() == [0.5]
    assert SCALE.to_score(np.array([[0.0], [0.5], [1.0]])).tolist() == [6.0, 18.0, 30.0]
    items = LabelScale((6.0, 30.0), OSATS_ITEMS, target="items")
    t = items.normalise(_item())
    np.testing.assert_allclose(items.to_items(t[None])[0], list(ITEMS.values()))
    assert items.to_score(t[None])[0] == pytest.approx(sum(ITEMS.values()))


def test_partial_tail_segment_is_dropped(tmp_path):
    with FeatureStoreWriter(tmp_path, backbone="test", fps=10, segment_frames=32) as w:
        for m in ("rgb", "flow"):
            w.write(
                "v_capture1",
                m,
                np.arange(12, dtype=np.float32).reshape(6, 2),
                num_frames=170,
                valid=[1, 1, 1, 1, 1, 0],
            )
    store = FeatureStore(tmp_path)
    v = load_video(store, SkillItem("v", "Suturing", "B", 10.0), ["rgb", "flow"], SCALE)
    assert v.length == 5  # T = ⌊170 / 32⌋
    assert (
        load_video(
            store, SkillItem("v", "Suturing", "B", 10.0), ["rgb"], SCALE, drop_partial_tail=False
        ).length
        == 6
    )


def test_length_policies():
    rng = np.random.default_rng(0)
    feats = {
        "rgb": np.arange(20, dtype=np.float32).reshape(10, 2),
        "flow": -np.arange(20, dtype=np.float32).reshape(10, 2),
    }
    padded = fit_length(feats, "pad", 13, rng)
    assert padded["rgb"].shape == (13, 2) and (padded["rgb"][10:] == 0).all()
    np.testing.assert_array_equal(padded["rgb"][:10], feats["rgb"])
    crop = fit_length(feats, "crop", 4, rng)
    start = int(crop["rgb"][0, 0]) // 2
    np.testing.assert_array_equal(
        crop["flow"], feats["flow"][start : start + 4]
    )  # same window in every modality
    res = resample(feats["rgb"], 19)
    assert res.shape == (19, 2)
    np.testing.assert_allclose(res[[0, -1]], feats["rgb"][[0, -1]])
    np.testing.assert_allclose(res[1], (feats["rgb"][0] + feats["rgb"][1]) / 2)


@pytest.mark.parametrize("n,bs", [(2, 16), (17, 16), (33, 16), (5, 2), (31, 8)])
def test_balanced_batches_cover_everything_without_lone_samples(n, bs):
    batches = balanced_batches(n, bs, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(n))
    assert min(len(b) for b in batches) >= 2
    assert max(len(b) for b in batches) <= max(bs, 3)  # a batch of 3 rather than a lone sample
