"""What a chain of thought states, whatever its wording (spec reasoning §1.3 validation, §2.5, §2.6).

This is the one parser of chain *content*: the chain validator (:mod:`surgkit.reasoning.cot`), the
coherence reward and the process rewards (:mod:`surgkit.reasoning.rewards`) all read chains through
:func:`parse_chain`. It knows only text and the fixed lexicons; comparing the statements with a
record's annotations is the validator's job.

A chain ``<think>Level 1: … Level 2: … Level 3: …</think>`` is split into its levels (markers in
order, once each; "**Level 2 (relations):**" is accepted), and every sentence of every level is read
into statements:

- **mentions** of instruments and tissues (any surface form of :data:`lexicon.INSTRUMENT_FORMS` /
  :data:`lexicon.TISSUE_FORMS`), negated when stated absent ("no clipper", "the clipper is not
  visible");
- **relations** ⟨instrument, verb, target⟩ from progressive ("is dissecting"), simple ("dissects"),
  past/passive ("the duct is dissected by the hook") or nominal ("dissection of the duct") clauses; a
  clause without an object states ``null_target``, "visible but not acting" / "idle" the null verb;
  "is not cutting" is a negated relation;
- **states** of EndoVis instruments ("performing tissue manipulation");
- **positions**: a 3x3 grid cell ("upper centre"), a quadrant ("right-top", "left bottom quadrant") or
  a half ("on the left"), each bound to the nearest entity of its sentence (preceding first) and
  resolved to a :class:`surgkit.reasoning.boxes.Region` -- the one region definition;
- **phases** (Cholec80 names in CamelCase, readable or CholecT50 spelling), negated after "not",
  "rather than", "instead of", "no longer";
- **CVS** criterion claims (met / not met, by name or "C2 no") and the CVS verdict.

Phase names and CVS criterion clauses are masked before entities are read, so "gallbladder" inside
"gallbladder dissection" is not a tissue mention.
"""

from __future__ import annotations

import dataclasses
import re
from functools import lru_cache

from surgkit.reasoning.boxes import Region, grid_region, quadrant_region
from surgkit.reasoning.lexicon import (
    CVS_FORMS,
    CVS_NUMBERING,
    INSTRUMENT_FORMS,
    NULL_VERB_FORMS,
    PHASE_READABLE,
    STATE_FORMS,
    TISSUE_FORMS,
    VERB_FORMS,
)
from surgkit.vocab import CHOLEC80_PHASES, CHOLECT50_PHASES

