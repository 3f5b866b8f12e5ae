"""Deterministic three-level chains of thought and their validator (spec reasoning §1.3).

Level 1 (perceptual grounding): the instruments present, each as "a <appearance> (<name>) in the
<position>" (position = 3x3 grid cell of its box centre, omitted without a box), then the tissues.
Level 2 (relational understanding): one clause per triplet ("the grasper is retracting the
gallbladder"), an instrument state for EndoVis-VQLA, or only co-presence — never a guessed verb.
Level 3 (contextual reasoning): the phase evidence (through the phase-knowledge table, with a generic
fallback), the CVS criteria and verdict, the quadrant of the answer box, … ending with the answer.

Paraphrases: each sentence type has K fixed variants; the variant is ``hash(record id, sentence) mod K``
unless a ``variant`` seed is given (seeded paraphrase sampling). The validator checks any chain —
template, teacher or self-generated — against the record's annotations.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re

from surgkit.reasoning.boxes import grid_cell, grid_name, quadrant
from surgkit.reasoning.lexicon import (
    ALL_INSTRUMENTS,
    CVS_CLAUSES,
    INSTRUMENT_APPEARANCE,
    PHASE_KNOWLEDGE,
    PHASE_READABLE,
    TISSUE_APPEARANCE,
    TISSUES,
    VERB_ING,
    readable,
)
from surgkit.reasoning.parsing import answers_match, extract_answer, extract_think, parse_payload
from surgkit.reasoning.records import Record

LEVEL_RE = re.compile(r"Level\s*([123])\s*:", re.IGNORECASE)

V_SEE = (
    "I can see {items}.",
    "The frame shows {items}.",
    "Visible in the field: {items}.",
)
V_TISSUE = (
    "The tissue in view includes {items}.",
    "Anatomy visible: {items}.",
    "The instruments work on {items}.",
)
V_NOTHING = ("No instrument is visible.", "The field contains no instrument.", "No instrument is in view.")
V_COPRESENT = (
    "{items} are both in the field, with no interaction annotated.",
    "{items} are present together; no action is stated.",
    "{items} share the field without an annotated action.",
)
V_ALONE = (
    "Only the {item} is in the field.",
    "The {item} is the only instrument in view.",
    "Just the {item} is present.",
)
V_PHASE = (
    "That {evidence} is characteristic of {phase}.",
    "Because {evidence}, the scene points to {phase}.",
    "Given that {evidence}, the phase is {phase}.",
)
V_PHASE_GENERIC = (
    "The overall scene corresponds to {phase}.",
    "Taken together, the scene matches {phase}.",
    "The scene as a whole is consistent with {phase}.",
)


@dataclasses.dataclass(frozen=True)
class Chain:
    """A three-level chain and the answer payload it ends with."""

    level1: str
    level2: str
    level3: str
    answer: str
    template_id: str = ""

    def text(self) -> str:
        """``<think>Level 1: …\\nLevel 2: …\\nLevel 3: …</think><answer>…</answer>``."""
        return (
            f"<think>Level 1: {self.level1}\nLevel 2: {self.level2}\nLevel 3: {self.level3}</think>"
            f"<answer>{self.answer}</answer>"
        )


def _pick(variants: tuple[str, ...], rec: Record, salt: str, variant: int | None, used: list[int]) -> str:
    h = hashlib.sha256(f"{rec.id}|{salt}|{variant}".encode()).digest()
    k = int.from_bytes(h[:4], "big") % len(variants)
    used.append(k)
    return variants[k]


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" or word.startswith("L-") else "a"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


# ------------------------------------------------------------------------------------ frame facts
def present_instruments(rec: Record) -> list[str]:
    """Instruments present according to the annotations (tools, triplets, states, boxes), vocab order."""
    names = {t for t in rec.labels.get("tools") or []}
    names |= {t["instrument"] for t in rec.labels.get("triplets") or []}
    names |= set((rec.labels.get("states") or {}).keys())
    names |= {b.label for b in rec.boxes if b.label in ALL_INSTRUMENTS}
    if "specimen_bag" in {t["target"] for t in rec.labels.get("triplets") or []}:
        names.add("specimenbag")
    return [n for n in ALL_INSTRUMENTS if n in names] + sorted(names - set(ALL_INSTRUMENTS))


def present_tissues(rec: Record) -> list[str]:
    """Tissues known to be visible (triplet targets, anatomy labels, the VQLA organ), vocab order."""
    names = {t["target"] for t in rec.labels.get("triplets") or [] if t["target"] != "null_target"}
    names |= set(rec.labels.get("anatomy") or [])
    if rec.labels.get("organ"):
        names.add(rec.labels["organ"])
    names |= {b.label for b in rec.boxes if b.label in TISSUES}
    return [t for t in TISSUES if t in names]


def box_of(rec: Record, label: str) -> tuple[float, float, float, float] | None:
    """The first box of ``label`` (answer boxes first)."""
    for b in sorted(rec.boxes, key=lambda b: b.role != "answer"):
        if b.label == label:
            return b.bbox
    return None


def position_of(rec: Record, label: str) -> str | None:
    box = box_of(rec, label)
    return None if box is None else grid_name(*grid_cell(box, *rec.size))


# ------------------------------------------------------------------------------------- the levels
def level1(rec: Record, variant: int | None = None, used: list[int] | None = None) -> str:
    used = [] if used is None else used
    items = []
    for name in present_instruments(rec):
        pos = position_of(rec, name)
        look = INSTRUMENT_APPEARANCE.get(name, "instrument")
        items.append(f"{_article(look)} {look} ({readable(name)})" + (f" in the {pos}" if pos else ""))
    unnamed = [b for b in rec.boxes if b.label == "tool"]  # Endoscapes: a tool box without its type
    for b in unnamed[:3]:
        items.append(f"an unidentified instrument (tool) in the {grid_name(*grid_cell(b.bbox, *rec.size))}")
    if items:
        text = _pick(V_SEE, rec, "see", variant, used).format(items=_join(items))
    elif instruments_annotated(rec):
        text = _pick(V_NOTHING, rec, "none", variant, used)
    else:
        text = ""  # no instrument annotation: say nothing about instruments
    tissues = present_tissues(rec)
    if tissues:
        tis = [f"the {readable(t)} ({TISSUE_APPEARANCE.get(t, 'tissue')})" for t in tissues]
        text += " " + _pick(V_TISSUE, rec, "tissue", variant, used).format(items=_join(tis))
    return text.strip() or "The annotations name no instrument or tissue in this frame."


def instruments_annotated(rec: Record) -> bool:
    """True when the record's annotations say which instruments are present (so 'none' is a fact)."""
    return any(k in rec.labels for k in ("tools", "triplets", "states")) or any(
        b.label in ALL_INSTRUMENTS or b.label == "tool" for b in rec.boxes
    )


