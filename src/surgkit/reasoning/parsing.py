"""Shared parsing of model completions (spec reasoning §2.1): tags, answers, boxes, sets.

Rules (strict by design; no substring credit anywhere):

- The answer is the content of the **last** ``<answer>…</answer>`` block; none -> unparseable.
- Text normalisation: lowercase; strip a leading option letter ("A." / "(A)"); strip boilerplate
  prefixes ("the answer is", "the phase is", …); split CamelCase; ``_``/``-`` -> space; collapse
  whitespace; drop trailing punctuation. Two labels match when their normalised forms are equal after
  removing spaces (so "CalotTriangleDissection" = "calot triangle dissection"), or via the alias table.
- A box is the ``bbox_2d`` of a JSON payload, else the first ``[a, b, c, d]``, else ``(a, b), (c, d)``,
  else the first four numbers of the answer.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Sequence

from surgkit.vocab import (
    CHOLEC80_PHASES,
    CHOLEC80_TOOLS,
    CHOLECT50_PHASES,
    INSTRUMENTS,
    TARGETS,
    VERBS,
)

ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL)
NUM = r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
BRACKET_BOX_RE = re.compile(rf"\[\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*,\s*({NUM})\s*\]")
PAIR_BOX_RE = re.compile(rf"\(\s*({NUM})\s*,\s*({NUM})\s*\)\s*,?\s*\(\s*({NUM})\s*,\s*({NUM})\s*\)")
NUM_RE = re.compile(NUM)
OPTION_LETTER_RE = re.compile(r"^\s*(?:\(([a-z])\)|([a-z])[.):])\s*", re.IGNORECASE)
BOILERPLATE = (
    "the answer is",
    "answer:",
    "answer is",
    "the phase is",
    "current surgical phase is",
    "the current phase is",
    "the surgical phase is",
    "the complete surgical action is:",
    "the complete surgical action is",
    "the action is",
    "the state is",
    "final answer:",
)

# Surface forms of the same label across datasets (CholecT50 spells phases differently from Cholec80).
PHASE_ALIASES: dict[str, str] = {
    **{p: c for p, c in zip(CHOLECT50_PHASES, CHOLEC80_PHASES, strict=True)},
    "calot triangle dissection": "CalotTriangleDissection",
    "clipping and cutting": "ClippingCutting",
    "gallbladder extraction": "GallbladderRetraction",
    "cleaning and coagulation": "CleaningCoagulation",
}
TOOL_ALIASES: dict[str, str] = {
    **{t: t.lower() for t in CHOLEC80_TOOLS},
    "specimen bag": "specimenbag",
    "specimen_bag": "specimenbag",
    "bipolar forceps": "bipolar",
    "irrigator/aspirator": "irrigator",
    "clip applier": "clipper",
}


def extract_answer(text: str) -> str | None:
    """Content of the last ``<answer>`` block, stripped; None if there is none."""
    found = ANSWER_RE.findall(text or "")
    return found[-1].strip() if found else None


def extract_think(text: str) -> str | None:
    """Content of the first ``<think>`` block; None if there is none."""
    m = THINK_RE.search(text or "")
    return m.group(1) if m else None


def completion_text(completion: object) -> str:
    """Text of a TRL completion: a plain string, or a conversational list of message dicts."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion:
        msg = completion[-1]
        if isinstance(msg, dict):
            content = msg.get("content", "")
            if isinstance(content, list):  # typed blocks
                return "".join(b.get("text", "") for b in content if isinstance(b, dict))
            return str(content)
    if isinstance(completion, dict):
        return str(completion.get("content", ""))
    return str(completion)


