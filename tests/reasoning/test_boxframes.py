"""Box frames checked against the processor's real resize (Qwen2-VL and Qwen2.5-VL, tiny random configs)."""

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from surgkit.errors import SurgkitError  # noqa: E402
from surgkit.reasoning import boxes as bx  # noqa: E402
from surgkit.reasoning.rewards import iou_reward  # noqa: E402
from surgkit.reasoning.scoring import BoxSettings  # noqa: E402
from surgkit.reasoning.tiny_vlm import TinyVLMConfig, build_tiny_vlm  # noqa: E402
from surgkit.reasoning.vlm import bind_processor, check_resize, load_vlm, real_input_size  # noqa: E402

from .helpers import location_rec  # noqa: E402

CORPUS = ["<think>Level 1: a</think><answer>right-top</answer>", "Where is the bipolar forceps?"] * 5


@pytest.fixture(scope="module", params=["qwen2-vl", "qwen2.5-vl"])
def tiny(request, tmp_path_factory):
    cfg = TinyVLMConfig(kind=request.param, hidden_size=32, intermediate_size=64, vision_embed_dim=16)
    return build_tiny_vlm(tmp_path_factory.mktemp(request.param) / "m", CORPUS, cfg)


def hub_default_processor(folder):
    """The tiny model's processor with the pixel bounds a hub Qwen2.5-VL checkpoint ships (max 12845056)."""
    from surgkit.reasoning.vlm import load_processor

    proc = load_processor(folder)
    proc.image_processor.size = {"shortest_edge": 3136, "longest_edge": 12845056}
    return proc


def test_the_issue_case_unbound_processor_disagrees(tiny):
    proc = hub_default_processor(tiny)
    assert real_input_size(proc, 1280, 1024) == (1288, 1036)  # what the model sees without binding
    with pytest.raises(
        SurgkitError, match=r"1280x1024 image becomes 1288x1036 in the processor but 1120x896"
    ):
        check_resize(proc, BoxSettings(frame="input", min_pixels=3136, max_pixels=1003520), 1280, 1024)
    bound = bind_processor(proc, BoxSettings(frame="input", max_pixels=1003520), [(1280, 1024)])
    assert real_input_size(proc, 1280, 1024) == (1120, 896) and bound.max_pixels == 1003520


@pytest.mark.parametrize("w,h", [(1280, 1024), (1920, 1080), (854, 480), (224, 224), (100, 80), (3000, 200)])
@pytest.mark.parametrize("lo,hi", [(3136, 1003520), (3136, 200704), (50176, 50176)])
def test_box_frame_equals_the_real_resize(tiny, w, h, lo, hi):
    proc = hub_default_processor(tiny)
    bound = bind_processor(proc, BoxSettings(frame="input", min_pixels=lo, max_pixels=hi))
    assert real_input_size(proc, w, h) == bx.qwen25_input_size(w, h, bound.factor, lo, hi)


def test_perfect_box_in_the_model_input_frame_scores_one(tiny):
    proc = hub_default_processor(tiny)
    r = location_rec()  # 1280 x 1024, GT (700, 60, 1180, 430)
    bound = bind_processor(proc, BoxSettings(frame="input", max_pixels=1003520), [r.size])
    iw, ih = real_input_size(proc, *r.size)
    gt = r.answer_box()
    perfect = [
        gt[0] * iw / 1280,
        gt[1] * ih / 1024,
        gt[2] * iw / 1280,
        gt[3] * ih / 1024,
    ]  # what the model sees
    assert bound.to_prompt(gt, r) == [round(v) for v in perfect]
    text = f'<think>Level 1: x\nLevel 2: y\nLevel 3: z</think><answer>{{"label": "right-top", "bbox_2d": {perfect}}}</answer>'
    assert iou_reward([text], record=[r], box_settings=bound) == [pytest.approx(1.0)]
    # read with the unbound (hub default) resize, the same perfect box would lose half its IoU
    wrong = BoxSettings(frame="input", min_pixels=3136, max_pixels=12845056)
    assert iou_reward([text], record=[r], box_settings=wrong)[0] < 0.85


def test_bound_settings_from_the_processor_and_models_load(tiny):
    model, proc = load_vlm(tiny, box=BoxSettings(frame="input"))
    lo, hi = proc.surgkit_box.min_pixels, proc.surgkit_box.max_pixels
    assert (lo, hi) == (28 * 28, 56 * 56) and proc.surgkit_box.factor == 28  # taken from the tiny processor
    assert type(model).__name__.startswith("Qwen2_5_VL" if "2.5" in str(tiny) else "Qwen2VL")
