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

from surgkit.reasoning.boxes import grid_cell, grid_name, quadrant
from surgkit.reasoning.lexicon import (
    ALL_INSTRUMENTS,
    CVS_CLAUSES,
    CVS_NUMBERING,
    INSTRUMENT_APPEARANCE,
    PHASE_KNOWLEDGE,
    PHASE_READABLE,
    TISSUE_APPEARANCE,
    TISSUES,
    VERB_ING,
    readable,
)
from surgkit.reasoning.parsing import answers_match, extract_think
from surgkit.reasoning.records import Record
from surgkit.reasoning.scoring import BoxSettings, format_ok, is_correct, parse_answer
from surgkit.reasoning.statements import ChainStatements, parse_chain, split_levels

__all__ = ["Chain", "ChainIssue", "build_chain", "split_levels", "validate_chain"]

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
    names |= set(instrument_states(rec))
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
    boxes = boxes_of(rec, label)
    return boxes[0] if boxes else None


def boxes_of(rec: Record, label: str) -> list[tuple[float, float, float, float]]:
    """Every box of ``label`` (answer boxes first): a frame may hold two graspers."""
    return [b.bbox for b in sorted(rec.boxes, key=lambda b: b.role != "answer") if b.label == label]


def instrument_states(rec: Record) -> dict[str, list[str]]:
    """EndoVis instrument states {name: [states]} (one instrument type may appear twice)."""
    out = {}
    for name, v in (rec.labels.get("states") or {}).items():
        out[name] = [v] if isinstance(v, str) else list(v)
    return out


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
    states = instrument_states(rec)
    if states:
        clauses = [
            f"the {readable(i)} is performing {' and '.join(readable(s) for s in v)}"
            for i, v in states.items()
        ]
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
        clauses = [CVS_CLAUSES[CVS_NUMBERING[c]][0 if int(cvs.get(c, 0)) else 1] for c in ("c1", "c2", "c3")]
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
    """One problem of a chain. ``kind``: tags, levels, answer, instrument, tissue, relation, state,
    position, phase, cvs or conclusion."""

    kind: str
    message: str


def validate_chain(
    text: str, rec: Record, check_answer: bool = True, box: BoxSettings = BoxSettings()
) -> list[ChainIssue]:
    """Problems of a chain for ``rec`` (empty list = valid), judged on what it *states*
    (:func:`surgkit.reasoning.statements.parse_chain`), not on its wording:

    - tags: exactly one think block then one answer block; levels: Level 1, 2, 3 once each, in order,
      none empty or a placeholder;
    - answer: equals the ground truth (:func:`scoring.is_correct`; unparseable is wrong);
    - instrument / tissue: every entity stated present is annotated present, and none stated absent is
      annotated present (instruments in any level; tissues in Levels 1-2, where perception and relations
      are stated; tissues are checked only when the record annotates them);
    - relation / state: every relation stated (any level) is a ground-truth triplet (a stated relation
      without object matches any target of that instrument and verb), no true triplet is denied; EndoVis
      records compare stated states (and verbs naming a state) with the annotated states; a relation on
      a frame without interaction labels cannot be checked and is refused;
    - position: every position stated for an entity holds the centre of its box (one region
      definition, :mod:`boxes`); a position for an entity without a box is refused;
    - phase: every phase the chain states (any level, not negated) is the frame's phase; for phase
      questions Level 3 must reach it;
    - cvs: every criterion claim and the verdict agree with the criteria; a CVS question's Level 3 must
      state them.
    """
    issues: list[ChainIssue] = []
    if not format_ok(text):
        issues.append(ChainIssue("tags", "expected exactly <think>…</think><answer>…</answer>"))
    st = parse_chain(extract_think(text) or "")
    if st.levels is None:
        issues.append(ChainIssue("levels", "Level 1, Level 2, Level 3 must appear once each, in order"))
    for k in st.empty_levels():
        issues.append(ChainIssue("levels", f"Level {k} is empty"))
    if check_answer:
        parsed = parse_answer(text, rec, box)
        if not is_correct(parsed, rec):
            what = "unparseable" if not parsed.parseable else repr(parsed.label)
            issues.append(
                ChainIssue("answer", f"final answer {what} differs from ground truth {rec.answer!r}")
            )
    issues += _check_entities(st, rec)
    issues += _check_relations(st, rec)
    issues += _check_positions(st, rec)
    issues += _check_phases(st, rec)
    issues += _check_cvs(st, rec)
    return issues


def _check_entities(st: ChainStatements, rec: Record) -> list[ChainIssue]:
    issues = []
    present = set(present_instruments(rec))
    tissues = set(present_tissues(rec))
    check_tissues = bool(tissues) or rec.labels.get("triplets") is not None
    for m in st.mentions:
        if m.instruments:
            here = bool(m.instruments & present) or bool(m.tissues & tissues)
            if not m.negated and not here:
                issues.append(ChainIssue("instrument", f"mentions the {m.text}, which is not in the frame"))
            elif m.negated and here and instruments_annotated(rec):
                issues.append(
                    ChainIssue("instrument", f"states the {m.text} is absent, but it is in the frame")
                )
        elif m.tissues and check_tissues and m.level in (0, 1, 2):
            here = bool(m.tissues & tissues)
            if not m.negated and not here:
                issues.append(
                    ChainIssue("tissue", f"Level {m.level} mentions the {m.text}, which is not annotated")
                )
            elif m.negated and here:
                issues.append(ChainIssue("tissue", f"states the {m.text} is absent, but it is annotated"))
    return issues