def relation_clause(instrument: str, verb: str, target: str) -> str:
    """'the grasper is retracting the gallbladder'; null_verb -> 'is visible but not acting'."""
    if verb == "null_verb":
        return f"the {readable(instrument)} is visible but not acting"
    clause = f"the {readable(instrument)} is {VERB_ING.get(verb, verb)}"
    return clause if target == "null_target" else f"{clause} the {readable(target)}"


def level2(rec: Record, variant: int | None = None, used: list[int] | None = None) -> str:
    used = [] if used is None else used
    triplets = rec.labels.get("triplets") or []
    if triplets:
        clauses = [relation_clause(t["instrument"], t["verb"], t["target"]) for t in triplets]
        text = "; ".join(clauses)
        return text[0].upper() + text[1:] + "."
    states = rec.labels.get("states") or {}
    if states:
        clauses = [f"the {readable(i)} is performing {readable(s)}" for i, s in states.items()]
        text = "; ".join(clauses)
        return text[0].upper() + text[1:] + "."
    inst = present_instruments(rec)
    if len(inst) >= 2:
        return _pick(V_COPRESENT, rec, "co", variant, used).format(
            items=_join([f"the {readable(i)}" for i in inst]).capitalize()
        )
    if len(inst) == 1:
        return _pick(V_ALONE, rec, "alone", variant, used).format(item=readable(inst[0]))
    if unnamed_tools(rec):
        return "An instrument is in the field; its action is not annotated."
    if instruments_annotated(rec):
        return "No instrument-tissue interaction is visible."
    return "No instrument-tissue interaction is annotated for this frame."


def unnamed_tools(rec: Record) -> bool:
    return any(b.label == "tool" for b in rec.boxes)


def phase_evidence(rec: Record, phase: str) -> list[str]:
    """Evidence items of the frame that the phase-knowledge table links to ``phase``."""
    table = PHASE_KNOWLEDGE.get(phase)
    if table is None:
        return []
    out = []
    for t in rec.labels.get("triplets") or []:
        if t["verb"] in table["verbs"] or t["target"] in table["targets"]:
            out.append(relation_clause(t["instrument"], t["verb"], t["target"]))
    if not out:
        out = [f"the {readable(i)} is present" for i in present_instruments(rec) if i in table["instruments"]]
    return out


