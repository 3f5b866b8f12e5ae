"""Answer generators for evaluation: a local HF VLM folder, an OpenAI-compatible HTTP endpoint, or a
predictions JSONL file; and :func:`run_eval`, which writes predictions (resumable) and metrics.

An endpoint is called with the same system prompt and question as the local models, the image sent as
a base64 PNG data URL (``/v1/chat/completions`` schema). Timeouts, HTTP errors and responses without
``choices[0].message.content`` raise a one-line :class:`SurgkitError` naming the record; the answers
obtained so far are saved first, so the next run resumes after them.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError
from surgkit.reasoning.records import Record
from surgkit.reasoning.render import image_paths, question_text, system_prompt
from surgkit.reasoning.scoring import BoxSettings
from surgkit.utils.runinfo import guarded_run

Generator = Callable[[list[Record]], list[str]]


def hf_generator(
    model_dir: str | Path,
    image_root,
    box: BoxSettings = BoxSettings(),
    device: str = "auto",
    max_new_tokens: int = 512,
    reasoning: bool = True,
) -> Generator:
    """Greedy answers of a local HF vision-language model folder."""
    from surgkit.reasoning.vlm import generate, load_vlm

    model, processor = load_vlm(model_dir, device=device)
    model.eval()

    def gen(batch: list[Record]) -> list[str]:
        return generate(model, processor, batch, image_root, box, max_new_tokens, reasoning)

    return gen


def _chat_url(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/chat/completions") else f"{url}/chat/completions"


def endpoint_generator(
    url: str,
    model: str,
    image_root,
    box: BoxSettings = BoxSettings(),
    timeout: float = 60.0,
    api_key_env: str = "OPENAI_API_KEY",
    max_tokens: int = 1024,
    reasoning: bool = True,
) -> Generator:
    """Answers from an OpenAI-compatible endpoint (vLLM, a hosted API, …), one request per record."""
    endpoint = _chat_url(url)
    key = os.environ.get(api_key_env, "")

    def ask(rec: Record) -> str:
        content: list[dict[str, Any]] = []
        for p in image_paths(rec, image_root):
            data = base64.b64encode(Path(p).read_bytes()).decode()
            mime = "image/png" if p.lower().endswith(".png") else "image/jpeg"
            content.append({"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}})
        content.append({"type": "text", "text": question_text(rec)})
        body = {
            "model": model,
            "messages": [
                {"role": "system", "content": system_prompt(box, reasoning)},
                {"role": "user", "content": content},
            ],
            "max_tokens": max_tokens,
            "temperature": 0.0,
        }
        req = urllib.request.Request(endpoint, data=json.dumps(body).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        if key:
            req.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                raw = resp.read()
        except TimeoutError:
            raise SurgkitError(f"{endpoint}: no answer within {timeout:g} s for record '{rec.id}'") from None
        except urllib.error.HTTPError as e:
            raise SurgkitError(f"{endpoint}: HTTP {e.code} for record '{rec.id}'") from None
        except urllib.error.URLError as e:
            reason = "timed out" if isinstance(e.reason, TimeoutError) else str(e.reason)
            raise SurgkitError(f"{endpoint}: {reason} (record '{rec.id}')") from None
        try:
            text = json.loads(raw)["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            raise SurgkitError(
                f"{endpoint}: response for record '{rec.id}' is not a chat completion: {raw[:120]!r}"
            ) from None
        if not isinstance(text, str):
            raise SurgkitError(f"{endpoint}: message content for record '{rec.id}' is not text")
        return text

    def gen(batch: list[Record]) -> list[str]:
        return [ask(r) for r in batch]

    return gen


def _eval_settings(a: dict[str, Any]) -> dict[str, Any]:
    """What predictions.jsonl depends on: the source, the records and the answer/box protocol."""
    from surgkit.utils.io import sha256_json

    keep = ("model", "predictions", "endpoint", "endpoint_model", "box", "answer_mode", "lenient",
            "max_new_tokens", "headline", "reduce", "reasoning")  # fmt: skip
    out = {k: str(a[k]) if isinstance(a[k], Path) else a[k] for k in keep}
    out["box"] = dataclasses.asdict(a["box"]) if dataclasses.is_dataclass(a["box"]) else a["box"]
    out["records_sha256"] = sha256_json([dataclasses.asdict(r) for r in a["records"]])
    return out


# one writer per folder; predictions.jsonl of another model or protocol is never resumed into
@guarded_run("surgkit reason eval", _eval_settings)
def run_eval(
    records: list[Record],
    out_dir: str | Path,
    image_root=None,
    model: str | Path | None = None,
    predictions: str | Path | None = None,
    endpoint: str | None = None,
    endpoint_model: str = "default",
    box: BoxSettings = BoxSettings(),
    answer_mode: str = "auto",
    lenient: bool = False,
    device: str = "auto",
    max_new_tokens: int = 512,
    batch_size: int = 4,
    timeout: float = 60.0,
    headline: dict[str, str] | None = None,
    reduce: str = "mean",
    reasoning: bool = True,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate one model on ``records``: writes ``predictions.jsonl`` (resumable) and ``metrics.json``.

    Resuming a folder written with another model, records or protocol is refused unless ``overwrite``
    (which starts the folder over)."""
    from surgkit.reasoning.evaluate import arena_score, compute_metrics, load_predictions, predict
    from surgkit.utils.io import write_json

    given = [x is not None for x in (model, predictions, endpoint)]
    if sum(given) != 1:
        raise SurgkitError("give exactly one of: a model folder, a predictions file, an endpoint URL")
    out = Path(out_dir)
    if predictions is not None:
        preds = load_predictions(predictions)
        source = f"predictions file {predictions}"
    else:
        if model is not None:
            gen, source = (
                hf_generator(model, image_root, box, device, max_new_tokens, reasoning),
                f"model {model}",
            )
        else:
            gen = endpoint_generator(endpoint, endpoint_model, image_root, box, timeout, reasoning=reasoning)
            source = f"endpoint {endpoint} ({endpoint_model})"
        preds = predict(records, gen, out / "predictions.jsonl", batch_size=batch_size, model_name=source)
    metrics = compute_metrics(records, preds, box, answer_mode, lenient)
    metrics["arena"] = arena_score(metrics, headline, reduce)
    metrics["source"] = source
    metrics["records"] = len(records)
    write_json(out / "metrics.json", metrics)
    return metrics
