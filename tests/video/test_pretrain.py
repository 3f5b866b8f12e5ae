"""Pretraining: masking, clip sampling, resumption, multi-process equivalence, leakage guard, bad input."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from surgkit.errors import LeakageError, SurgkitError
from surgkit.video.clips import even_clip_steps, online_clip_steps
from surgkit.video.masking import batch_tube_masks, sample_generator, tube_mask
from surgkit.video.pretrain import PretrainSettings, pretrain


def make_frame_folders(root: Path, videos: int = 3, frames: int = 12, size=(48, 40), seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for v in range(videos):
        d = root / f"video{v:02d}"
        d.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, (6, 6, 3)).astype(np.uint8)
        for f in range(frames):
            img = cv2.resize(np.roll(base, f % 6, axis=1), size, interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(str(d / f"{f:05d}.png"), img)
    return root


@pytest.fixture(scope="module")
def frame_data(tmp_path_factory):
    return make_frame_folders(tmp_path_factory.mktemp("pretrain_data"))


def _settings(data: Path, run_dir: Path, **kw) -> PretrainSettings:
    base = dict(
        data=[str(data)], run_dir=str(run_dir), model="tiny",
        model_overrides=dict(img_size=32, depth=1, drop_path_rate=0.0), num_frames=4, interval=2,
        batch_size=2, steps=4, warmup_steps=1, save_every=100, teacher="random-vit", device="cpu", torch_threads=1,
    )  # fmt: skip
    base.update(kw)
    return PretrainSettings.from_dict(base)


# ------------------------------------------------------------------------------------------ masking


def test_tube_mask_counts_identity_and_seed():
    grid = (8, 14, 14)
    m = tube_mask(grid, 0.85, torch.Generator().manual_seed(0))
    assert m.dtype == torch.bool and m.numel() == 1568
    assert int(m.sum()) == 8 * 166  # int(0.85*196) = 166 per slice, as the official generator
    slices = m.view(8, 196)
    assert all(torch.equal(slices[0], slices[t]) for t in range(8))  # a tube: same pattern in time
    b = batch_tube_masks(4, grid, 0.85, torch.Generator().manual_seed(1))
    assert (b.sum(1) == 1328).all() and not torch.equal(b[0], b[1])
    again = batch_tube_masks(4, grid, 0.85, torch.Generator().manual_seed(1))
    assert torch.equal(b, again)
    g1, g2 = sample_generator(0, 5, 0), sample_generator(0, 6, 0)
    assert not torch.equal(tube_mask(grid, 0.85, g1), tube_mask(grid, 0.85, g2))


def test_fixture_mask_has_official_structure(golden):
    inp, _ = golden
    mask = inp["mask"]  # made by the official generator: 12 of 16 per slice, tubes
    assert (mask.sum(1) == 24).all()
    assert torch.equal(mask[:, :16], mask[:, 16:])
    ours = tube_mask((2, 4, 4), 0.75, torch.Generator().manual_seed(0))
    assert int(ours.sum()) == 24 and torch.equal(ours[:16], ours[16:])


def test_online_clip_ends_at_anchor_and_repeats_earliest():
    assert online_clip_steps(100) == list(range(40, 101, 4))
    # anchor 5, stride 4: 5 → 1, then 1 repeats (a step below 0 is not taken)
    assert online_clip_steps(5) == [1] * 15 + [5]
    assert online_clip_steps(0, 4, 2) == [0, 0, 0, 0]
    assert even_clip_steps(3, 5) == [0, 1, 2, 2, 2]  # short clip padded with its last frame
    assert even_clip_steps(31, 4) == [0, 10, 20, 30]


# ------------------------------------------------------------------------------------- pretraining


def test_resume_equals_uninterrupted(tmp_path, frame_data):
    full = pretrain(_settings(frame_data, tmp_path / "full", model_overrides=dict(img_size=32, depth=1)),
                    progress=False)  # drop path 0.1: the restored RNG state matters  # fmt: skip
    s = _settings(frame_data, tmp_path / "cut", save_every=2, model_overrides=dict(img_size=32, depth=1))
    part = pretrain(s, max_steps=2, progress=False)
    assert part["steps_done"] == 2
    resumed = pretrain(s, progress=False)  # picks up checkpoint-2
    assert [h["step"] for h in resumed["history"]] == [1, 2, 3, 4]
    for a, b in zip(full["history"], resumed["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6, abs=1e-7)
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)
    from safetensors.torch import load_file

    wa = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    wb = load_file(str(tmp_path / "cut" / "model" / "model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=1e-5)
    assert full["history"][0]["loss"] > 0 and full["history"][0]["loss_distill"] > 0


def test_two_processes_equal_one_process(tmp_path, frame_data):
    """2 CPU processes (gloo, torch.distributed.run) × batch 2 == 1 process × batch 4."""
    one = pretrain(_settings(frame_data, tmp_path / "one", batch_size=4, steps=3), progress=False)
    cfg = dataclasses.asdict(_settings(frame_data, tmp_path / "two", batch_size=2, steps=3))
    (tmp_path / "s.json").write_text(json.dumps(cfg))
    script = tmp_path / "run.py"
    script.write_text(
        "import json, sys\nfrom surgkit.video.pretrain import PretrainSettings, pretrain\n"
        "pretrain(PretrainSettings.from_dict(json.load(open(sys.argv[1]))), progress=False)\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port = str(29500 + os.getpid() % 1000)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           str(script), str(tmp_path / "s.json")]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert two["processes"] == 2 and two["global_batch"] == one["global_batch"] == 4
    for a, b in zip(one["history"], two["history"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5, abs=1e-6)


def test_leakage_guard_finds_renamed_resized_copy(tmp_path, frame_data):
    test_root = tmp_path / "downstream_test"
    src = frame_data / "video01"
    dst = test_root / "case_A"
    dst.mkdir(parents=True)
    for f in sorted(src.glob("*.png")):  # the same surgery, renamed, resized and re-encoded as JPEG
        img = cv2.resize(cv2.imread(str(f)), (64, 52))
        cv2.imwrite(str(dst / (f.stem + ".jpg")), img, [cv2.IMWRITE_JPEG_QUALITY, 70])
    make_frame_folders(tmp_path / "other_src", videos=1, seed=99)
    (tmp_path / "other_src" / "video00").rename(tmp_path / "case_B")
    (test_root / "other").mkdir()
    (tmp_path / "case_B").rename(test_root / "other" / "case_B")
    s = _settings(frame_data, tmp_path / "leak", test_data=[str(test_root)], steps=1)
    with pytest.raises(LeakageError, match="video01.*case_A.*content"):
        pretrain(s, progress=False)
    clean = _settings(frame_data, tmp_path / "clean", test_data=[str(test_root / "other")], steps=1)
    summary = pretrain(clean, progress=False)  # different videos are not flagged
    assert summary["leakage"]["checked"] and summary["leakage"]["pairs"] == []


def test_bad_inputs(tmp_path, frame_data, fixture_cfgs):
    from surgkit.video.model import SurgVistaForPretraining

    model = SurgVistaForPretraining(fixture_cfgs[0])
    with pytest.raises(SurgkitError, match="expected B×C×T×H×W = B×3×4×32×32"):
        model(torch.zeros(1, 3, 4, 48, 48), torch.zeros(1, 32, dtype=torch.bool))
    uneven = torch.zeros(2, 32, dtype=torch.bool)
    uneven[0, :3] = True
    with pytest.raises(SurgkitError, match="same number of tokens"):
        model(torch.zeros(2, 3, 4, 32, 32), uneven)
    broken = tmp_path / "broken" / "vid"
    broken.mkdir(parents=True)
    for f in sorted((frame_data / "video00").glob("*.png"))[:4]:
        shutil.copy(f, broken / f.name)
    (broken / "00002.png").write_bytes(b"not a png")  # a corrupt frame: the run stops and names it
    from surgkit.errors import DataFormatError

    with pytest.raises(DataFormatError, match="00002.png"):
        pretrain(_settings(broken.parent, tmp_path / "r", steps=2, batch_size=4, interval=1), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(SurgkitError, match="no video files"):
        pretrain(_settings(tmp_path / "empty", tmp_path / "r2"), progress=False)


def test_dataset_mixing_follows_weights_and_is_deterministic():
    from surgkit.video.clips import ClipSource
    from surgkit.video.pretrain import plan_draws

    sources = [ClipSource(f"v{i}", Path(f"v{i}"), 1.0, n) for i, n in enumerate((100, 300, 50))]
    groups = [[0, 1], [2]]
    keys = plan_draws(sources, groups, [3.0, 1.0], seed=0, draws=range(4000))
    from_first = np.mean([k[0] in (0, 1) for k in keys])
    assert abs(from_first - 0.75) < 0.03  # dataset chosen by weight
    within = [k[0] for k in keys if k[0] in (0, 1)]
    assert abs(np.mean(np.asarray(within) == 1) - 0.75) < 0.04  # video ∝ its length inside a dataset
    assert all(0 <= k[1] < sources[k[0]].num_steps for k in keys)
    assert keys[10:20] == plan_draws(sources, groups, [3.0, 1.0], seed=0, draws=range(10, 20))  # by draw id


def test_cli_pretrain_with_two_weighted_folders(tmp_path, frame_data, run_cli):
    other = make_frame_folders(tmp_path / "second", videos=1, seed=5)
    cfg = dataclasses.asdict(_settings(frame_data, tmp_path / "unused", steps=2))
    cfg.pop("data")
    cfg.pop("run_dir")
    (tmp_path / "pre.json").write_text(json.dumps(cfg))
    code, out, err = run_cli("video", "pretrain", "--data", f"{frame_data}:2", "--data", f"{other}:1",
                             "--config", tmp_path / "pre.json", "--run-dir", tmp_path / "run")  # fmt: skip
    assert code == 0, err
    settings = json.loads((tmp_path / "run" / "settings.json").read_text())
    assert [d["weight"] for d in settings["data"]] == [2.0, 1.0]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["videos"] == 4 and summary["steps_done"] == 2
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()
    code, _, err = run_cli("video", "pretrain", "--config", tmp_path / "missing.json")
    assert code == 2 and "missing.json" in err


def test_video_files_are_cached_as_1fps_frames_and_bad_videos_left_out(tmp_path):
    from .native_data import make_cholec80

    root = make_cholec80(tmp_path / "c80", numbers=(1, 2), seconds=6)
    (root / "videos" / "video03.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    summary = pretrain(_settings(root / "videos", tmp_path / "run", steps=1), progress=False)
    frames = sorted((tmp_path / "run" / "frames_1fps" / "46px-png" / "video01").glob("*.png"))
    assert len(frames) == 6  # 6 s of 25-fps video at 1 fps
    assert cv2.imread(str(frames[0])).shape[:2] == (46, 46)  # short side img_size·320/224 for img_size 32
    assert summary["videos"] == 2  # the undecodable video03 is left out, the others go on


def test_hf_teacher_gives_last_block_patch_tokens_of_frame_2t(tmp_path):
    from transformers import ViTConfig, ViTModel

    from surgkit.video.teacher import load_teacher, teacher_tokens

    torch.manual_seed(0)
    vit = ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=24, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=48), add_pooling_layer=False).eval()  # fmt: skip
    vit.save_pretrained(tmp_path / "vit")
    teacher = load_teacher(str(tmp_path / "vit"))
    video = torch.randn(2, 3, 4, 32, 32)
    tokens = teacher_tokens(teacher, video, tubelet=2, grid_hw=(4, 4))
    assert tokens.shape == (2, 2 * 16, 24)  # B × (T/2 · 16 patches) × width
    with torch.no_grad():
        out = vit(
            pixel_values=video[1, :, 2][None], output_hidden_states=True
        )  # sample 1, tubelet 1 → frame 2
    torch.testing.assert_close(
        tokens[1, 16:], out.hidden_states[-1][0, 1:]
    )  # class token dropped, before the LN
    assert not torch.allclose(tokens[1, 16:], out.last_hidden_state[0, 1:], atol=1e-3)
    assert not any(p.requires_grad for p in teacher.parameters())


def test_teacher_cache_equals_on_the_fly_teacher(tmp_path, frame_data):
    fly = pretrain(_settings(frame_data, tmp_path / "fly", augment=False, steps=2), progress=False)
    cached = pretrain(_settings(frame_data, tmp_path / "cache", augment=False, steps=2, teacher_cache="auto"),
                      progress=False)  # fmt: skip
    files = sorted((tmp_path / "cache" / "teacher_cache").glob("*.safetensors"))
    assert len(files) == 3
    for a, b in zip(fly["history"], cached["history"], strict=True):  # float16 storage of the tokens
        assert a["loss_distill"] == pytest.approx(b["loss_distill"], rel=2e-3)
        assert a["loss_rec"] == pytest.approx(b["loss_rec"], rel=1e-3)
    with pytest.raises(SurgkitError, match="augment=false"):
        pretrain(_settings(frame_data, tmp_path / "bad", teacher_cache="auto"), progress=False)


# ------------------------------------------------------------------------- recipe details (spec §6)


def test_weight_decay_groups_follow_the_official_grouping():
    """No decay exactly for the official ndim-1 / '.bias' / exact-name parameters; mask tokens ARE decayed."""
    from surgkit.video.config import preset
    from surgkit.video.model import SurgVistaForPretraining
    from surgkit.video.pretrain import param_groups

    with torch.device("meta"):
        model = SurgVistaForPretraining(preset("base"))
    groups = param_groups(model, 0.05)
    wd = {id(p): g["weight_decay"] for g in groups for p in g["params"]}

    def official_name(name: str) -> str:  # surgkit → official key (spec §7)
        name = name.removeprefix("encoder.")
        for tag in ("vid", "img"):
            name = name.replace(f"decoder_{tag}.down.", f"down_{tag}.")
            name = name.replace(f"decoder_{tag}.mask_token", f"mask_token_{tag}")
        return name

    named = dict(model.named_parameters())
    assert len(wd) == len(named)  # every trainable parameter is in exactly one group
    for name, p in named.items():
        off = official_name(name)
        no_decay = p.ndim == 1 or off.endswith(".bias") or off in ("pos_embed", "cls_token", "mask_token")
        assert wd[id(p)] == (0.0 if no_decay else 0.05), name
    assert wd[id(named["decoder_vid.mask_token"])] == 0.05  # the official quirk (3-D, not an exact name)
    # decayed by hand: encoder 1,179,648 (cube conv) + 12 × 7,077,888; video decoder 294,912 + 384 + 4 × 1,769,472
    # + 589,824; image decoder 294,912 + 384 + 2 × 1,769,472 + 393,216
    assert sum(p.numel() for p in named.values() if wd[id(p)] == 0.05) == 98_304_768


def test_schedule_is_the_official_cosine_scheduler(tmp_path, frame_data):
    from surgkit.video.schedule import cosine_schedule

    # np.linspace(0, base, warmup) then final + ½(base − final)(1 + cos(π i / (total − warmup)))
    lrs = cosine_schedule(1.0, 0.1, total=7, warmup=4)
    expected = [0.0, 1 / 3, 2 / 3, 1.0] + [0.1 + 0.45 * (1 + np.cos(np.pi * i / 3)) for i in range(3)]
    assert lrs == pytest.approx(expected, abs=1e-12)
    run = pretrain(_settings(frame_data, tmp_path / "r", steps=6, warmup_steps=3, base_lr=2.56e-2, base_min_lr=2.56e-3,
                             batch_size=2, augment=False), progress=False)  # fmt: skip
    lr, min_lr = 2.56e-2 * 2 / 256, 2.56e-3 * 2 / 256  # linear scaling by global_batch / 256
    # history[k]["lr"] is the lr update k used: warm-up from exactly 0, half-way at the second of three steps
    assert [h["lr"] for h in run["history"]] == pytest.approx(cosine_schedule(lr, min_lr, 6, 3), rel=1e-12)
    assert [h["lr"] for h in run["history"][:3]] == pytest.approx([0.0, lr / 2, lr], rel=1e-12)


def test_uniform_sampling_visits_every_frame_once_per_epoch():
    from surgkit.video.clips import ClipSource
    from surgkit.video.pretrain import UniformPlan

    sources = [ClipSource(f"v{i}", Path(f"v{i}"), 1.0, n) for i, n in enumerate((100, 300, 50))]
    plan = UniformPlan(sources, seed=0)
    epoch = plan.keys(range(450))
    assert sorted((s, a) for s, a, _ in epoch) == [
        (s, a) for s, n in enumerate((100, 300, 50)) for a in range(n)
    ]
    second = plan.keys(range(450, 900))
    assert [k[:2] for k in second] != [k[:2] for k in epoch]  # a new order every epoch
    assert (
        UniformPlan(sources, seed=0).keys(range(460, 470)) == second[10:20]
    )  # a function of the draw id only
    first_dataset = np.mean([k[0] == 1 for k in UniformPlan(sources, 1).keys(range(4500))])
    assert first_dataset == pytest.approx(300 / 450)  # datasets in proportion to their frames, not balanced


def test_settings_refusals(tmp_path, frame_data):
    with pytest.raises(SurgkitError, match="no teacher given.*--teacher random"):
        pretrain(_settings(frame_data, tmp_path / "a", teacher=None), progress=False)
    s = _settings(frame_data, tmp_path / "b")
    s.data[0].weight = 2.0
    with pytest.raises(SurgkitError, match="sampling 'weighted'"):
        pretrain(s, progress=False)
    with pytest.raises(SurgkitError, match="unknown SurgVistaConfig field.*drop_rate"):
        pretrain(_settings(frame_data, tmp_path / "c", model_overrides={"drop_rate": 0.1}), progress=False)
    run = pretrain(_settings(frame_data, tmp_path / "d", steps=1,
                             model_overrides=dict(img_size=32, depth=1, drop_path_rate=0.3)), progress=False)  # fmt: skip
    assert json.loads((tmp_path / "d" / "model" / "config.json").read_text())["drop_path_rate"] == 0.3
    assert run["steps_done"] == 1