VERB_STATE = {
    "grasp": "Grasping",
    "retract": "Retraction",
    "cut": "Cutting",
    "clip": "Clipping",
    "coagulate": "Cauterization",
    "aspirate": "Suction",
    "null_verb": "Idle",
}


def _check_relations(st: ChainStatements, rec: Record) -> list[ChainIssue]:
    issues = []
    triplets = rec.labels.get("triplets")
    states = instrument_states(rec)
    truth = {(t["instrument"], t["verb"], t["target"]) for t in triplets or []}

    def holds(r) -> bool:
        return any(
            i in r.instruments and v == r.verb and (g in r.targets or "null_target" in r.targets)
            for i, v, g in truth
        )

    for r in st.relations:
        said = f"'{'/'.join(sorted(r.instruments))} {'not ' if r.negated else ''}{r.text}'"
        if triplets is not None:
            if not r.negated and not holds(r):
                issues.append(ChainIssue("relation", f"states {said} ({r.verb}), not a ground-truth triplet"))
            elif r.negated and holds(r) and "null_target" not in r.targets:
                issues.append(ChainIssue("relation", f"denies {said}, a ground-truth triplet"))
        elif states:
            state = VERB_STATE.get(r.verb)
            truth_states = {x for i in r.instruments for x in states.get(i, [])}
            if not r.negated and (state is None or state not in truth_states):
                issues.append(
                    ChainIssue("state", f"states {said}; the annotated state is {sorted(truth_states)}")
                )
        elif not r.negated:
            issues.append(ChainIssue("relation", f"states {said}, but the frame has no interaction labels"))
    for c in st.states:
        if not states:
            continue
        truth_states = {x for i in c.instruments for x in states.get(i, [])}
        if not truth_states:
            continue
        if (c.state in truth_states) == c.negated:
            issues.append(
                ChainIssue(
                    "state",
                    f"states the {'/'.join(sorted(c.instruments))} is "
                    f"{'not ' if c.negated else ''}{c.state}; annotated {sorted(truth_states)}",
                )
            )
    return issues


def _check_positions(st: ChainStatements, rec: Record) -> list[ChainIssue]:
    issues = []
    for p in st.positions:
        boxes = [b for n in sorted(p.names) for b in boxes_of(rec, n)]
        name = "/".join(sorted(p.names))
        if not boxes:
            issues.append(ChainIssue("position", f"places the {name} in the {p.region.name} without a box"))
        elif not any(p.region.contains(b, *rec.size) for b in boxes):
            cell = grid_name(*grid_cell(boxes[0], *rec.size))
            issues.append(
                ChainIssue(
                    "position", f"places the {name} in the {p.region.name}; its box centre is in the {cell}"
                )
            )
    return issues


def frame_phase(rec: Record) -> str | None:
    """The Cholec80 phase of the frame, when annotated (labels.phase, or the answer of a phase record)."""
    phase = rec.labels.get("phase")
    if phase is None and rec.task in ("phase", "step"):
        phase = rec.answer
    return phase


def _check_phases(st: ChainStatements, rec: Record) -> list[ChainIssue]:
    issues = []
    truth = frame_phase(rec)
    for p in st.phases:
        if p.negated:
            if truth is not None and answers_match(p.phase, truth, task="phase"):
                issues.append(ChainIssue("phase", f"Level {p.level} denies {p.phase}, the frame's phase"))
            continue
        if truth is None:
            issues.append(
                ChainIssue("phase", f"Level {p.level} states the phase {p.phase}, which is not annotated")
            )
        elif not answers_match(p.phase, truth, task="phase"):
            issues.append(
                ChainIssue("phase", f"Level {p.level} reaches {p.phase}; the frame's phase is {truth}")
            )
    reached = [p for p in st.in_level(st.phases, 3) if not p.negated]
    if rec.task in ("phase", "step") and st.levels is not None and not reached:
        issues.append(ChainIssue("conclusion", "Level 3 does not state the phase"))
    return issues


def _check_cvs(st: ChainStatements, rec: Record) -> list[ChainIssue]:
    issues = []
    cvs = rec.labels.get("cvs")
    if cvs is None:
        if st.cvs or st.verdicts:
            issues.append(ChainIssue("cvs", "states CVS criteria, but the frame has no CVS label"))
        return issues
    by_name = {CVS_NUMBERING[c]: int(cvs.get(c, 0)) for c in ("c1", "c2", "c3")}
    for c in st.cvs:
        if c.met != bool(by_name[c.criterion]):
            issues.append(
                ChainIssue(
                    "cvs",
                    f"states {readable(c.criterion)} {'met' if c.met else 'not met'}; "
                    f"annotated {'met' if by_name[c.criterion] else 'not met'}",
                )
            )
    achieved = all(by_name.values())
    for verdict, level in st.verdicts:
        if verdict != achieved:
            issues.append(
                ChainIssue("cvs", f"Level {level} says the CVS is {'' if verdict else 'not '}achieved")
            )
    stated_l3 = any(c.level == 3 for c in st.cvs) or any(level == 3 for _, level in st.verdicts)
    if rec.task == "cvs" and st.levels is not None and not stated_l3:
        issues.append(ChainIssue("conclusion", "Level 3 states no CVS criterion"))
    return issues
