"""Loading, saving and configuring vision-language models for the reasoning pipeline.

Any HF VLM folder of the Qwen2-VL family (Qwen2-VL, Qwen2.5-VL, and surgkit's tiny models of
:mod:`surgkit.reasoning.tiny_vlm`) is loaded with :func:`load_vlm`. Two things are checked here
because getting them wrong silently ruins training:

- **Box frames** (:func:`bind_processor`): the processor's resize (min/max pixels, patch x merge
  factor) and the :class:`BoxSettings` that read and write boxes must agree. Explicit pixel bounds in
  the settings are set on the processor; otherwise the settings take the processor's. The resize of
  every distinct image size is then checked against a real processor call (``image_grid_thw`` x patch
  size), so the ``input`` frame (Qwen2.5-VL native pixels) is the frame the model actually sees.
- **Tags survive decoding** (:func:`check_tags_survive`): TRL decodes GRPO completions with
  ``skip_special_tokens=True``; a tokenizer that marks ``<think>``/``<answer>`` as special loses them
  and every reward is 0. Such a tokenizer is refused with the token named.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError
from surgkit.reasoning.scoring import BoxSettings

MARKER = "surgkit_vlm.json"
TAGS = ("<think>", "</think>", "<answer>", "</answer>")
PROCESSOR_KINDS = ("image-only-qwen2-vl", "image-only-qwen2.5-vl")


def image_only_processor_class(kind: str = "image-only-qwen2-vl"):
    """``Qwen2VLProcessor`` / ``Qwen2_5_VLProcessor`` subclass without the video processor slot (in
    transformers 5 it imports torchvision, which the CPU torch wheel cannot sit next to)."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor
    from transformers.processing_utils import ProcessorMixin

    if kind not in PROCESSOR_KINDS:
        raise SurgkitError(f"unknown processor kind '{kind}' (choose from {', '.join(PROCESSOR_KINDS)})")
    base = Qwen2VLProcessor if kind == "image-only-qwen2-vl" else Qwen2_5_VLProcessor

    class ImageOnlyProcessor(base):
        surgkit_kind = kind

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token, self.video_token = "<|image_pad|>", "<|video_pad|>"
            self.image_token_id = tokenizer.convert_tokens_to_ids(self.image_token)
            self.video_token_id = tokenizer.convert_tokens_to_ids(self.video_token)
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    ImageOnlyProcessor.__name__ = "ImageOnly" + base.__name__
    return ImageOnlyProcessor


# ------------------------------------------------------------------------------------- folders
def save_vlm(
    model, processor, out_dir: str | Path, meta: dict[str, Any] | None = None, state_dict: Any = None
) -> Path:
    """Save model (safetensors) + processor; write the marker that says how to reload the processor.

    ``state_dict``: the full weights gathered from a sharded (ZeRO-3 / FSDP) run."""
    from surgkit.utils.io import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True, **({"state_dict": state_dict} if state_dict else {}))
    processor.save_pretrained(out)
    kind = getattr(processor, "surgkit_kind", "auto")
    write_json(out / MARKER, {**(meta or {}), "processor": kind})
    return out


def folder_meta(path: str | Path) -> dict[str, Any]:
    marker = Path(path) / MARKER
    return json.loads(marker.read_text()) if marker.is_file() else {}


def load_processor(path: str | Path):
    """The processor saved in ``path`` (the image-only subclass for surgkit's tiny models)."""
    kind = folder_meta(path).get("processor", "auto")
    if kind in PROCESSOR_KINDS:
        proc = image_only_processor_class(kind).from_pretrained(path)
    else:
        from transformers import AutoProcessor

        proc = AutoProcessor.from_pretrained(path)
    tok = getattr(proc, "tokenizer", proc)
    tok.padding_side = "left"
    return proc


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when available else 'cpu'; other values unchanged."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


DTYPES = ("auto", "float32", "bfloat16", "float16")


