"""Prompt vocabularies for zero-shot classification: templates as data, label normalisation.

Templates (``templates.json`` beside this file, or a user JSON file of the same shape) are format
strings with named fields, one list per task (vlm_bench spec §3; seed 001 §4.1):

* instrument: ``an image showing a {instrument} in use``
* triplet:    ``I use a {instrument} to {verb} the {target}``
* verb:       ``I am performing {verb}`` (the secondary prompt, whose heatmap gives ARS)

Class labels are normalised before rendering and matching: an optional display-name map,
CamelCase split, ``_``/``-`` to spaces, lower case (``SpecimenBag`` -> ``specimen bag``,
``cystic_duct`` -> ``cystic duct``). The a/an article fix is off by default so the templates stay
literal. Triplet pools (:data:`TRIPLET_POOLS`): ``valid`` = the 94 CholecT50 triplets without a
null verb or target (default), ``all`` = the 100 CholecT50 triplets with ``null_verb`` /
``null_target`` rendered as "no action" / "nothing", ``product`` = every instrument x verb x
target combination without nulls (6 x 9 x 14 = 756; the seed's "all possible instrument, verb,
and target classes"). Every rendered prompt and its template id are kept and written into the
results.
"""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from surgkit.errors import SurgkitError
from surgkit.utils.inputs import as_dict, read_json
from surgkit.vocab import INSTRUMENTS, TARGETS, TRIPLET_COMPONENTS, VERBS

TASKS = ("instrument", "triplet", "verb")
DEFAULT_TEMPLATES = Path(__file__).with_name("templates.json")
NULL_LABELS = ("null_verb", "null_target")
NULL_DISPLAY = {"null_verb": "no action", "null_target": "nothing"}
TRIPLET_POOLS = ("valid", "all", "product")


def normalise_label(label: str, display: Mapping[str, str] | None = None) -> str:
    """Display-map lookup, CamelCase split, ``_``/``-`` -> space, lower case, single spaces."""
    text = (display or {}).get(label, label)
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    text = re.sub(r"[_\-]+", " ", text)
    return " ".join(text.lower().split())


def fix_articles(text: str) -> str:
    """``a`` -> ``an`` before a word starting with a vowel letter (simple orthographic rule)."""
    return re.sub(r"\b([Aa]) (?=[aeiouAEIOU])", lambda m: m.group(1) + "n ", text)


@dataclasses.dataclass(frozen=True)
class Template:
    id: str
    text: str

    def fields(self) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(self.text) if name}


def load_templates(path: str | Path | None = None) -> dict[str, list[Template]]:
    """Read a templates JSON file: ``{task: [{"id": ..., "text": ...}, ...]}``."""
    path = Path(path) if path is not None else DEFAULT_TEMPLATES
    raw = as_dict(read_json(path, "templates file"), path, "top level")
    out: dict[str, list[Template]] = {}
    for task in TASKS:
        items = raw.get(task, [])
        try:
            out[task] = [Template(str(t["id"]), str(t["text"])) for t in items]
        except (KeyError, TypeError):
            raise SurgkitError(f"{path}: every '{task}' template needs an 'id' and a 'text'") from None
    return out


@dataclasses.dataclass
class ClassPrompts:
    """One class: its key (normalised label), rendered fields, prompts and their template ids."""

    key: str
    fields: dict[str, str]
    prompts: list[str]
    template_ids: list[str]
    components: tuple[int, ...] | None = None  # (instrument, verb, target) vocab ids for triplets


@dataclasses.dataclass
class PromptSet:
    """The candidate classes of one task with their rendered prompts."""

    task: str
    classes: list[ClassPrompts]

    def __post_init__(self) -> None:
        keys = [c.key for c in self.classes]
        if len(set(keys)) != len(keys):
            raise SurgkitError(f"duplicate class names in the {self.task} prompt vocabulary")
        self._index = {k: i for i, k in enumerate(keys)}

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.classes]

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, key: str, where: str = "") -> int:
        """Index of a class key; a clear error for names not in the prompt vocabulary."""
        try:
            return self._index[key]
        except KeyError:
            at = f"{where}: " if where else ""
            shown = ", ".join(self.keys[:12]) + (" ..." if len(self) > 12 else "")
            raise SurgkitError(
                f"{at}class '{key}' is not in the {self.task} prompt vocabulary ({shown})"
            ) from None

    def get(self, key: str, default: int = -1) -> int:
        """Index of a class key, or ``default`` when it is not in the vocabulary."""
        return self._index.get(key, default)

    def flat(self) -> tuple[list[str], list[int]]:
        """All prompts and, per prompt, its class index (for batched encoding and ensembling)."""
        prompts, owner = [], []
        for i, c in enumerate(self.classes):
            prompts += c.prompts
            owner += [i] * len(c.prompts)
        return prompts, owner

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "classes": [dataclasses.asdict(c) for c in self.classes]}


