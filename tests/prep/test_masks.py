"""Masks from annotations (value maps, nearest, {trial}), the synthetic layout, and models (torch + HF)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from surgkit.errors import SurgkitError
from surgkit.prep import masks
from surgkit.prep.frames import extract
from surgkit.prep.seqstore import SequenceReader

from .conftest import make_video


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("maskframes")
    make_video(root / "v" / "Suturing_B001_capture1.avi", 60, 30, "mpeg4", size=(64, 48))
    assert extract(root / "v", root / "frames", fps=10, fmt="array", progress=False, workers=1).ok
    return root / "frames"


def _write_ann(folder, frame_numbers, value_of):
    folder.mkdir(parents=True, exist_ok=True)
    for n in frame_numbers:
        m = np.zeros((24, 32), np.uint8)
        m[: 1 + n % 20, :] = value_of(n)  # a band whose height encodes the source frame
        cv2.imwrite(str(folder / f"{n:06d}_class.png"), m)


def test_annotations_value_map_and_exact_frames(frames, tmp_path):
    _write_ann(tmp_path / "ann" / "Suturing_B001", range(0, 60, 3), lambda n: 255)
    src = masks.AnnotationMasks(tmp_path / "ann", "{trial}/{frame:06d}_class.png", values={255: 1})
    res = masks.compute(frames, tmp_path / "out", src, progress=False)
    assert res.ok, res.failed
    seq = SequenceReader(tmp_path / "out" / "Suturing_B001_capture1")
    got = seq.read(0, len(seq))
    assert got.shape == (20, 48, 64) and set(np.unique(got)) == {0, 1}
    for k, m in enumerate(got):  # frame k at 10 fps = source frame 3k; band height (1 + 3k % 20) * 2 rows
        assert int(m[:, 5].sum()) == 2 * (1 + (3 * k) % 20)
    assert seq.meta["num_classes"] == 2 and seq.meta["approximated_frames"] == 0


def test_missing_annotations_error_or_nearest(frames, tmp_path):
    _write_ann(tmp_path / "ann" / "Suturing_B001", range(0, 60, 30), lambda n: 4)  # 1 fps, like the world
    strict = masks.AnnotationMasks(tmp_path / "ann", masks.SYNTH_PATTERN.replace("masks/", ""))
    res = masks.compute(frames, tmp_path / "a", strict, progress=False)
    assert "no mask for source frame 3 of 'Suturing_B001_capture1'" in res.failed["Suturing_B001_capture1"]
    (tmp_path / "world" / "masks").mkdir(parents=True)
    (tmp_path / "ann" / "Suturing_B001").rename(tmp_path / "world" / "masks" / "Suturing_B001")
    res = masks.compute(frames, tmp_path / "b", masks.synth_masks(tmp_path / "world"), progress=False)
    assert res.ok
    seq = SequenceReader(tmp_path / "b" / "Suturing_B001_capture1")
    heights = [int(m[:, 0].astype(bool).sum()) for m in seq.read(0, 20)]
    # frames 0..4 (src 0..12) -> src 0 (2 rows); 5 (src 15, tie) -> src 0; 6..19 (src 18..57) -> src 30 (22 rows)
    assert heights == [2] * 6 + [22] * 14
    assert seq.meta["approximated_frames"] == 18 and seq.meta["num_classes"] == 5


class Threshold(torch.nn.Module):
    """Class 1 where the (normalised) red channel is above its ImageNet mean."""

    def forward(self, x):
        return torch.stack([torch.zeros_like(x[:, 0]), x[:, 0]], 1)


def test_model_source_matches_hand_threshold(frames, tmp_path):
    res = masks.compute(frames, tmp_path, masks.ModelMasks(Threshold(), input_size=(48, 64), batch_size=3),
                        fmt="array", progress=False)  # fmt: skip
    assert res.ok
    rgb = SequenceReader(frames / "Suturing_B001_capture1").read(0, 20)
    want = (rgb[..., 0].astype(np.float32) / 255.0 > 0.485).astype(np.uint8)
    np.testing.assert_array_equal(SequenceReader(tmp_path / "Suturing_B001_capture1").read(0, 20), want)


def test_hf_segmentation_folder(frames, tmp_path):
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    cfg = SegformerConfig(
        num_encoder_blocks=1, depths=[1], sr_ratios=[1], hidden_sizes=[8], patch_sizes=[3], strides=[2],
        num_attention_heads=[1], mlp_ratios=[2], decoder_hidden_size=8, num_labels=3,
    )  # fmt: skip
    torch.manual_seed(0)
    model = SegformerForSemanticSegmentation(cfg).eval()
    model.save_pretrained(tmp_path / "seg")
    res = masks.compute(
        frames, tmp_path / "out", masks.ModelMasks(tmp_path / "seg", input_size=32), progress=False
    )
    assert res.ok
    got = SequenceReader(tmp_path / "out" / "Suturing_B001_capture1").read(0, 2)
    rgb = SequenceReader(frames / "Suturing_B001_capture1").read(0, 2)
    x = torch.from_numpy(np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in rgb]))
    x = (
        x.permute(0, 3, 1, 2).float() / 255 - torch.tensor(masks.IMAGENET_MEAN).view(1, 3, 1, 1)
    ) / torch.tensor(masks.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = torch.nn.functional.interpolate(
            model(x).logits, size=(48, 64), mode="bilinear", align_corners=False
        )
    np.testing.assert_array_equal(got, logits.argmax(1).numpy().astype(np.uint8))


def test_masks_refuse_jpeg_and_bad_value_maps(frames, tmp_path):
    with pytest.raises(SurgkitError, match="JPEG would corrupt"):
        masks.compute(frames, tmp_path, masks.ModelMasks(Threshold()), fmt="jpg", progress=False)
    with pytest.raises(SurgkitError, match="VALUE:CLASS"):
        masks.parse_values("255=1")
    assert masks.parse_values("255:1, 128:2") == {255: 1, 128: 2}
