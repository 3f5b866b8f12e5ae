"""Same seed -> byte-identical annotation files and identical decoded frames; other seeds differ."""

from __future__ import annotations

import av
import numpy as np

from surgkit.synth import generate_world

VIDEO_SUFFIXES = {".mp4", ".avi"}


def _files(root):
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _frames(path):
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_same_seed_gives_identical_files_and_frames(tiny_world, tmp_path):
    root, _ = tiny_world
    again = tmp_path / "again"
    generate_world(again, preset="tiny", seed=0, progress=False)
    a, b = _files(root), _files(again)
    assert sorted(a) == sorted(b)
    videos = 0
    for rel, path in a.items():
        if path.suffix in VIDEO_SUFFIXES:
            np.testing.assert_array_equal(_frames(path), _frames(b[rel]), err_msg=rel)
            videos += 1
        else:
            assert path.read_bytes() == b[rel].read_bytes(), rel
    assert videos == 2 + 6  # Cholec80 mp4s and JIGSAWS avis


def test_other_seed_gives_other_annotations(tiny_world, tmp_path):
    root, _ = tiny_world
    other = tmp_path / "other"
    generate_world(other, preset="tiny", seed=1, layouts="cholec80", videos=1, progress=False)
    rel = "cholec80/phase_annotations/video01-phase.txt"
    assert (other / rel).read_text() != (root / rel).read_text()
    assert not (other / "jigsaws").exists()  # only the requested layout is written


def test_files_do_not_depend_on_the_number_of_worker_processes(tiny_world, tmp_path):
    """The session world is written by 2 worker processes; one process writes the same bytes."""
    root, manifest = tiny_world
    one = tmp_path / "one"
    again = generate_world(one, preset="tiny", seed=0, progress=False, workers=1)
    a, b = _files(root), _files(one)
    assert sorted(a) == sorted(b) and len(a) > 100
    for rel, path in a.items():  # videos too: the encoders are deterministic
        assert path.read_bytes() == b[rel].read_bytes(), rel
    assert {k: v for k, v in again.items() if k != "generation_seconds"} == {
        k: v for k, v in manifest.items() if k != "generation_seconds"
    }


def test_merged_dataset_files_with_several_videos_per_split(tmp_path):
    """3 videos (2 in train): Endoscapes image/box ids continue across videos merged from workers."""
    runs = {}
    for workers in (1, 2):
        out = tmp_path / str(workers)
        generate_world(out, preset="tiny", videos=3, layouts="endoscapes,boxes,vlm,copesd,vqla",
                       progress=False, workers=workers)  # fmt: skip
        runs[workers] = {rel: p.read_bytes() for rel, p in _files(out).items()}
    assert runs[1] == runs[2]
    import json

    train = json.loads(runs[2]["endoscapes/train/annotation_coco_vid.json"])
    ids = [im["id"] for im in train["images"]]
    assert ids == list(range(1, len(ids) + 1)) and {im["video_id"] for im in train["images"]} == {1, 2}
