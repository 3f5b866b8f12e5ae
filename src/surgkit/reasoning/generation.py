"""Fast answers from a local vision-language model: batched generation with the KV cache.

Used by evaluation, stage-4 chain sampling, the demo and ``bench/reasoning.py``. Records are sorted by
prompt length and generated ``batch_size`` at a time (left padding, ``use_cache=True``: each new token
costs one step over the cached keys/values instead of a pass over the whole sequence); a batch stops as
soon as every sequence has ended. Answers come back in record order, each an
:class:`surgkit.reasoning.endpoint.Answer` whose ``status`` is ``ok`` or ``length`` (no end token within
``max_new_tokens``: cut, scored as unparseable). Decoding keeps every non-padding token, so the
``<think>``/``<answer>`` tags survive whatever the tokenizer marks as special.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from surgkit.reasoning.endpoint import Answer
from surgkit.reasoning.records import Record
from surgkit.reasoning.scoring import BoxSettings


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """Decoding settings; ``num_return_sequences`` > 1 samples several answers per record."""

    max_new_tokens: int = 512
    batch_size: int = 16
    reasoning: bool = True
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    num_return_sequences: int = 1
    use_cache: bool = True

    def identity(self) -> dict:
        """The settings that change what is generated (for resume checks)."""
        d = dataclasses.asdict(self)
        d.pop("batch_size")
        d.pop("use_cache")
        return d


def _images(rec: Record, root, cache: dict) -> list:
    from PIL import Image

    from surgkit.reasoning.render import image_paths

    out = []
    for p in image_paths(rec, root):
        if p not in cache:
            with Image.open(p) as im:
                cache[p] = im.convert("RGB")
        out.append(cache[p])
    return out


def prompt_text(processor, rec: Record, box: BoxSettings, reasoning: bool) -> str:
    from surgkit.reasoning.render import prompt_messages

    return processor.apply_chat_template(
        prompt_messages(rec, box, reasoning), tokenize=False, add_generation_prompt=True
    )


def decode(tokenizer, ids: Sequence[int], eos_ids: set[int], pad_id: int | None) -> Answer:
    """Text of generated ids up to the first end token; ``length`` status when there is none."""
    out, ended = [], False
    for t in ids:
        t = int(t)
        if t in eos_ids:
            ended = True
            break
        if t != pad_id:
            out.append(t)
    text = tokenizer.decode(out, skip_special_tokens=False).strip()
    return Answer(text, "ok" if ended else "length", "" if ended else "no end token within max_new_tokens")


def generate_answers(
    model,
    processor,
    records: Sequence[Record],
    image_root,
    box: BoxSettings = BoxSettings(),
    settings: GenerationSettings = GenerationSettings(),
    on_batch: Callable[[list[Record], list[Answer]], None] | None = None,
    *,
    seed: Sequence[int] | None = None,
    shard: tuple[int, int] | None = None,
) -> list[Answer]:
    """Answers for ``records`` (``num_return_sequences`` per record, consecutive), in record order.

    ``seed``: sampling draws of batch ``b`` come from a generator seeded with ``(*seed, b)`` (the global
    RNG is left as it was), so a batch's answers depend only on its records and its index -- not on
    what ran before it nor on which process runs it. ``shard=(i, n)``: only batches ``b % n == i`` are
    generated (the others' answers are ``None``): with ``seed`` and the same model, ``n`` processes
    together produce exactly the answers of one process.
    """
    import torch

    tok = getattr(processor, "tokenizer", processor)
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}
    pad_id = tok.pad_token_id
    prompts = [prompt_text(processor, r, box, settings.reasoning) for r in records]
    order = sorted(range(len(records)), key=lambda k: len(prompts[k]))
    n = settings.num_return_sequences
    answers: list[Answer | None] = [None] * (len(records) * n)
    cache: dict = {}
    for b, i in enumerate(range(0, len(order), settings.batch_size)):
        if shard is not None and b % shard[1] != shard[0]:
            continue
        idx = order[i : i + settings.batch_size]
        batch = [records[k] for k in idx]
        inputs = processor(
            text=[prompts[k] for k in idx],
            images=[_images(r, image_root, cache) for r in batch],
            return_tensors="pt",
            padding=True,
        ).to(model.device)
        with torch.inference_mode(), _seeded(seed, b, model.device, settings.do_sample):
            out = model.generate(
                **inputs,
                max_new_tokens=settings.max_new_tokens,
                do_sample=settings.do_sample,
                temperature=settings.temperature if settings.do_sample else None,
                top_p=settings.top_p if settings.do_sample else None,
                top_k=None,
                num_return_sequences=n,
                use_cache=settings.use_cache,
            )
        new = out[:, inputs["input_ids"].shape[1] :].tolist()
        got = []
        for j, k in enumerate(idx):
            for s in range(n):
                ans = decode(tok, new[j * n + s], eos_ids, pad_id)
                answers[k * n + s] = ans
                got.append(ans)
        if on_batch is not None:
            on_batch(batch, got)
    return answers  # type: ignore[return-value]


def _seeded(seed: Sequence[int] | None, batch: int, device, sampling: bool):
    """A context in which torch's RNG (CPU and ``device``) is seeded with ``(*seed, batch)`` and restored
    after; a no-op without ``seed`` or without sampling."""
    import contextlib

    import numpy as np
    import torch

    if seed is None or not sampling:
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def ctx():
        device_ = torch.device(device)
        cuda = []
        if device_.type == "cuda":
            cuda = [torch.cuda.current_device() if device_.index is None else device_.index]
        with torch.random.fork_rng(devices=cuda):
            value = int(np.random.SeedSequence([*map(int, seed), batch]).generate_state(1)[0])
            torch.manual_seed(value)
            yield

    return ctx()


def local_identity(model_dir: str | Path) -> dict:
    """What names a local model folder (for resume checks): its path and a content fingerprint."""
    from surgkit.reasoning.vlm import model_fingerprint

    return {
        "kind": "model",
        "path": str(Path(model_dir).resolve()),
        "fingerprint": model_fingerprint(model_dir),
    }