LEVEL_RE = re.compile(r"(?:\*\*)?\bLevel\s*([123])\b(?:\s*\([^)\n]*\))?\s*(?:\*\*)?\s*[:.\-–](?:\*\*)?", re.I)
SENTENCE_RE = re.compile(r"[^.;!?\n]+")
NEG_BEFORE = re.compile(
    r"\b(?:no|not|without|nor|neither)\s+(?:(?:a|an|the|any|sign of|trace of|visible)\s+)*$"
)
NEG_AFTER = re.compile(
    r"^\s*(?:is|are)\s+(?:not|no longer)\s+(?:visible|present|seen|in view|in the field)"
    r"|^\s*(?:is|are)\s+(?:absent|missing|out of view)|^\s*(?:cannot|can't|can not)\s+be\s+seen"
)
VERB_NEG = re.compile(r"(?:\bnot|n't|\bno longer|\bnever)\s+(?:\w+\s+)?$")
PASSIVE_BY = re.compile(r"^\s*(?:by|with)\s+(?:the\s+|a\s+|an\s+)?$")
PHASE_NEG = re.compile(r"\b(?:not|rather than|instead of|no longer|unlike)\s+(?:\w+\s+){0,2}$")
CVS_NEG = re.compile(r"(?:\bnot|\bno|n't|\bincomplete|\bfails?|\bmissing|\bun(?:cleared|met))\b")
CVS_PRED = re.compile(
    r"\b(?:cleared|clear|separated|detached|dissected off|exposed|entering|enter|met|satisfied|fulfilled)\b"
)
CVS_NUMBER_RE = re.compile(
    r"\bc\s*([123])\b\s*(?:\([^)]*\))?\s*[:=]?\s*(yes|no|met|not met|true|false|1|0)\b"
)
VERDICT_RE = re.compile(r"\b(?:critical view of safety|cvs)\b")
ALL_MET_RE = re.compile(
    r"\b(not\s+)?all(?:\s+three)?\s+(?:cvs\s+)?criteria\s+(?:are\s+)?(?:met|satisfied|fulfilled)"
)
ROW_WORDS = {"upper": 0, "top": 0, "middle": 1, "centre": 1, "center": 1, "lower": 2, "bottom": 2}
COL_WORDS = {"left": 0, "centre": 1, "center": 1, "middle": 1, "right": 2}
QUAD_RE = re.compile(
    r"\b(left|right)\s+(top|bottom|upper|lower)\b(?:\s+quadrant)?"
    r"|\b(top|bottom|upper|lower)\s+(left|right)\s+quadrant\b"
)
CELL_RE = re.compile(r"\b(upper|top|middle|centre|center|lower|bottom)\s+(left|right|centre|center|middle)\b")
CENTRE_RE = re.compile(r"\b(?:in|at)\s+the\s+(centre|center|middle)\b(?!\s+(?:left|right))")
HALF_RE = re.compile(r"\b(?:on|to|at)\s+the\s+(left|right|top|bottom)\b(?:\s+(?:side|half|edge))?")
EMPTY_RE = re.compile(r"^[\W_]*(?:n/?a|none|nothing|tbd|\.\.\.)?[\W_]*$", re.I)


# ------------------------------------------------------------------------------------- results
@dataclasses.dataclass(frozen=True)
class Mention:
    """An entity mention: ``instruments`` / ``tissues`` are the canonical names the words can mean."""

    text: str
    instruments: frozenset[str]
    tissues: frozenset[str]
    negated: bool
    level: int
    start: int
    end: int


@dataclasses.dataclass(frozen=True)
class Relation:
    """⟨instrument, verb, target⟩ stated by a clause (names are candidate sets, see :class:`Mention`)."""

    instruments: frozenset[str]
    verb: str
    targets: frozenset[str]
    negated: bool
    level: int
    text: str


@dataclasses.dataclass(frozen=True)
class StateClaim:
    instruments: frozenset[str]
    state: str
    negated: bool
    level: int


@dataclasses.dataclass(frozen=True)
class Position:
    """A region stated for an entity (``names``: instrument and tissue candidates)."""

    names: frozenset[str]
    region: Region
    text: str
    level: int


@dataclasses.dataclass(frozen=True)
class PhaseClaim:
    phase: str  # Cholec80 canonical name
    negated: bool
    level: int


@dataclasses.dataclass(frozen=True)
class CVSClaim:
    criterion: str  # surgkit.vocab.CVS_CRITERIA name
    met: bool
    level: int


@dataclasses.dataclass
class ChainStatements:
    """Everything a chain states, per level (``levels`` is None when the markers are not 1, 2, 3)."""

    levels: dict[int, str] | None
    mentions: list[Mention] = dataclasses.field(default_factory=list)
    relations: list[Relation] = dataclasses.field(default_factory=list)
    states: list[StateClaim] = dataclasses.field(default_factory=list)
    positions: list[Position] = dataclasses.field(default_factory=list)
    phases: list[PhaseClaim] = dataclasses.field(default_factory=list)
    cvs: list[CVSClaim] = dataclasses.field(default_factory=list)
    verdicts: list[tuple[bool, int]] = dataclasses.field(default_factory=list)

    def empty_levels(self) -> list[int]:
        """Levels whose text is empty or a placeholder ("", "-", "N/A", "...")."""
        if self.levels is None:
            return []
        return [k for k in (1, 2, 3) if EMPTY_RE.match(self.levels.get(k, "").strip())]

    def in_level(self, items: list, level: int) -> list:
        return [x for x in items if x.level == level]


