"""Round-trip table of SurgVISTA checkpoint conversions: max |Δ| per pair (weights and outputs), as JSON.

Uses the official golden fixtures (../shared/fixtures/surgvista): the official tiny model's state dict
and the official outputs. Each pair is converted with the surgkit CLI-level functions; weights are
compared tensor by tensor, outputs against the official code's numbers.

    python bench/video_interop.py            # prints JSON (bench/results/video_interop.json keeps a run)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

FIXTURES = (
    Path(os.environ.get("SURGKIT_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    / "fixtures"
    / "surgvista"
)
HEADS = dict(num_heads=4, decoder_num_heads=2, distill_num_heads=2)


def _max_diff(a: dict, b: dict) -> float:
    if set(a) != set(b):
        raise AssertionError(f"key sets differ: {sorted(set(a) ^ set(b))[:5]}")
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def _out_diff(x: torch.Tensor, y: torch.Tensor) -> float:
    return float((x.float() - y.float()).abs().max())


def run(tmp: Path) -> list[dict]:
    import argparse as ap_

    from surgkit.video.checkpoints import read_checkpoint
    from surgkit.video.convert import load_official, save_official, to_official_state
    from surgkit.video.hf import load_hf_folder, load_hf_videomae, save_hf_folder

    inp, out = (
        load_file(str(FIXTURES / "inputs.safetensors")),
        load_file(str(FIXTURES / "outputs.safetensors")),
    )
    official = load_file(str(FIXTURES / "encoder_official.safetensors"))
    ns = ap_.Namespace(model="pretrain_masked_video_student_base_patch16_224", input_size=32, num_frames=4)
    torch.save({"model": official, "epoch": 200, "args": ns}, tmp / "checkpoint-200.pth")
    rows = []

    def forward(model):
        with torch.no_grad():
            return model.eval()(inp["video"], inp["mask"], inp["teacher_features"])

    # official .pth (argparse.Namespace, --trust-pickle) → surgkit
    sk, _ = load_official(tmp / "checkpoint-200.pth", trust_pickle=True, **HEADS)
    res = forward(sk)
    rows.append({"pair": "official checkpoint-*.pth → surgkit", "weights": _max_diff(to_official_state(sk), official),
                 "outputs": max(_out_diff(res.x_vid, out["x_vid"]), _out_diff(res.x_img, out["x_img"]),
                                _out_diff(res.loss, out["loss_total"]))})  # fmt: skip
    # surgkit → official .pth
    save_official(sk, tmp / "back.pth")
    rows.append({"pair": "surgkit → official .pth",
                 "weights": _max_diff(torch.load(tmp / "back.pth", weights_only=True)["model"], official)})  # fmt: skip
    # surgkit folder round trip
    sk.save_pretrained(tmp / "sk")
    from surgkit.video.model import load_model

    folder = load_model(tmp / "sk")
    rows.append(
        {
            "pair": "surgkit → surgkit folder → surgkit",
            "weights": _max_diff(folder.state_dict(), sk.state_dict()),
        }
    )
    # surgkit → HF VideoMAEForPreTraining (+ both decoders) → surgkit
    save_hf_folder(sk, tmp / "hf")
    back = load_hf_folder(tmp / "hf")
    hf = load_hf_videomae(tmp / "hf")
    with torch.no_grad():
        hf_out = hf(inp["video"].permute(0, 2, 1, 3, 4), bool_masked_pos=inp["mask"])
    rows.append({"pair": "surgkit → HF VideoMAE folder → surgkit (both decoders)",
                 "weights": _max_diff(back.state_dict(), sk.state_dict()),
                 "outputs": max(_out_diff(forward(back).loss, out["loss_total"]), 0.0)})  # fmt: skip
    rows.append({"pair": "HF VideoMAEForPreTraining (load_hf_videomae) vs official",
                 "outputs": max(_out_diff(hf_out.logits, out["x_vid"]), _out_diff(hf_out.loss, out["loss_rec"]))})  # fmt: skip
    rows.append({"pair": "HF folder → official", "weights": _max_diff(to_official_state(back), official)})
    # DeepSpeed fp16 fine-tuned classifier → surgkit → DeepSpeed
    ft = load_file(str(FIXTURES / "finetune_official.safetensors"))
    ds_dir = tmp / "checkpoint-best"
    ds_dir.mkdir()
    torch.save({"module": {k: v.half() for k, v in ft.items()}, "buffer_names": [], "ds_version": "0.14.0",
                "epoch": 19}, ds_dir / "mp_rank_00_model_states.pt")  # fmt: skip
    cls, _ = load_official(ds_dir, trust_pickle=True, img_size=32, num_frames=4, num_heads=4)
    with torch.no_grad():
        logits = cls.eval()(inp["video"])
    rows.append({"pair": "DeepSpeed mp_rank_00 (fp16) → surgkit",
                 "weights": _max_diff(to_official_state(cls), {k: v.half().float() for k, v in ft.items()}),
                 "weights_vs_fp32_source": _max_diff(to_official_state(cls), ft),
                 "outputs": _out_diff(logits, out["finetune_logits"])})  # fmt: skip
    save_official(cls, tmp / "ds_back", layout="deepspeed")
    rows.append({"pair": "surgkit → DeepSpeed → surgkit",
                 "weights": _max_diff(read_checkpoint(tmp / "ds_back", trust_pickle=True).state, to_official_state(cls))})  # fmt: skip
    save_hf_folder(cls, tmp / "hf_cls")
    hf_cls = load_hf_videomae(tmp / "hf_cls")
    with torch.no_grad():
        rows.append({"pair": "surgkit classifier → HF VideoMAEForVideoClassification",
                     "weights": _max_diff(load_hf_folder(tmp / "hf_cls").state_dict(), cls.state_dict()),
                     "outputs": _out_diff(hf_cls(inp["video"].permute(0, 2, 1, 3, 4)).logits, logits)})  # fmt: skip
    return rows


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    with tempfile.TemporaryDirectory(prefix="surgkit-interop-") as tmp:
        rows = run(Path(tmp))
    print(json.dumps({"benchmark": "surgkit.video checkpoint round trips (max |Δ|)", "torch": torch.__version__,
                      "results": rows}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
