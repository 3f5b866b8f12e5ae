"""Feature store: layout, round trip, T agreement, resume merge, refusal to mix settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.prep.store import FORMAT, FeatureStore, FeatureStoreWriter


def _writer(root, **kw):
    args = dict(backbone="tiny-videomae", fps=10.0, segment_frames=32)
    args.update(kw)
    return FeatureStoreWriter(root, **args)


def test_round_trip_and_layout(tmp_path):
    rng = np.random.default_rng(0)
    rgb, flow = rng.normal(size=(3, 8)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    with _writer(tmp_path) as w:
        w.write("Suturing_B001", "rgb", rgb, num_frames=70, source="a.avi", valid=[1, 1, 0])
        w.write("Suturing_B001", "flow", flow, num_frames=70)
    assert (tmp_path / "rgb" / "Suturing_B001.safetensors").is_file()
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["format"] == FORMAT and index["stride_frames"] == 32
    assert index["feature_dim"] == {"rgb": 8, "flow": 4}
    assert index["videos"]["Suturing_B001"] == {
        "num_frames": 70,
        "num_segments": 3,
        "source": "a.avi",
        "modalities": ["rgb", "flow"],
    }
    store = FeatureStore(tmp_path)
    assert store.video_ids == ["Suturing_B001"] and store.modalities == ["rgb", "flow"]
    got = store.load_all("Suturing_B001", ["rgb", "flow"])
    np.testing.assert_array_equal(got["rgb"], rgb)
    np.testing.assert_array_equal(got["flow"], flow)
    assert got["rgb"].dtype == np.float32
    assert store.load_valid("Suturing_B001", "rgb").tolist() == [True, True, False]
    assert store.load_valid("Suturing_B001", "flow").tolist() == [True, True, True]


def test_mismatched_T_is_refused_on_write_and_on_read(tmp_path):
    with _writer(tmp_path) as w:
        w.write("v1", "rgb", np.zeros((3, 4)), num_frames=96)
        with pytest.raises(SurgkitError, match="3 in its other modalities"):
            w.write("v1", "flow", np.zeros((2, 4)), num_frames=96)
        w.write("v1", "flow", np.zeros((3, 4)), num_frames=96)
    # corrupt the store behind the writer's back: the reader names video and file
    from safetensors.numpy import save_file

    save_file({"features": np.zeros((2, 4), np.float32)}, str(tmp_path / "flow" / "v1.safetensors"))
    with pytest.raises(DataFormatError, match=r"v1.*2 segments in file, index says 3") as e:
        FeatureStore(tmp_path).load_all("v1")
    assert e.value.path.name == "v1.safetensors"


def test_resume_merges_and_refuses_other_settings(tmp_path):
    with _writer(tmp_path) as w:
        w.write("a", "rgb", np.ones((2, 4)), num_frames=64)
    with _writer(tmp_path) as w:
        assert w.has("a", "rgb") and not w.has("b", "rgb")
        w.write("b", "rgb", np.ones((1, 4)), num_frames=20)
    assert FeatureStore(tmp_path).video_ids == ["a", "b"]
    with pytest.raises(SurgkitError, match="segment_frames: store has 32, now 16"):
        _writer(tmp_path, segment_frames=16)


def test_bad_index_and_ids(tmp_path):
    with pytest.raises(SurgkitError, match="no feature index"):
        FeatureStore(tmp_path)
    (tmp_path / "index.json").write_text('{"format": "other"}')
    with pytest.raises(DataFormatError, match="not a surgkit-features/1 index"):
        FeatureStore(tmp_path)
    (tmp_path / "index.json").unlink()
    with _writer(tmp_path) as w, pytest.raises(SurgkitError, match="invalid video id"):
        w.write("../evil", "rgb", np.zeros((1, 2)), num_frames=1)
    with pytest.raises(SurgkitError, match="unknown video"):
        FeatureStore(tmp_path).info("nope")