# ------------------------------------------------------------------------------------ lexicon
def _phrase_re(phrases: set[str]) -> re.Pattern[str]:
    """One alternation of whole-word phrases, longest first, spaces matching any whitespace."""
    alts = sorted(phrases, key=len, reverse=True)
    body = "|".join(r"\s+".join(re.escape(w) for w in p.split()) for p in alts)
    return re.compile(rf"\b(?:{body})\b")


def _key(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip())


@lru_cache(maxsize=1)
def _tables() -> dict:
    ent: dict[str, tuple[set[str], set[str]]] = {}
    for name, forms in INSTRUMENT_FORMS.items():
        for f in forms:
            ent.setdefault(_norm(f), (set(), set()))[0].add(name)
    for name, forms in TISSUE_FORMS.items():
        for f in forms:
            ent.setdefault(_norm(f), (set(), set()))[1].add(name)
    verbs = {_norm(f): v for v, forms in VERB_FORMS.items() for f in forms}
    states = {_norm(f): s for s, forms in STATE_FORMS.items() for f in forms}
    phases: dict[str, str] = {}
    for c80, ct50 in zip(CHOLEC80_PHASES, CHOLECT50_PHASES, strict=True):
        split = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", c80)
        for f in (c80, split, ct50, PHASE_READABLE[c80]):
            phases[_norm(f)] = c80
    phases.update(
        {"clipping and cutting": "ClippingCutting", "cleaning and coagulation": "CleaningCoagulation"}
    )
    phases["gallbladder extraction"] = "GallbladderRetraction"
    cvs = {_norm(f): c for c, forms in CVS_FORMS.items() for f in forms}
    return {
        "entity": ent,
        "entity_re": _phrase_re(set(ent)),
        "verb": verbs,
        "verb_re": _phrase_re(set(verbs)),
        "null_re": _phrase_re({_norm(f) for f in NULL_VERB_FORMS}),
        "state": states,
        "state_re": _phrase_re(set(states)),
        "phase": phases,
        "phase_re": _phrase_re(set(phases)),
        "cvs": cvs,
        "cvs_re": _phrase_re(set(cvs)),
    }


def _norm(text: str) -> str:
    """Lowercase; '_', '-' and "'s" become spaces; same length as the input (offsets are kept)."""
    low = text.lower().replace("_", " ").replace("-", " ").replace("’", "'")
    return low.replace("'s ", "   ")


# ------------------------------------------------------------------------------------- levels
def split_levels(think: str) -> dict[int, str] | None:
    """{1: text, 2: text, 3: text} when the three markers appear once each, in order; else None."""
    marks = list(LEVEL_RE.finditer(think or ""))
    if [int(m.group(1)) for m in marks] != [1, 2, 3]:
        return None
    out = {}
    for k, m in enumerate(marks):
        end = marks[k + 1].start() if k + 1 < len(marks) else len(think)
        out[int(m.group(1))] = think[m.end() : end].strip()
    return out


def parse_chain(think: str) -> ChainStatements:
    """Statements of a ``<think>`` body (see module docstring). Without valid level markers the whole
    text is read as one level 0, so claims are still checked."""
    levels = split_levels(think)
    out = ChainStatements(levels)
    parts = levels.items() if levels is not None else [(0, think or "")]
    for level, text in parts:
        _parse_level(text, level, out)
    return out


# ------------------------------------------------------------------------------------- reading
def _parse_level(text: str, level: int, out: ChainStatements) -> None:
    norm = _norm(text)
    for m in SENTENCE_RE.finditer(norm):
        _parse_sentence(m.group(0), level, out)


def _mask(s: str, spans: list[tuple[int, int]]) -> str:
    chars = list(s)
    for a, b in spans:
        chars[a:b] = " " * (b - a)
    return "".join(chars)


