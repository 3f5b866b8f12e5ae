"""Generating answers for evaluation -- a local HF VLM folder, an OpenAI-compatible endpoint, or a
predictions JSONL file -- and :func:`run_eval`, which writes ``predictions.jsonl`` (resumable) and
``metrics.json``.

Resume is keyed by **who answered and how**: the output folder records (``surgkit-run.json``, through
:func:`surgkit.utils.runinfo.check_resume`) the model identity -- a local folder's path and content
fingerprint, or an endpoint's URL and model name, or a predictions file's hash -- and the settings that
change the answers (box frame and pixel bounds, reasoning prompt and its text, token limit,
temperature). Evaluating another model or other settings into the same folder is refused, naming the
setting, unless ``overwrite`` (then the old predictions are discarded). Every prediction line also
carries the identity, and lines of another model are refused when read back.

An endpoint is asked with the same system prompt and question as local models (image as a base64 data
URL), ``concurrency`` requests at a time, with retries and timeouts (:mod:`surgkit.reasoning.endpoint`).
Answers that end badly (null, refusal, cut at the token limit, rejected request) are kept with their
``status`` and scored as unparseable. A failure that survives the retries stops the run after saving every
answer obtained, so the next run resumes after them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.reasoning.endpoint import Answer, Client, EndpointSettings, image_block
from surgkit.reasoning.generation import GenerationSettings
from surgkit.reasoning.records import Record, iter_jsonl
from surgkit.reasoning.render import image_paths, question_text, system_prompt
from surgkit.reasoning.scoring import BoxSettings

PREDICTIONS = "predictions.jsonl"


@dataclasses.dataclass
class Generator:
    """Answers for batches of records, with the identity of what answers (for resume checks)."""

    identity: dict[str, Any]
    answer: Callable[[list[Record], Callable[[Record, Answer], None]], list[Answer]]
    label: str
    box: BoxSettings = dataclasses.field(default_factory=BoxSettings)

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:16]


def local_generator(
    model_dir: str | Path,
    image_root,
    box: BoxSettings = BoxSettings(),
    settings: GenerationSettings = GenerationSettings(),
    device: str = "auto",
    dtype: str = "auto",
) -> Generator:
    """Batched KV-cache answers of a local HF vision-language model folder."""
    from surgkit.reasoning.generation import generate_answers, local_identity
    from surgkit.reasoning.vlm import load_vlm

    model, processor = load_vlm(model_dir, device=device, dtype=dtype, box=box)
    model.eval()
    bound = processor.surgkit_box

    def answer(batch: list[Record], on_answer: Callable[[Record, Answer], None]) -> list[Answer]:
        def each(recs, answers):
            n = settings.num_return_sequences
            for j, rec in enumerate(recs):
                on_answer(rec, answers[j * n])

        return generate_answers(model, processor, batch, image_root, bound, settings, on_batch=each)

    return Generator(local_identity(model_dir), answer, f"model {model_dir}", bound)


def chat_messages(rec: Record, image_root, box: BoxSettings, reasoning: bool) -> list[dict[str, Any]]:
    """The chat request of a record for an endpoint: system prompt, images, question."""
    content: list[dict[str, Any]] = [image_block(p) for p in image_paths(rec, image_root)]
    content.append({"type": "text", "text": question_text(rec)})
    return [
        {"role": "system", "content": system_prompt(box, reasoning)},
        {"role": "user", "content": content},
    ]


def endpoint_generator(
    settings: EndpointSettings, image_root, box: BoxSettings = BoxSettings(), reasoning: bool = True
) -> Generator:
    """Answers from an OpenAI-compatible endpoint, ``settings.concurrency`` requests at a time."""
    client = Client(settings)

    def answer(batch: list[Record], on_answer: Callable[[Record, Answer], None]) -> list[Answer]:
        requests = [(r.id, chat_messages(r, image_root, box, reasoning)) for r in batch]
        return client.ask_many(requests, lambda k, a: on_answer(batch[k], a))

    gen = Generator(settings.identity(), answer, f"endpoint {settings.chat_url} ({settings.model})", box)
    gen.client = client  # type: ignore[attr-defined]  (retry counts for reports and tests)
    return gen


# ----------------------------------------------------------------------------------- predictions
def read_prediction_rows(path: Path, key: str | None = None) -> dict[str, dict[str, Any]]:
    """Rows of a predictions file; with ``key``, a row written by another model is refused."""
    rows: dict[str, dict[str, Any]] = {}
    for lineno, obj in iter_jsonl(path):
        if not isinstance(obj, dict) or "id" not in obj:
            raise DataFormatError("a prediction needs an 'id'", path=path, line=lineno)
        if key is not None and obj.get("source_key") != key:
            raise DataFormatError(
                f"written by {obj.get('source', 'another model')!r}, not the model evaluated now; "
                "use another --out or --overwrite",
                path=path,
                line=lineno,
            )
        rows[str(obj["id"])] = obj
    return rows


def save_predictions(path: str | Path, rows: dict[str, dict[str, Any]]) -> None:
    """Atomically (re)write the predictions file (used for partial results and resume)."""
    from surgkit.utils.io import atomic_write

    with atomic_write(path, "w", encoding="utf-8") as fh:
        for row in rows.values():
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def predict(
    records: list[Record], gen: Generator, out_path: str | Path, chunk: int = 64
) -> tuple[dict[str, str], dict[str, str]]:
    """Answers of ``gen`` for the records not yet in ``out_path`` ({id: text}, {id: status}).

    The file is rewritten atomically after every chunk and after a failure, so an interrupted run
    resumes where it stopped. Under ``accelerate launch``/``torchrun`` the chunks are shared out, one
    per process per round; the main process merges each round into the file, so every process
    returns all the answers, each generated once, in the same batches as one process would.
    """
    from surgkit.utils.launch import process_state
    from surgkit.utils.progress import make_progress

    state = process_state()
    out_path = Path(out_path)
    rows = read_prediction_rows(out_path, gen.key) if out_path.is_file() else {}
    todo = [r for r in records if r.id not in rows]
    chunks = [todo[i : i + chunk] for i in range(0, len(todo), chunk)]
    world, rank = state.num_processes, state.process_index
    with make_progress(disable=not state.is_main_process) as prog:
        task = prog.add_task("generating answers", total=len(todo), unit="answers")

        def keep_in(target: dict[str, dict[str, Any]]) -> Callable[[Record, Answer], None]:
            def keep(rec: Record, a: Answer) -> None:
                target[rec.id] = {
                    "id": rec.id,
                    "completion": a.text,
                    "status": a.status,
                    **({"detail": a.detail} if a.detail else {}),
                    "source": gen.label,
                    "source_key": gen.key,
                }
                prog.advance(task, 1 if world == 1 else 0)

            return keep

        for start in range(0, len(chunks), world):
            mine = chunks[start + rank] if start + rank < len(chunks) else []
            new: dict[str, dict[str, Any]] = {}
            try:
                if mine:
                    gen.answer(mine, keep_in(new))
            except BaseException:
                rows.update(new)
                if state.is_main_process:
                    save_predictions(out_path, rows)  # partial results; the next run resumes after them
                raise
            if world > 1:
                from accelerate.utils import gather_object

                for part in gather_object([new]):
                    rows.update(part)
                prog.advance(task, sum(len(c) for c in chunks[start : start + world]))
            else:
                rows.update(new)
            if state.is_main_process:
                save_predictions(out_path, rows)
    state.wait_for_everyone()
    texts = {k: str(v.get("completion") or "") for k, v in rows.items()}
    statuses = {k: str(v.get("status", "ok")) for k, v in rows.items()}
    return texts, statuses


# --------------------------------------------------------------------------------------- run_eval
def _file_sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def run_eval(
    records: list[Record],
    out_dir: str | Path,
    image_root=None,
    model: str | Path | None = None,
    predictions: str | Path | None = None,
    endpoint: EndpointSettings | None = None,
    box: BoxSettings = BoxSettings(),
    answer_mode: str = "auto",
    lenient: bool = False,
    device: str = "auto",
    generation: GenerationSettings = GenerationSettings(),
    headline: dict[str, str] | None = None,
    reduce: str = "mean",
    overwrite: bool = False,
    dtype: str = "auto",
) -> dict[str, Any]:
    """Evaluate one model on ``records``: writes ``predictions.jsonl`` (resumable) and ``metrics.json``."""
    from surgkit.reasoning.evaluate import arena_score, compute_metrics, load_predictions
    from surgkit.utils.io import write_json
    from surgkit.utils.launch import process_device, process_state
    from surgkit.utils.lock import output_lock
    from surgkit.utils.runinfo import check_resume

    given = [x is not None for x in (model, predictions, endpoint)]
    if sum(given) != 1:
        raise SurgkitError("give exactly one of: a model folder, a predictions file, an endpoint URL")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out, "surgkit reason eval"):
        gen = None
        if predictions is not None:
            identity = {
                "kind": "predictions",
                "path": str(Path(predictions).resolve()),
                "sha256": _file_sha(predictions),
            }
            source = f"predictions file {predictions}"
        elif model is not None:
            gen = local_generator(model, image_root, box, generation, process_device(device), dtype)
            identity, source = gen.identity, gen.label
        else:
            gen = endpoint_generator(endpoint, image_root, box, generation.reasoning)
            identity, source = gen.identity, gen.label
        used_box = gen.box if gen is not None else box
        settings = {
            "source": identity,
            "box": dataclasses.asdict(used_box),
            "prompt_sha256": hashlib.sha256(
                system_prompt(used_box, generation.reasoning).encode()
            ).hexdigest()[:16],
            "generation": generation.identity()
            if endpoint is None
            else _endpoint_generation(endpoint, generation),
        }
        with process_state().main_process_first():  # the main process records the run (and clears) first
            state = check_resume(out, settings, overwrite, command="surgkit reason eval")
            if state == "overwrite":
                (out / PREDICTIONS).unlink(missing_ok=True)
        if gen is None:
            statuses: dict[str, str] = {}
            preds = load_predictions(predictions, statuses)
        else:
            preds, statuses = predict(
                records, gen, out / PREDICTIONS, chunk=max(8, generation.batch_size * 4)
            )
        metrics = compute_metrics(records, preds, used_box, answer_mode, lenient, statuses)
        metrics["arena"] = arena_score(metrics, headline, reduce)
        metrics["source"] = source
        metrics["records"] = len(records)
        metrics["statuses"] = {
            s: sum(v == s for v in statuses.values()) for s in sorted(set(statuses.values()))
        }
        if gen is not None and hasattr(gen, "client"):
            metrics["endpoint_retries"] = gen.client.retried
        if process_state().is_main_process:
            write_json(out / "metrics.json", metrics)
    return metrics


def _endpoint_generation(endpoint: EndpointSettings, generation: GenerationSettings) -> dict[str, Any]:
    return {
        "max_tokens": endpoint.max_tokens,
        "temperature": endpoint.temperature,
        "reasoning": generation.reasoning,
    }
