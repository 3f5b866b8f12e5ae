"""Geometry round trips, zero-shot rules, prompts, and the metric known-answer cases (spec §5.3, §7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from surgkit.errors import SurgkitError
from surgkit.grounding.geometry import Preprocess, box_to_frame, box_to_input, minmax_normalise, to_frame
from surgkit.grounding.prompts import (
    fix_articles,
    instrument_prompts,
    load_templates,
    normalise_label,
    triplet_prompts,
    verb_prompts,
)
from surgkit.grounding.zeroshot import argmax_lowest, cosine_scores, ensemble, probabilities
from surgkit.metrics.grounding import action_reasoning_score, tau_aa, tau_ac


# -- geometry -------------------------------------------------------------------------------------
def test_surgvlp_native_crop_window():
    g = Preprocess("resize_crop", 224, resize_hw=(360, 640)).geometry((360, 640))
    assert g.crop == (68, 208, 224, 224)  # y in [68, 292), x in [208, 432)
    assert g.visible_fraction() == pytest.approx(224 * 224 / (640 * 360))
    frame = to_frame(torch.ones(224, 224), g, normalise=False)
    expected = np.zeros((360, 640), np.float32)
    expected[68:292, 208:432] = 1.0
    assert np.array_equal(frame, expected)


@pytest.mark.parametrize("mode", ["resize", "resize_crop", "shorter_crop"])
def test_box_round_trip_and_box_map_lands_on_box(mode):
    pre = Preprocess(mode, 32, resize_hw=(40, 72))
    g = pre.geometry((80, 144))
    box = (70.0, 20.0, 100.0, 60.0)
    inp = box_to_input(box, g)
    assert box_to_frame(inp, g) == pytest.approx(box)
    # a map that is 1 exactly on the box (in input pixels) comes back on the frame box
    m = np.zeros((32, 32), np.float32)
    x0, y0, x1, y1 = (int(round(v)) for v in inp)
    m[max(y0, 0) : y1, max(x0, 0) : x1] = 1.0
    back = to_frame(m, g) >= 0.5
    ys, xs = np.nonzero(back)
    assert xs.min() == pytest.approx(box[0], abs=3) and xs.max() + 1 == pytest.approx(box[2], abs=3)
    assert ys.min() == pytest.approx(box[1], abs=3) and ys.max() + 1 == pytest.approx(box[3], abs=3)


def test_delta_maps_to_the_right_frame_pixel():
    g = Preprocess("resize", 8).geometry((16, 32))  # scale 2 in y, 4 in x
    m = np.zeros((8, 8), np.float32)
    m[3, 5] = 1.0
    back = to_frame(m, g)
    y, x = np.unravel_index(np.argmax(back), back.shape)
    assert (y // 2, x // 4) == (3, 5)
    assert back.max() == 1.0 and back.min() == 0.0


def test_normalise_then_resize_equals_resize_then_normalise():
    g = Preprocess("resize", 8).geometry((20, 28))
    m = torch.rand(8, 8, generator=torch.Generator().manual_seed(0)) * 3 + 2
    a = to_frame(m, g)
    b = to_frame(minmax_normalise(m), g)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_preprocess_resize_matches_interpolation_and_normalisation():
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    pre = Preprocess("resize", 10, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x, geoms = pre([img])
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255, size=(10, 10), mode="bilinear",
        align_corners=False, antialias=True,
    )[0].clamp(0, 1)  # fmt: skip
    torch.testing.assert_close(x[0], (ref - 0.5) / 0.25)
    assert geoms[0].frame_hw == (20, 30)
    with pytest.raises(SurgkitError, match="mode"):
        Preprocess("stretch")


def test_official_clip_preprocessing_matches_the_hf_image_processor():
    from transformers import CLIPImageProcessorPil

    from surgkit.grounding.clip import official_preprocess

    proc = CLIPImageProcessorPil(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32})
    img = np.random.default_rng(0).integers(0, 255, (48, 85, 3), dtype=np.uint8)  # 854 x 480-like aspect
    ref = proc(images=img, return_tensors="pt")["pixel_values"]
    pre = Preprocess("shorter_crop", 32, tuple(proc.image_mean), tuple(proc.image_std), interpolation="bicubic",
                     short_side=40)  # fmt: skip
    x, geoms = pre([img])
    assert geoms[0].resized_hw == (40, 70) and geoms[0].crop == (4, 19, 32, 32)  # int(40 * 85 / 48) = 70
    diff = (x - ref).abs()
    assert float(diff.mean()) < 0.01 and float(diff.max()) < 0.2  # PIL vs torch bicubic on pure noise
    shifted = (x[..., :, 1:] - ref[..., :, :-1]).abs().mean()  # a crop one pixel off is far away
    assert float(shifted) > 10 * float(diff.mean())
    folder_pre = official_preprocess(None, 32)
    assert folder_pre.mode == "shorter_crop" and folder_pre.interpolation == "bicubic"


def test_official_preprocessing_is_read_from_the_model_folder(tmp_path):
    import json

    from surgkit.grounding.clip import official_preprocess

    (tmp_path / "preprocessor_config.json").write_text(json.dumps(
        {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.2, 0.2, 0.2], "size": {"shortest_edge": 40},
         "crop_size": {"height": 32, "width": 32}}))  # fmt: skip
    pre = official_preprocess(tmp_path, 32)
    assert (pre.short_side, pre.size, pre.mean) == (40, 32, (0.5, 0.5, 0.5))
    assert pre.full_frame().mode == "resize" and pre.full_frame().mean == pre.mean
    (tmp_path / "preprocessor_config.json").write_text('{"image_mean": [0.5, "x", 0.5]}')
    with pytest.raises(SurgkitError, match=r"image_mean\[1\]"):
        official_preprocess(tmp_path, 32)
    (tmp_path / "preprocessor_config.json").write_text('{"crop_size": {"height": 64, "width": 64}}')
    with pytest.raises(SurgkitError, match="crop_size"):
        official_preprocess(tmp_path, 32)


def test_official_surgvlp_preprocessing_and_the_full_frame_option(tiny_surgvlp):
    from surgkit.grounding.surgvlp import SurgicalVLMConfig, official_preprocess

    full = official_preprocess(SurgicalVLMConfig(bert={"num_hidden_layers": 12}))
    assert full.describe()["resize_hw"] == [360, 640] and full.geometry((480, 854)).crop == (
        68,
        208,
        224,
        224,
    )
    assert tiny_surgvlp.preprocess.mode == "resize_crop"  # official by default
    assert tiny_surgvlp.preprocess.resize_hw == (103, 183)  # 360 x 640 scaled to a 64-pixel input
    tiny_surgvlp.configure("full-frame")
    assert (
        tiny_surgvlp.preprocess.mode == "resize" and tiny_surgvlp.describe()["preprocessing"] == "full-frame"
    )
    with pytest.raises(SurgkitError, match="preprocessing"):
        tiny_surgvlp.configure("native")


# -- zero-shot ------------------------------------------------------------------------------------
def test_predictions_are_argmax_of_cosine_matrix_with_lowest_index_ties():
    g = torch.Generator().manual_seed(0)
    img, bank = (
        torch.randn(5, 8, generator=g),
        torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=-1),
    )
    scores = cosine_scores(img, bank)
    explicit = np.array([[float(img[i] @ bank[c] / img[i].norm()) for c in range(4)] for i in range(5)])
    np.testing.assert_allclose(scores.numpy(), explicit, atol=1e-6)
    assert list(argmax_lowest(scores)) == list(explicit.argmax(1))
    assert argmax_lowest(np.array([[0.2, 0.7, 0.7, 0.1]]))[0] == 1
    p = probabilities(scores, 100.0)
    torch.testing.assert_close(p, torch.softmax(100 * scores, dim=1))


def test_ensembling_is_mean_of_normalised_then_renormalised():
    e = torch.tensor([[3.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    bank = ensemble(e, [0, 0, 1], 2)
    by_hand = (torch.tensor([1.0, 0.0]) + torch.tensor([0.0, 1.0])) / 2
    torch.testing.assert_close(bank[0], by_hand / by_hand.norm())
    torch.testing.assert_close(bank[1], torch.tensor([1.0, 1.0]) / 2**0.5)


def test_class_embeddings_are_cached(tiny_clip, tmp_path):
    from surgkit.grounding import zeroshot

    ps = instrument_prompts(["Grasper", "Hook"])
    a = zeroshot.class_embeddings(tiny_clip, ps, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("text-*.safetensors"))) == 1
    zeroshot._MEMORY.clear()
    b = zeroshot.class_embeddings(tiny_clip, ps, cache_dir=tmp_path)  # read back from disk
    torch.testing.assert_close(a, b)
    with torch.no_grad():
        direct = torch.nn.functional.normalize(tiny_clip.encode_text(ps.flat()[0]), dim=-1)
    torch.testing.assert_close(a, direct, atol=1e-6, rtol=0)


# -- prompts ----------------------------------------------------------------------------------------
def test_label_normalisation_and_rendering():
    assert normalise_label("SpecimenBag") == "specimen bag"
    assert normalise_label("cystic_duct") == "cystic duct"
    assert (
        normalise_label("abdominal_wall_cavity", {"abdominal_wall_cavity": "abdominal wall"})
        == "abdominal wall"
    )
    assert fix_articles("I use a irrigator to aspirate a fluid") == "I use an irrigator to aspirate a fluid"
    ps = instrument_prompts(["Irrigator"], articles=False)
    assert ps.classes[0].prompts == ["an image showing a irrigator in use"]  # literal by default
    trip = triplet_prompts()
    assert len(trip) == 94  # the 100 CholecT50 triplets minus the 6 null triplets
    first = trip.classes[0]
    assert first.key == "grasper,dissect,cystic_plate"
    assert first.prompts == ["I use a grasper to dissect the cystic plate"]
    assert len(triplet_prompts(pool="all")) == 100
    assert triplet_prompts(pool="all").classes[-1].prompts == ["I use a irrigator to no action the nothing"]
    product = triplet_prompts(pool="product")
    assert len(product) == 6 * 9 * 14 and len(set(product.keys)) == len(product)
    assert set(trip.keys) <= set(product.keys)  # every valid CholecT50 triplet is a combination
    with pytest.raises(SurgkitError, match="triplet pool"):
        triplet_prompts(pool="everything")
    assert verb_prompts().classes[0].prompts == ["I am performing grasp"]
    assert "null verb" not in verb_prompts().keys and len(verb_prompts()) == 9
    with pytest.raises(SurgkitError, match="not in the instrument prompt vocabulary"):
        ps.index("trocar")


def test_templates_file_and_ensembled_prompts(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(
        '{"instrument": [{"id": "a", "text": "a photo of a {instrument}"}, {"id": "b", "text": "{instrument} in use"}]}'
    )
    ps = instrument_prompts(["Hook"], load_templates(path))
    assert ps.classes[0].prompts == ["a photo of a hook", "hook in use"]
    assert ps.classes[0].template_ids == ["a", "b"]
    path.write_text('{"instrument": [{"id": "x", "text": "a {tool}"}]}')
    with pytest.raises(SurgkitError, match="unknown field"):
        instrument_prompts(["Hook"], load_templates(path))
    path.write_text("{oops")
    with pytest.raises(SurgkitError, match="t.json:1"):
        load_templates(path)


# -- metric known-answer cases through surgkit.metrics.grounding (spec §5.3) ---------------------------
def _fixture():
    m = np.add.outer(np.arange(4), np.arange(4)).astype(float)  # rows (0 1 2 3) ... (3 4 5 6)
    g = np.zeros((4, 4), bool)
    g[2:4, 2:4] = True
    b = np.zeros((4, 4), bool)
    b[0:2, 2:4] = True
    return m, g, b


def test_metric_known_answers():
    m, g, b = _fixture()
    assert tau_ac(m, g) == pytest.approx(0.4)
    assert tau_aa(m, {"hook": g}, "hook") == pytest.approx(0.4)
    assert tau_aa(m, {"hook": g}, "grasper") == 0.0
    assert action_reasoning_score(m, b) == pytest.approx(0.3)


def test_metric_edge_cases_zero_map_and_exactly_tau():
    _, g, b = _fixture()
    assert tau_ac(np.zeros((4, 4)), g) == 0.0  # all-zero heatmap: no attention, scores 0
    exact = np.zeros((4, 4))
    exact[0, 0], exact[2, 2], exact[3, 3] = 1.0, 0.5, 0.25
    # 0.5 is attended (>= tau): A = {(0,0), (2,2)} -> one of two pixels in g
    assert tau_ac(exact, g) == pytest.approx(0.5)
    assert np.isnan(tau_ac(exact, np.zeros((4, 4), bool)))  # empty GT: excluded
    assert action_reasoning_score(exact, b) == 0.0