def _parse_sentence(s: str, level: int, out: ChainStatements) -> None:
    t = _tables()
    masked = []
    for m in t["phase_re"].finditer(s):
        negated = PHASE_NEG.search(s[: m.start()]) is not None
        out.phases.append(PhaseClaim(t["phase"][_key(m.group(0))], negated, level))
        masked.append(m.span())
    masked += _cvs_claims(s, level, out)
    s = _mask(s, masked)
    mentions = _mentions(s, level)
    out.mentions += mentions
    bare = _mask(s, [(m.start, m.end) for m in mentions])  # "grasping forceps" states no grasping
    out.relations += _relations(bare, mentions, level)
    out.states += _states(bare, mentions, level)
    out.positions += _positions(bare, mentions, level)


def _mentions(s: str, level: int) -> list[Mention]:
    t = _tables()
    found = []
    for m in t["entity_re"].finditer(s):
        inst, tis = t["entity"][_key(m.group(0))]
        negated = bool(NEG_BEFORE.search(s[: m.start()]) or NEG_AFTER.search(s[m.end() :]))
        found.append(Mention(m.group(0), frozenset(inst), frozenset(tis), negated, level, *m.span()))
    return found


def _verbs(s: str) -> list[tuple[str, int, int, bool]]:
    """(verb, start, end, negated) of every verb form and null-verb phrase in the sentence."""
    t = _tables()
    out = [("null_verb", *m.span(), False) for m in t["null_re"].finditer(s)]
    taken = [(a, b) for _, a, b, _ in out]
    for m in t["verb_re"].finditer(s):
        if any(a < m.end() and m.start() < b for a, b in taken):
            continue
        negated = VERB_NEG.search(s[: m.start()]) is not None
        out.append((t["verb"][_key(m.group(0))], *m.span(), negated))
    return sorted(out, key=lambda v: v[1])


def _relations(s: str, mentions: list[Mention], level: int) -> list[Relation]:
    """Relations of one sentence. Each verb takes as agents the instruments between the previous
    verb's object (or the sentence start) and itself -- or, when there are none ("… and dissects the
    plate"), the nearest instrument before it; its object is the first tissue after it, before the
    next instrument or verb. "<verb> by/with <instrument>" is passive: that instrument acts on the
    tissue before the verb."""
    verbs = _verbs(s)
    insts = [m for m in mentions if m.instruments]
    tissues = [m for m in mentions if m.tissues]
    out = []
    boundary = 0  # end of the previous verb's object (or of the previous verb)
    for k, (verb, a, b, negated) in enumerate(verbs):
        next_start = verbs[k + 1][1] if k + 1 < len(verbs) else len(s)
        after = [m for m in insts if b <= m.start < next_start]
        passive = [m for m in after if PASSIVE_BY.match(s[b : m.start])]
        if passive and verb != "null_verb":
            agents = passive[:1]
            objs = [m for m in tissues if boundary <= m.start < a][-1:]
            boundary = agents[0].end
        else:
            agents = [m for m in insts if boundary <= m.start < a] or [m for m in insts if m.start < a][-1:]
            stop = min([m.start for m in after if not m.tissues] + [next_start])
            objs = [m for m in tissues if b <= m.start < stop][:1] if verb != "null_verb" else []
            boundary = objs[0].end if objs else b
        targets = objs[0].tissues if objs else frozenset({"null_target"})
        for agent in agents:
            if agent.negated or agent in objs:
                continue
            out.append(Relation(agent.instruments, verb, targets, negated, level, s[a:b].strip()))
    return out


def _states(s: str, mentions: list[Mention], level: int) -> list[StateClaim]:
    t = _tables()
    insts = [m for m in mentions if m.instruments]
    out = []
    for m in t["state_re"].finditer(s):
        before = [i for i in insts if i.end <= m.start()]
        agent = before[-1] if before else (insts[0] if insts else None)
        if agent is None:
            continue
        negated = VERB_NEG.search(s[: m.start()]) is not None
        out.append(StateClaim(agent.instruments, t["state"][_key(m.group(0))], negated, level))
    return out