def _render(
    task: str,
    templates: Sequence[Template],
    key: str,
    fields: dict[str, str],
    articles: bool,
    components: tuple[int, ...] | None = None,
) -> ClassPrompts:
    if not templates:
        raise SurgkitError(f"no templates for task '{task}'")
    prompts = []
    for t in templates:
        missing = t.fields() - set(fields)
        if missing:
            raise SurgkitError(f"template '{t.id}' uses unknown field(s) {sorted(missing)} for task '{task}'")
        text = t.text.format(**fields)
        prompts.append(fix_articles(text) if articles else text)
    return ClassPrompts(key, fields, prompts, [t.id for t in templates], components)


def instrument_prompts(
    labels: Iterable[str],
    templates: dict[str, list[Template]] | None = None,
    display: Mapping[str, str] | None = None,
    articles: bool = False,
) -> PromptSet:
    """Instrument classification prompts; class keys are the normalised labels."""
    tpl = (templates or load_templates())["instrument"]
    classes = []
    for label in labels:
        key = normalise_label(label)
        classes.append(
            _render("instrument", tpl, key, {"instrument": normalise_label(label, display)}, articles)
        )
    return PromptSet("instrument", classes)


def _null_ok(label: str, null_policy: str) -> bool:
    if null_policy not in ("exclude", "render"):
        raise SurgkitError(f"unknown null policy '{null_policy}' (exclude or render)")
    return null_policy == "render" or label not in NULL_LABELS


def verb_prompts(
    verbs: Iterable[str] = VERBS,
    templates: dict[str, list[Template]] | None = None,
    display: Mapping[str, str] | None = None,
    articles: bool = False,
    null_policy: str = "exclude",
) -> PromptSet:
    """Secondary-prompt vocabulary ``I am performing {verb}``; ``null_verb`` excluded by default."""
    tpl = (templates or load_templates())["verb"]
    shown = {**NULL_DISPLAY, **(display or {})}
    classes = [
        _render("verb", tpl, normalise_label(v), {"verb": normalise_label(v, shown)}, articles)
        for v in verbs
        if _null_ok(v, null_policy)
    ]
    return PromptSet("verb", classes)


def triplet_key(instrument: str, verb: str, target: str) -> str:
    """Class key of a triplet: its CholecT50 name, e.g. ``grasper,retract,gallbladder``."""
    return f"{instrument},{verb},{target}"


def pool_components(pool: str = "valid") -> list[tuple[int, int, int]]:
    """(instrument, verb, target) vocab ids of a triplet pool (see the module docstring)."""
    if pool == "valid":
        return [
            c
            for c in TRIPLET_COMPONENTS
            if VERBS[c[1]] not in NULL_LABELS and TARGETS[c[2]] not in NULL_LABELS
        ]
    if pool == "all":
        return list(TRIPLET_COMPONENTS)
    if pool == "product":
        verbs = [v for v, name in enumerate(VERBS) if name not in NULL_LABELS]
        targets = [t for t, name in enumerate(TARGETS) if name not in NULL_LABELS]
        return [(i, v, t) for i in range(len(INSTRUMENTS)) for v in verbs for t in targets]
    raise SurgkitError(f"unknown triplet pool {pool!r} (choose from {', '.join(TRIPLET_POOLS)})")


def triplet_prompts(
    triplets: Iterable[tuple[int, int, int]] | None = None,
    templates: dict[str, list[Template]] | None = None,
    display: Mapping[str, str] | None = None,
    articles: bool = False,
    pool: str = "valid",
) -> PromptSet:
    """Triplet prompts over (instrument, verb, target) vocab ids: ``triplets``, or the ``pool``.

    Null components are rendered through the display map ("no action", "nothing").
    """
    tpl = (templates or load_templates())["triplet"]
    shown = {**NULL_DISPLAY, **(display or {})}
    classes = []
    for comp in triplets if triplets is not None else pool_components(pool):
        i, v, t = (int(c) for c in comp)
        fields = {
            "instrument": normalise_label(INSTRUMENTS[i], shown),
            "verb": normalise_label(VERBS[v], shown),
            "target": normalise_label(TARGETS[t], shown),
        }
        key = triplet_key(INSTRUMENTS[i], VERBS[v], TARGETS[t])
        classes.append(_render("triplet", tpl, key, fields, articles, (i, v, t)))
    return PromptSet("triplet", classes)