def split_camel(s: str) -> str:
    """'CalotTriangleDissection' -> 'Calot Triangle Dissection'."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", s)


def normalize(s: str) -> str:
    """Normalised surface form of a text answer (see module docstring)."""
    s = split_camel(s.strip()).lower()
    changed = True
    while changed:
        changed = False
        for p in BOILERPLATE:
            if s.startswith(p):
                s, changed = s[len(p) :].strip(" :"), True
        m = OPTION_LETTER_RE.match(s)
        if m and m.end() < len(s):
            s, changed = s[m.end() :].strip(), True
    s = s.replace("_", " ").replace("-", " ")
    s = re.sub(r"\s+", " ", s).strip()
    return s.rstrip(" .,:;!").strip()


@functools.lru_cache(maxsize=1 << 16)  # a pure function of the text; answers and labels repeat a lot
def label_key(s: str) -> str:
    """Comparison key: normalised form without spaces."""
    return normalize(s).replace(" ", "")


def _alias_key(s: str, aliases: dict[str, str]) -> str:
    key = label_key(s)
    table = {label_key(k): label_key(v) for k, v in aliases.items()}
    return table.get(key, key)


def answers_match(pred: str | None, truth: str, aliases: Iterable[str] = (), task: str | None = None) -> bool:
    """Exact match after normalisation and aliases (record aliases + the task's alias table)."""
    if pred is None:
        return False
    table = (
        PHASE_ALIASES if task in ("phase", "step") else TOOL_ALIASES if task == "tool_localization" else {}
    )
    p = _alias_key(pred, table)
    return p in {_alias_key(t, table) for t in (truth, *aliases)}


# ------------------------------------------------------------------------------------------ payload
def parse_payload(answer: str | None) -> tuple[str | None, list[float] | None]:
    """Split an answer block into (text label, 4 numbers or None).

    Accepts a JSON object with ``label`` and ``bbox_2d`` (Qwen2.5-VL style), or text followed by a box
    in ``[x1, y1, x2, y2]`` / ``(x1, y1), (x2, y2)`` form, or plain text.
    """
    if answer is None:
        return None, None
    s = answer.strip()
    if s.startswith("{") or s.startswith("["):
        obj = _try_json(s)
        if isinstance(obj, list) and obj and isinstance(obj[0], dict):
            obj = obj[0]
        if isinstance(obj, dict):
            box = obj.get("bbox_2d", obj.get("bbox"))
            label = obj.get("label", obj.get("answer"))
            box_vals = _four_numbers(box)
            return (None if label is None else str(label)), box_vals
    for rx in (BRACKET_BOX_RE, PAIR_BOX_RE):
        m = rx.search(s)
        if m:
            text = (s[: m.start()] + s[m.end() :]).strip(" ,:;")
            return (text or None), [float(g) for g in m.groups()]
    return s, None


def parse_box_numbers(answer: str | None) -> list[float] | None:
    """The box of an answer block (payload rules above; else the first four numbers), or None."""
    _, box = parse_payload(answer)
    if box is not None or answer is None:
        return box
    nums = NUM_RE.findall(answer)
    return [float(v) for v in nums[:4]] if len(nums) >= 4 else None


def _try_json(s: str) -> object:
    try:
        return json.loads(s)
    except (json.JSONDecodeError, ValueError):
        return None


def _four_numbers(box: object) -> list[float] | None:
    if isinstance(box, Sequence) and not isinstance(box, str) and len(box) == 4:
        try:
            return [float(v) for v in box]
        except (TypeError, ValueError):
            return None
    return None


# ------------------------------------------------------------------------------------------ MCQ
def option_letter(answer: str | None, options: Sequence[str]) -> int | None:
    """Index of the chosen option: a bare letter ("B", "B.", "(B)"), "B. <text>" (the text must not name
    another option), or the exact text of one option. None otherwise."""
    if answer is None:
        return None
    s = answer.strip()
    m = re.fullmatch(r"\(?([A-Za-z])\)?[.):]?", s)
    if m:
        k = ord(m.group(1).upper()) - ord("A")
        return k if 0 <= k < len(options) else _text_option(s, options)
    m = re.match(r"\(?([A-Za-z])\)?[.):]\s+(.*)", s, re.DOTALL)
    if m:
        k = ord(m.group(1).upper()) - ord("A")
        t = _text_option(m.group(2), options)
        return k if 0 <= k < len(options) and t in (None, k) else None
    return _text_option(s, options)


def _text_option(s: str, options: Sequence[str]) -> int | None:
    key = label_key(s)
    hits = [k for k, o in enumerate(options) if label_key(o) == key]
    return hits[0] if len(hits) == 1 else None


# ------------------------------------------------------------------------------------------ sets
def parse_name_set(
    answer: str | None, vocab: Sequence[str], aliases: dict[str, str] | None = None
) -> set[str] | None:
    """A set of vocabulary names from "a, b and c" (None if unparseable; empty for "none")."""
    if answer is None:
        return None
    parts = [p for p in re.split(r",|;|\band\b|\n|\+", answer) if p.strip()]
    if not parts:
        return None
    keys = {label_key(v): v for v in vocab}
    for a, v in (aliases or {}).items():
        if label_key(v) in keys:
            keys[label_key(a)] = keys[label_key(v)]
    out: set[str] = set()
    for p in parts:
        k = label_key(p)
        if k in ("none", "no tool", "notools", "notool", "nothing"):
            continue
        if k not in keys:
            return None
        out.add(keys[k])
    return out


def parse_triplet_groups(answer: str) -> tuple[set[tuple[str, str, str]], int]:
    """(triplets that parse, number of groups that do not) of "instrument,verb,target; …" (also
    ``[i-v-t]`` / ``<i, v, t>``); a group parses when its three parts are vocabulary words."""
    out: set[tuple[str, str, str]] = set()
    bad = 0
    for group in re.split(r";|\n|\|", answer):
        g = group.strip().strip("[]<>(){} .")
        if not g:
            continue
        parts = [p.strip() for p in g.split(",")]
        if len(parts) != 3:
            parts = [p.strip() for p in g.split("-")]
        names = (
            [_component(p, vocab) for p, vocab in zip(parts, (INSTRUMENTS, VERBS, TARGETS), strict=True)]
            if len(parts) == 3
            else []
        )
        if names and all(names):
            out.add(tuple(names))  # type: ignore[arg-type]
        else:
            bad += 1
    return out, bad


def parse_triplets(answer: str | None) -> set[tuple[str, str, str]] | None:
    """Triplets of an answer: ``none`` -> empty set; None when no group parses (unparseable).

    Groups that do not parse are dropped here; :mod:`surgkit.reasoning.scoring` counts them as wrong.
    """
    if answer is None or not answer.strip():
        return None
    if label_key(answer) in ("none", "notriplet", "noaction"):
        return set()
    good, _ = parse_triplet_groups(answer)
    return good or None


def _component(s: str, vocab: Sequence[str]) -> str | None:
    key = label_key(s)
    for v in vocab:
        if label_key(v) == key:
            return v
    if key in ("null", "none"):
        return next((v for v in vocab if v.startswith("null")), None)
    return None


CVS_VALUE = {"yes": 1, "met": 1, "1": 1, "true": 1, "achieved": 1, "no": 0, "not met": 0, "0": 0, "false": 0}
CVS_RE = re.compile(r"c\s*([123])\s*[:=]?\s*(not met|yes|no|met|true|false|achieved|1|0)\b", re.IGNORECASE)


def parse_cvs(answer: str | None) -> tuple[int, int, int] | None:
    """Three CVS criteria from "C1 yes, C2 no, C3 yes" (or exactly three yes/no in order); None otherwise."""
    if answer is None:
        return None
    found = {int(k): CVS_VALUE[v.lower()] for k, v in CVS_RE.findall(answer)}
    if set(found) == {1, 2, 3}:
        return found[1], found[2], found[3]
    if found:
        return None
    tokens = re.findall(r"\b(yes|no)\b", answer.lower())
    if len(tokens) == 3:
        return tuple(CVS_VALUE[t] for t in tokens)  # type: ignore[return-value]
    return None


def first_yes_no(answer: str | None) -> str | None:
    """The first yes/no token of an answer (VLM-R1 style), lowercased."""
    if answer is None:
        return None
    m = re.search(r"\b(yes|no)\b", answer.lower())
    return m.group(1) if m else None