def _regions(s: str) -> list[tuple[Region, int, int]]:
    """Position phrases of a sentence with their regions: quadrants, then grid cells, then halves."""
    found: list[tuple[Region, int, int]] = []

    def free(a: int, b: int) -> bool:
        return not any(x < b and a < y for _, x, y in found)

    for m in QUAD_RE.finditer(s):
        horiz = m.group(1) or m.group(4)
        vert = m.group(2) or m.group(3)
        vert = "top" if vert in ("top", "upper") else "bottom"
        found.append((quadrant_region(f"{horiz}-{vert}"), *m.span()))
    for m in CELL_RE.finditer(s):
        if free(*m.span()):
            found.append((grid_region(ROW_WORDS[m.group(1)], COL_WORDS[m.group(2)]), *m.span()))
    for m in CENTRE_RE.finditer(s):
        if free(*m.span(1)):
            found.append((grid_region(1, 1), *m.span(1)))
    for m in HALF_RE.finditer(s):
        if free(*m.span(1)):
            word = m.group(1)
            x0, x1, y0, y1 = {
                "left": (0, 0.5, 0, 1),
                "right": (0.5, 1, 0, 1),
                "top": (0, 1, 0, 0.5),
                "bottom": (0, 1, 0.5, 1),
            }[word]
            found.append((Region(f"{word} half", x0, x1, y0, y1), *m.span(1)))
    return sorted(found, key=lambda f: f[1])


def _positions(s: str, mentions: list[Mention], level: int) -> list[Position]:
    out = []
    for region, a, b in _regions(s):
        before = [m for m in mentions if m.end <= a and not m.negated]
        after = [m for m in mentions if m.start >= b and not m.negated]
        entity = before[-1] if before else (after[0] if after else None)
        if entity is not None:
            out.append(Position(entity.instruments | entity.tissues, region, s[a:b], level))
    return out


def _cvs_claims(s: str, level: int, out: ChainStatements) -> list[tuple[int, int]]:
    """CVS criterion claims and the verdict of one sentence; returns the spans to mask.

    Numbered claims ("C2 no") are read first; a named criterion counts only in a sentence with a
    CVS predicate ("cleared", "separated", "entering", …), its status negated by a negation word
    between it and the next criterion of the sentence.
    """
    t = _tables()
    spans = []
    for m in CVS_NUMBER_RE.finditer(s):
        crit = CVS_NUMBERING[f"c{m.group(1)}"]
        out.cvs.append(CVSClaim(crit, m.group(2) in ("yes", "met", "true", "1"), level))
        spans.append(m.span())
    named = [m for m in t["cvs_re"].finditer(s) if not any(a < m.end() and m.start() < b for a, b in spans)]
    if named and CVS_PRED.search(s):
        groups: list[list[re.Match[str]]] = []
        for m in named:  # consecutive mentions of one criterion form one claim
            if groups and t["cvs"][_key(groups[-1][0].group(0))] == t["cvs"][_key(m.group(0))]:
                groups[-1].append(m)
            else:
                groups.append([m])
        for k, g in enumerate(groups):
            a = 0 if k == 0 else g[0].start()
            b = groups[k + 1][0].start() if k + 1 < len(groups) else len(s)
            window = _mask(s[a:b], [(m.start() - a, m.end() - a) for m in g])
            out.cvs.append(CVSClaim(t["cvs"][_key(g[0].group(0))], CVS_NEG.search(window) is None, level))
        spans.append((named[0].start(), len(s)))
    for m in ALL_MET_RE.finditer(s):  # "(not) all three criteria are met"
        out.verdicts.append((m.group(1) is None, level))
        spans.append((0, len(s)))
    v = VERDICT_RE.search(s)
    if v:
        out.verdicts.append((CVS_NEG.search(s[v.start() :]) is None, level))
        spans.append((0, len(s)))
    return spans