def level3(rec: Record, variant: int | None = None, used: list[int] | None = None) -> str:
    used = [] if used is None else used
    task, ans = rec.task, rec.answer
    if task in ("phase", "step"):
        phase = rec.labels.get("phase", ans)
        name = PHASE_READABLE.get(phase, readable(phase))
        ev = phase_evidence(rec, phase)
        if ev:
            evidence = _join(ev)
            s = _pick(V_PHASE, rec, "phase", variant, used).format(evidence=evidence, phase=name)
        else:
            s = _pick(V_PHASE_GENERIC, rec, "phase_generic", variant, used).format(phase=name)
        return f"{s} So the current phase is {ans}."
    if task == "cvs":
        cvs = rec.labels.get("cvs") or {}
        clauses = [CVS_CLAUSES[c][0 if int(cvs.get(c, 0)) else 1] for c in ("c1", "c2", "c3")]
        met = all(int(cvs.get(c, 0)) for c in ("c1", "c2", "c3"))
        verdict = (
            "all three criteria are met, so the critical view of safety is achieved"
            if met
            else ("not all criteria are met, so the critical view of safety is not achieved")
        )
        return f"{clauses[0].capitalize()}; {clauses[1]}; {clauses[2]}. Therefore {verdict}."
    if task == "vqla" and rec.question_type == "location":
        box = rec.answer_box()
        obj = rec.labels.get("object", "the object")
        if box is not None and answers_match(quadrant(box, *rec.size), ans):
            q = quadrant(box, *rec.size)
            horiz, vert = q.split("-")
            return f"The box of the {readable(obj)} has its centre in the {horiz} {vert} quadrant, so it is located at {q}."
        return f"The {readable(obj)} is located at {ans}."
    if task == "vqla" and rec.question_type == "state":
        obj = rec.labels.get("object", "instrument")
        return f"Therefore the state of the {readable(obj)} is {ans}."
    if task == "vqla" and rec.question_type == "organ":
        return f"Therefore the organ being operated on is the {readable(ans)}."
    if task == "triplet":
        return f"Therefore the actions in this frame are: {ans}."
    if task == "tool_presence":
        return f"Therefore the instruments present are: {ans}."
    if task in ("tool_localization", "grounding"):
        box = rec.answer_box()
        pos = None if box is None else grid_name(*grid_cell(box, *rec.size))
        where = f" occupies the {pos} region of the frame" if pos else " is in the frame"
        return f"The {readable(ans)}{where}, so its box encloses that region."
    return f"Therefore the answer is {ans}."


def build_chain(rec: Record, answer_payload: str | None = None, variant: int | None = None) -> Chain:
    """The template chain of ``rec``. ``answer_payload`` defaults to ``rec.answer``."""
    used: list[int] = []
    l1, l2, l3 = level1(rec, variant, used), level2(rec, variant, used), level3(rec, variant, used)
    tid = "t" + "".join(str(k) for k in used)
    return Chain(l1, l2, l3, rec.answer if answer_payload is None else answer_payload, tid)


# --------------------------------------------------------------------------------------- validator
@dataclasses.dataclass(frozen=True)
class ChainIssue:
    """One problem of a chain: ``kind`` in tags, levels, answer, instrument, tissue, relation, position."""

    kind: str
    message: str


def split_levels(think: str) -> dict[int, str] | None:
    """{1: text, 2: text, 3: text} when the three markers appear once each, in order; else None."""
    marks = list(LEVEL_RE.finditer(think))
    if [int(m.group(1)) for m in marks] != [1, 2, 3]:
        return None
    out = {}
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(think)
        out[int(m.group(1))] = think[m.end() : end].strip()
    return out


def _mentions(text: str, names: tuple[str, ...]) -> list[tuple[str, int, int]]:
    """(name, start, end) of vocabulary mentions (longest first, no overlaps), as readable words."""
    low = text.lower()
    taken: list[tuple[int, int]] = []
    out = []
    for name in sorted(names, key=lambda n: -len(readable(n))):
        for form in {readable(name), name.lower()}:
            for m in re.finditer(rf"\b{re.escape(form)}\b", low):
                if any(m.start() < e and s < m.end() for s, e in taken):
                    continue
                taken.append((m.start(), m.end()))
                out.append((name, m.start(), m.end()))
    return sorted(out, key=lambda x: x[1])


POSITION_RE = re.compile(
    r"\)?\s*in the (upper left|upper centre|upper right|middle left|centre|middle right|lower left|lower centre|lower right)\b"
)
RELATION_RE = re.compile(r"\bis (" + "|".join(VERB_ING.values()) + r")(?: the ([a-z ]+?))?(?=[;.,]|$| and )")


