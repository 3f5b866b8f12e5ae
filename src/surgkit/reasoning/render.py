"""Renderers: a record -> prompt and target text (spec reasoning §1.2). Pure functions.

Three target modes:
- ``answer_only``: the answer payload alone (Stage 3 ground truth; Surg-R1's "raw label").
- ``sentence``: a short sentence, e.g. "Current surgical phase is ClippingCutting." (Stage 1).
- ``cot``: ``<think>Level 1: …\\nLevel 2: …\\nLevel 3: …</think><answer>payload</answer>`` (Stage 2).

The answer payload of a box task is JSON with Qwen2.5-VL's grounding keys, ``{"label": …,
"bbox_2d": [x1, y1, x2, y2]}``, in the coordinate frame the system prompt declares (``BoxSettings``).
MCQ payloads are "<letter>. <option>".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError
from surgkit.reasoning.cot import build_chain
from surgkit.reasoning.lexicon import readable
from surgkit.reasoning.records import BOX_TASKS, Record
from surgkit.reasoning.scoring import BoxSettings

MODES = ("answer_only", "sentence", "cot")
FRAME_TEXT = {
    "pixel": "absolute pixel coordinates of the original image",
    "norm": "coordinates normalised to [0, 1] by the image width and height",
    "norm1000": "integer coordinates normalised to [0, 1000) by the image width and height",
    "input": "absolute pixel coordinates of the resized model input",
}


def system_prompt(box_settings: BoxSettings = BoxSettings(), reasoning: bool = True) -> str:
    """States the tag contract and the box coordinate frame."""
    tags = (
        "Think first inside <think></think> in three steps, 'Level 1:' what is seen, 'Level 2:' which instrument "
        "acts on what, 'Level 3:' what it means; then give only the final answer inside <answer></answer>."
        if reasoning
        else "Answer briefly."
    )
    box = (
        f' When the answer has a location, answer with JSON {{"label": ..., "bbox_2d": [x1, y1, x2, y2]}} in '
        f"{FRAME_TEXT[box_settings.frame]}."
    )
    return "You are a surgical video assistant. " + tags + box


def question_text(rec: Record) -> str:
    """The question, with lettered options for MCQ records."""
    if not rec.options:
        return rec.question
    letters = "\n".join(f"{chr(65 + k)}. {o}" for k, o in enumerate(rec.options))
    return f"{rec.question}\n{letters}\nAnswer with the letter of the correct option."


def answer_payload(rec: Record, box_settings: BoxSettings = BoxSettings()) -> str:
    """The canonical answer payload of a record (see module docstring)."""
    if rec.options:
        k = rec.answer_index if rec.answer_index is not None else rec.options.index(rec.answer)
        return f"{chr(65 + k)}. {rec.options[k]}"
    box = rec.answer_box()
    if rec.task in BOX_TASKS and box is not None:
        return json.dumps({"label": rec.answer, "bbox_2d": box_settings.to_prompt(box, rec)})
    return rec.answer


def sentence(rec: Record, box_settings: BoxSettings = BoxSettings()) -> str:
    """Stage-1 sentence target."""
    a, obj = rec.answer, readable(str(rec.labels.get("object", "object")))
    if rec.task in ("phase", "step"):
        s = f"Current surgical phase is {a}."
    elif rec.task == "vqla" and rec.question_type == "location":
        s = f"The {obj} is located at {a}."
    elif rec.task == "vqla" and rec.question_type == "state":
        s = f"The state of the {obj} is {a}."
    elif rec.task == "vqla" and rec.question_type == "organ":
        s = f"The organ being operated on is the {a}."
    elif rec.task == "triplet":
        s = f"The actions are {a}."
    elif rec.task == "cvs":
        s = f"The critical view of safety criteria are {a}."
    elif rec.task == "tool_presence":
        s = f"The instruments present are {a}."
    else:
        s = f"The answer is {a}."
    if rec.task in BOX_TASKS and rec.answer_box() is not None:
        s += " " + answer_payload(rec, box_settings)
    return s


def render_target(
    rec: Record, mode: str, box_settings: BoxSettings = BoxSettings(), variant: int | None = None
) -> str:
    """Assistant text of ``rec`` in ``mode`` (one of :data:`MODES`).

    In ``cot`` mode a stored, verified chain (``rec.reasoning``) is used when present, else the template.
    """
    if mode == "answer_only":
        return answer_payload(rec, box_settings)
    if mode == "sentence":
        return sentence(rec, box_settings)
    if mode == "cot":
        r = rec.reasoning
        payload = answer_payload(rec, box_settings)
        if (
            r
            and r.get("verified")
            and variant is None
            and all(r.get(k) for k in ("level1", "level2", "level3"))
        ):
            return (
                f"<think>Level 1: {r['level1']}\nLevel 2: {r['level2']}\nLevel 3: {r['level3']}</think>"
                f"<answer>{payload}</answer>"
            )
        return build_chain(rec, payload, variant).text()
    raise SurgkitError(f"unknown render mode '{mode}' (choose from {', '.join(MODES)})")


def prompt_messages(
    rec: Record, box_settings: BoxSettings = BoxSettings(), reasoning: bool = True
) -> list[dict[str, Any]]:
    """Conversational prompt: system text + a user turn with one image block per image and the question."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in rec.images]
    content.append({"type": "text", "text": question_text(rec)})
    return [
        {"role": "system", "content": [{"type": "text", "text": system_prompt(box_settings, reasoning)}]},
        {"role": "user", "content": content},
    ]


def image_paths(rec: Record, root: str | Path | None) -> list[str]:
    """Absolute image paths (a missing image is a clear error naming the record)."""
    from surgkit.reasoning.records import resolve_image

    return [str(resolve_image(rec, root, k)) for k in range(len(rec.images))]


def sft_example(
    rec: Record,
    mode: str,
    root: str | Path | None,
    box_settings: BoxSettings = BoxSettings(),
    variant: int | None = None,
) -> dict[str, Any]:
    """A TRL prompt/completion row (conversational) with an ``images`` list of paths."""
    return {
        "prompt": prompt_messages(rec, box_settings, reasoning=mode == "cot"),
        "completion": [
            {
                "role": "assistant",
                "content": [{"type": "text", "text": render_target(rec, mode, box_settings, variant)}],
            }
        ],
        "images": image_paths(rec, root),
    }


def grpo_example(
    rec: Record, root: str | Path | None, box_settings: BoxSettings = BoxSettings()
) -> dict[str, Any]:
    """A TRL GRPO row: conversational prompt, ``images`` and the record (JSON) for the rewards.

    The ground truth is answer-only (spec §1.3 note): rewards read the record, never a chain.
    """
    d = rec.to_dict()
    d.pop("reasoning", None)
    return {
        "prompt": prompt_messages(rec, box_settings, reasoning=True),
        "images": image_paths(rec, root),
        "record": json.dumps(d),
    }