def load_vlm(path: str | Path, device: str = "cpu", dtype: str = "auto", box: BoxSettings | None = None):
    """(model, processor) of an HF vision-language model folder (or hub id when online).

    With ``box`` the processor is bound to it (:func:`bind_processor`); the bound settings are
    available as ``processor.surgkit_box``.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    import surgkit.reasoning.tiny_vlm  # noqa: F401  (registers surgkit's tiny model types)

    if not (Path(path).is_dir() or "/" in str(path)):
        raise SurgkitError(f"{path}: not a model folder")
    if dtype not in DTYPES:
        raise SurgkitError(f"unknown dtype '{dtype}' (choose from {', '.join(DTYPES)})")
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    adapter = Path(path) / "adapter_config.json"
    if adapter.is_file():  # a LoRA stage output: its base model with the adapter merged in memory
        from peft import PeftModel

        base_path = json.loads(adapter.read_text()).get("base_model_name_or_path")
        if not base_path or not (Path(base_path).is_dir() or "/" in base_path):
            raise SurgkitError(f"{path}: adapter without a loadable base model ({base_path!r})")
        base, _ = load_vlm(base_path, device="cpu", dtype=dtype)
        model = PeftModel.from_pretrained(base, path).merge_and_unload().to(resolve_device(device))
    else:
        model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch_dtype).to(
            resolve_device(device)
        )
    processor = load_processor(path)
    if box is not None:
        processor.surgkit_box = bind_processor(processor, box)
    return model, processor


def model_fingerprint(path: str | Path, chunks: int = 16, chunk_bytes: int = 1 << 16) -> str:
    """A content fingerprint of a model folder: sha256 over its config files and, per weight file, its
    size and ``chunks`` evenly spaced 64 KiB samples (fine-tunes differ everywhere; a 15 GB 7B model is
    fingerprinted in milliseconds). Used to key resumable evaluations by the model that answered."""
    root = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in root.iterdir() if p.is_file()) if root.is_dir() else []
    for p in files:
        if p.suffix in (".json", ".txt", ".jinja") and p.name != MARKER:
            h.update(p.name.encode() + p.read_bytes())
        elif p.suffix in (".safetensors", ".bin", ".pt"):
            size = p.stat().st_size
            h.update(f"{p.name}:{size}".encode())
            with open(p, "rb") as fh:
                for k in range(chunks):
                    fh.seek(max(0, (size - chunk_bytes) * k // max(1, chunks - 1)))
                    h.update(fh.read(chunk_bytes))
    if not files:
        h.update(str(path).encode())  # a hub id
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------- box frames
def image_processor_of(processor):
    return getattr(processor, "image_processor", None)


def processor_pixels(processor) -> tuple[int, int, int] | None:
    """(min_pixels, max_pixels, factor) of a Qwen2-VL-style image processor, or None for others."""
    ip = image_processor_of(processor)
    size = getattr(ip, "size", None)
    if ip is None or size is None or not hasattr(ip, "merge_size"):
        return None
    get = size.get if isinstance(size, dict) else lambda k: getattr(size, k, None)
    lo, hi = get("shortest_edge"), get("longest_edge")
    if lo is None or hi is None:
        return None
    return int(lo), int(hi), int(ip.patch_size) * int(ip.merge_size)


def bind_processor(processor, box: BoxSettings, sizes: Iterable[tuple[int, int]] = ()) -> BoxSettings:
    """Make the processor's resize and ``box`` agree; returns the settings to read/write boxes with.

    Explicit ``box.min_pixels``/``max_pixels`` are set on the processor; missing ones are taken from it.
    Then each (width, height) of ``sizes`` is checked against a real processor call.
    """
    import dataclasses

    px = processor_pixels(processor)
    if px is None:
        if box.frame == "input":
            raise SurgkitError("box frame 'input' needs a Qwen2-VL-style image processor (min/max pixels)")
        return box
    lo, hi, factor = px
    lo = box.min_pixels if box.min_pixels is not None else lo
    hi = box.max_pixels if box.max_pixels is not None else hi
    if lo > hi:
        raise SurgkitError(f"min_pixels {lo} > max_pixels {hi}")
    image_processor_of(processor).size = {"shortest_edge": lo, "longest_edge": hi}
    bound = dataclasses.replace(box, min_pixels=lo, max_pixels=hi, factor=factor)
    for w, h in set(sizes):
        check_resize(processor, bound, w, h)
    return bound


def real_input_size(processor, width: int, height: int) -> tuple[int, int]:
    """(w, h) of the model input the processor makes from a ``width`` x ``height`` image."""
    import numpy as np
    from PIL import Image

    ip = image_processor_of(processor)
    img = Image.fromarray(np.zeros((height, width, 3), np.uint8))
    grid = ip(images=[img], return_tensors="pt")["image_grid_thw"][0].tolist()
    return int(grid[2]) * int(ip.patch_size), int(grid[1]) * int(ip.patch_size)


def check_resize(processor, box: BoxSettings, width: int, height: int) -> None:
    """Refuse when the boxes' model-input frame differs from the processor's real resize."""
    from surgkit.reasoning.boxes import qwen25_input_size

    real = real_input_size(processor, width, height)
    ours = qwen25_input_size(width, height, box.factor, box.resolved_min, box.resolved_max)
    if real != ours:
        raise SurgkitError(
            f"a {width}x{height} image becomes {real[0]}x{real[1]} in the processor but "
            f"{ours[0]}x{ours[1]} in the box frame (min/max pixels {box.resolved_min}/{box.resolved_max})"
        )


def check_tags_survive(processor) -> None:
    """Refuse a tokenizer that drops a reasoning tag when decoding with ``skip_special_tokens=True``."""
    tok = getattr(processor, "tokenizer", processor)
    text = "<think>Level 1: a</think><answer>b</answer>"
    back = tok.decode(tok(text, add_special_tokens=False)["input_ids"], skip_special_tokens=True)
    lost = [t for t in TAGS if t not in back]
    if lost:
        raise SurgkitError(
            f"the tokenizer marks {', '.join(lost)} as special tokens: GRPO decodes completions with "
            "skip_special_tokens=True, the tags vanish and every reward is 0; register them as normal "
            "tokens (surgkit's tiny models do) or rebuild the model with `surgkit reason tiny-model`"
        )


def generate(
    model, processor, records, image_root, box_settings=None, max_new_tokens: int = 256, **kw
) -> list[str]:
    """Texts of :func:`surgkit.reasoning.generation.generate_answers` (kept for callers of the old API)."""
    from surgkit.reasoning.generation import GenerationSettings, generate_answers

    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=max(1, len(records)), **kw)
    answers = generate_answers(model, processor, records, image_root, box_settings or BoxSettings(), settings)
    return [a.text for a in answers]