def validate_chain(text: str, rec: Record, check_answer: bool = True) -> list[ChainIssue]:
    """Problems of a chain for ``rec`` (empty list = valid). Checks, in order:

    tags well formed (one think then one answer block, nothing else); Level 1/2/3 present in order and
    non-empty; the answer equals the ground truth after normalisation; no instrument or tissue named
    that the annotations do not have; every relation stated in Level 2 is a ground-truth triplet; every
    position stated for an object agrees with the 3x3 cell of its box.
    """
    from surgkit.reasoning.rewards import format_basic

    issues: list[ChainIssue] = []
    if format_basic([text])[0] < 1.0:
        issues.append(ChainIssue("tags", "expected exactly <think>…</think><answer>…</answer>"))
    think = extract_think(text) or ""
    levels = split_levels(think)
    if levels is None or not all(levels.values()):
        issues.append(
            ChainIssue("levels", "Level 1, Level 2, Level 3 must appear once each, in order, non-empty")
        )
        levels = levels or {1: think, 2: "", 3: ""}
    if check_answer:
        from surgkit.reasoning.rewards import answer_correct

        label, _ = parse_payload(extract_answer(text))
        if not answer_correct(text, rec):
            issues.append(
                ChainIssue("answer", f"final answer {label!r} differs from ground truth {rec.answer!r}")
            )
    present = set(present_instruments(rec))
    for name, _, _ in _mentions(think, ALL_INSTRUMENTS):
        if name not in present:
            issues.append(
                ChainIssue("instrument", f"mentions the {readable(name)}, which is not in the frame")
            )
    tissues = set(present_tissues(rec))
    if tissues or rec.labels.get("triplets") is not None:
        for name, _, _ in _mentions(levels.get(1, ""), tuple(t for t in TISSUES if t != "specimen_bag")):
            if name not in tissues:
                issues.append(ChainIssue("tissue", f"mentions the {readable(name)}, which is not annotated"))
    issues += _check_relations(levels.get(2, ""), rec)
    issues += _check_positions(levels.get(1, ""), rec)
    return issues


def stated_relations(level2_text: str) -> set[tuple[str, str, str]]:
    """(instrument, verb, target) of every "<instrument> is <verb-ing> [the <target>]" clause."""
    ing_to_verb = {v: k for k, v in VERB_ING.items()}
    out = set()
    for clause in re.split(r"[;.]", level2_text.lower()):
        m = RELATION_RE.search(clause)
        if not m:
            continue
        inst = _mentions(clause[: m.start()], ALL_INSTRUMENTS)
        if not inst:
            continue
        tgt_text = (m.group(2) or "").strip()
        tgt = next((t for t in TISSUES if readable(t) == tgt_text), tgt_text if tgt_text else "null_target")
        out.add((inst[-1][0], ing_to_verb[m.group(1)], tgt))
    return out


STATE_RE = re.compile(r"\bis performing ([a-z_ ]+)")


def _check_relations(level2_text: str, rec: Record) -> list[ChainIssue]:
    truth = {(t["instrument"], t["verb"], t["target"]) for t in rec.labels.get("triplets") or []}
    issues = [
        ChainIssue("relation", f"states {triple}, not a ground-truth triplet")
        for triple in sorted(stated_relations(level2_text) - truth)
    ]
    states = rec.labels.get("states") or {}
    for clause in re.split(r"[;.]", level2_text.lower()):
        m = STATE_RE.search(clause)
        inst = _mentions(clause[: m.start()], ALL_INSTRUMENTS) if m else []
        if m and inst and not answers_match(m.group(1), states.get(inst[-1][0], "")):
            issues.append(
                ChainIssue(
                    "relation", f"states the {readable(inst[-1][0])} is performing {m.group(1).strip()}"
                )
            )
    return issues


def _check_positions(level1_text: str, rec: Record) -> list[ChainIssue]:
    issues = []
    names = ALL_INSTRUMENTS + TISSUES
    mentions = _mentions(level1_text, names)
    for k, (name, _, end) in enumerate(mentions):
        stop = mentions[k + 1][1] if k + 1 < len(mentions) else len(level1_text)
        m = POSITION_RE.match(level1_text.lower()[end:stop])
        if not m:
            continue
        box = box_of(rec, name)
        if box is None:
            issues.append(
                ChainIssue("position", f"places the {readable(name)} in the {m.group(1)} without a box")
            )
            continue
        cell = grid_name(*grid_cell(box, *rec.size))
        if cell != m.group(1):
            issues.append(
                ChainIssue(
                    "position", f"places the {readable(name)} in the {m.group(1)}; its box is in the {cell}"
                )
            )
    return issues
