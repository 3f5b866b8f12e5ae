"""Hypothesis fuzzing of every dataset reader and every ``surgkit eval`` input kind.

Each example takes a valid input, damages one file the way real files get damaged (random bytes,
a number or a word replaced by an adversarial token, a JSON value replaced by a value of the wrong
type, truncation, a duplicated or deleted line) and runs the real command in-process. The contract:
either the command succeeds, or it exits 2 with exactly one ``error:`` line naming the input, no
traceback, nothing on stdout (no partial output) and no file written anywhere under the input.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from surgkit.vocab import MGEARS_ITEMS

from .conftest import tree_state

EXAMPLES = 12
FUZZ = settings(
    max_examples=EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)

NUMBERS = [
    "-1",
    "-0",
    "00",
    "9" * 30,
    "9" * 5000,
    "nan",
    "inf",
    "1e309",
    "2.5",
    "²",
    "١",
    "0x1F",
    "1_0",
    "",
    " ",
]
WORDS = [
    "[/]",
    "[bold red]x",
    "..",
    "../../x",
    "a/b",
    "\x00",
    "\x1b[2J",
    "\u202e",
    "é",
    "true",
    "null",
    '"',
    "|",
    ",",
]
JSON_VALUES = [
    '"3"',
    "NaN",
    "Infinity",
    "-1",
    "2.5",
    "true",
    "null",
    "[]",
    "{}",
    "9" * 5000,
    '"[/]"',
    '"../x"',
]


def run_cli(*args: object) -> tuple[int, str, str]:
    from surgkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return code, out.getvalue(), err.getvalue()


# ------------------------------------------------------------------------------ mutations
def _tokens(raw: bytes, pattern: bytes) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(pattern, raw)]


def mutate(raw: bytes, data: st.DataObject, is_json: bool) -> bytes:
    kinds = ["insert", "number", "word", "truncate", "dup-line", "drop-line"] + (
        ["json"] * 3 if is_json else []
    )
    kind = data.draw(st.sampled_from(kinds), label="mutation")
    lines = raw.split(b"\n")
    if kind == "insert":
        at = data.draw(st.integers(0, len(raw)), label="at")
        return raw[:at] + data.draw(st.binary(min_size=1, max_size=6), label="bytes") + raw[at:]
    if kind == "truncate":
        return raw[: data.draw(st.integers(0, max(0, len(raw) - 1)), label="keep")]
    if kind in ("dup-line", "drop-line") and len(lines) > 1:
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        return b"\n".join(lines[: i + 1] + ([lines[i]] if kind == "dup-line" else []) + lines[i + 1 :])
    if kind == "json":
        return _json_mutation(raw, data)
    spans = _tokens(raw, rb"-?[0-9]+(?:\.[0-9]+)?" if kind == "number" else rb"[A-Za-z_]{2,}")
    if not spans:
        return raw + b"\n\x00"
    a, b = spans[data.draw(st.integers(0, len(spans) - 1), label="token")]
    new = data.draw(st.sampled_from(NUMBERS if kind == "number" else WORDS), label="replacement")
    return raw[:a] + new.encode() + raw[b:]


def _json_mutation(raw: bytes, data: st.DataObject) -> bytes:
    """Replace one value anywhere in the document by a value of another JSON type."""
    doc = json.loads(raw)
    paths: list[tuple] = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in list(node.items())[:20]:
                walk(v, (*path, k))
        elif isinstance(node, list):
            for i, v in enumerate(node[:20]):
                walk(v, (*path, i))

    walk(doc, ())
    path = data.draw(st.sampled_from(paths[1:] or paths), label="json path")
    marker = "__FUZZ__"
    if not path:
        return data.draw(st.sampled_from(JSON_VALUES), label="value").encode()
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = marker
    return (
        json.dumps(doc)
        .replace(f'"{marker}"', data.draw(st.sampled_from(JSON_VALUES), label="value"))
        .encode()
    )


def check_contract(code: int, stdout: str, err: str, named: str, before: dict, root: Path) -> None:
    assert "Traceback" not in err, err
    if code == 0:
        return
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert named in lines[0], err
    assert stdout == "", stdout  # no partial output
    assert tree_state(root) == before  # nothing written next to the inputs


# ------------------------------------------------------------------------------ datasets
@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    from surgkit.synth.generate import generate_world

    root = tmp_path_factory.mktemp("fuzz-world")
    generate_world(root, preset="tiny", seed=1, layouts="cholec80,cholect50,endoscapes,boxes,vqla,copesd,jigsaws",
                   progress=False)  # fmt: skip
    return root


def _hand_fixtures(base: Path) -> dict[str, Path]:
    def write(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    names = ["TrocarPlacement"] * 3 + ["Preparation"] * 3
    write(base / "m2cai16/train_dataset/workflow_video_01.txt",
          "Frame\tPhase\n" + "".join(f"{i}\t{n}\n" for i, n in enumerate(names)))  # fmt: skip
    for v in (1, 12, 21):
        write(base / f"autolaparo/labels/label_{v:02d}.txt",
              "Frame\tPhase\n" + "".join(f"{i}\t{1 + i // 2}\n" for i in range(6)))  # fmt: skip
    write(base / "endovis17/vqla/label/seq1_frame10.txt",
          "What organ is being operated?|kidney|1, 1, 640, 512\n"
          "What is the state of bipolar_forceps?|Tissue_Manipulation|410, 220, 780, 690\n")  # fmt: skip
    write(base / "clinical/videos.csv", "id,path,surgeon,procedure\n"
          + "".join(f"v{k},videos/v{k}.mp4,S{k % 2},rarp\n" for k in range(3)))  # fmt: skip
    write(base / "clinical/ratings.csv", "video,segment,start,end,rater," + ",".join(MGEARS_ITEMS) + "\n"
          + "".join(f"v{k},anastomosis,1,60,R1,{1 + k},2,3,4,5\n" for k in range(3)))  # fmt: skip
    return {k: base / k for k in ("m2cai16", "autolaparo", "endovis17", "clinical")}


def _targets(world: Path, hand: dict[str, Path]) -> list[tuple[str, Path, str]]:
    """(dataset, root, file to damage relative to root)."""
    vqa = world / "endovis18_vqla" / "EndoVis-18-VQA"
    qa = next((vqa / "seq_1" / "vqla" / "label").glob("*.txt")).relative_to(vqa)
    return [
        ("cholec80", world / "cholec80", "phase_annotations/video01-phase.txt"),
        ("cholec80", world / "cholec80", "tool_annotations/video02-tool.txt"),
        ("cholect50", world / "cholect50", "labels/VID01.json"),
        ("endoscapes", world / "endoscapes", "all_metadata.csv"),
        ("endoscapes", world / "endoscapes", "train/annotation_coco.json"),
        ("endoscapes", world / "endoscapes", "train_vids.txt"),
        ("cholec80_boxes", world / "cholec80_boxes", "cholec80_boxes.csv"),
        ("copesd", world / "copesd", "copesd.json"),
        ("endovis18_vqla", vqa, qa.as_posix()),
        ("jigsaws", world / "jigsaws", "Suturing/transcriptions/Suturing_B001.txt"),
        ("jigsaws", world / "jigsaws", "Suturing/meta_file_Suturing.txt"),
        ("m2cai16", hand["m2cai16"], "train_dataset/workflow_video_01.txt"),
        ("autolaparo", hand["autolaparo"], "labels/label_01.txt"),
        ("endovis17_vqla", hand["endovis17"], "vqla/label/seq1_frame10.txt"),
        ("clinical_skill", hand["clinical"], "ratings.csv"),
        ("clinical_skill", hand["clinical"], "videos.csv"),
    ]


TARGET_IDS = [f"t{i}" for i in range(16)]


@pytest.fixture(scope="module")
def targets(world, tmp_path_factory):
    return _targets(world, _hand_fixtures(tmp_path_factory.mktemp("hand")))


@pytest.mark.parametrize("index", range(16), ids=TARGET_IDS)
def test_fuzz_dataset_readers(targets, index):
    dataset, src, rel = targets[index]
    raw = (src / rel).read_bytes()
    assert run_cli("data", "check", "-d", dataset, "-r", src, "--labels-only")[0] == 0  # valid as given

    @FUZZ
    @given(data=st.data())
    def one(data):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "ds"
            shutil.copytree(src, root, symlinks=True)
            (root / rel).write_bytes(mutate(raw, data, rel.endswith(".json")))
            before = tree_state(root)
            code, stdout, err = run_cli("data", "check", "-d", dataset, "-r", root, "--labels-only", "--json")
            check_contract(code, stdout, err, str(root), before, root)

    one()


# ---------------------------------------------------------------------------------- eval
def _eval_inputs(base: Path) -> list[tuple[str, list[str], Path]]:
    """(name, command with {P} for the damaged file, valid file to damage)."""
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 7, 30)
    pred = (lab + (rng.random(30) < 0.3)) % 7
    base.mkdir(parents=True, exist_ok=True)

    def put(name: str, text: str) -> Path:
        (base / name).write_text(text)
        return base / name

    def phase_csv(v):
        return "video,frame,phase\n" + "".join(f"v1,{i},{x}\n" for i, x in enumerate(v))

    labels_csv = put("labels.csv", phase_csv(lab))
    labels_json = put("labels.json", json.dumps({"v1": lab.tolist()}))
    (base / "ltxt").mkdir()
    (base / "ptxt").mkdir()
    put("ltxt/video1-phase.txt", "Frame\tPhase\n" + "".join(f"{i}\t{x}\n" for i, x in enumerate(lab)))
    ptxt = put("ptxt/video1-phase.txt", "Frame\tPhase\n" + "".join(f"{i}\t{x}\n" for i, x in enumerate(pred)))
    head = "video,frame," + ",".join(f"c{k}" for k in range(100)) + "\n"
    t = (rng.random((6, 100)) < 0.1).astype(int)
    s = rng.random((6, 100))
    tl = put(
        "trip_labels.csv", head + "".join(f"v1,{i}," + ",".join(map(str, r)) + "\n" for i, r in enumerate(t))
    )
    tp = put(
        "trip_scores.csv",
        head + "".join(f"v1,{i}," + ",".join(f"{x:.3f}" for x in r) + "\n" for i, r in enumerate(s)),
    )
    skill_csv = put(
        "skill.csv",
        "fold,true,pred,trial\n" + "".join(f"{i % 2},{10 + i},{11 + i % 3},t{i}\n" for i in range(8)),
    )
    skill_json = put(
        "skill.json", json.dumps([{"fold": i % 2, "true": 10 + i, "pred": 11 + i % 3} for i in range(8)])
    )
    vq_head = "answer_true,answer_pred,gt_x1,gt_y1,gt_x2,gt_y2,pred_x1,pred_y1,pred_x2,pred_y2\n"
    vq_csv = put(
        "vqla.csv",
        vq_head
        + "kidney,kidney,1,1,100,90,0.0,0.0,0.1,0.1\nleft-top,right-top,5,5,600,500,0.1,0.1,0.4,0.5\n",
    )
    vq_json = put(
        "vqla.json",
        json.dumps([{"answer_true": "kidney", "answer_pred": 3}, {"answer_true": 1, "answer_pred": 1}]),
    )
    return [
        ("phase-csv", ["eval", "phase", labels_csv, "{P}"], put("pred.csv", phase_csv(pred))),
        (
            "phase-json",
            ["eval", "phase", labels_json, "{P}"],
            put("pred.json", json.dumps({"v1": pred.tolist()})),
        ),
        ("phase-txt", ["eval", "phase", base / "ltxt", "{P}"], ptxt),
        ("triplet-csv", ["eval", "triplet", tl, "{P}"], tp),
        ("skill-csv", ["eval", "skill", "{P}"], skill_csv),
        ("skill-json", ["eval", "skill", "{P}"], skill_json),
        ("vqla-csv", ["eval", "vqla", "{P}"], vq_csv),
        ("vqla-json", ["eval", "vqla", "{P}"], vq_json),
    ]


EVAL_IDS = [
    "phase-csv",
    "phase-json",
    "phase-txt",
    "triplet-csv",
    "skill-csv",
    "skill-json",
    "vqla-csv",
    "vqla-json",
]


@pytest.fixture(scope="module")
def eval_inputs(tmp_path_factory):
    return _eval_inputs(tmp_path_factory.mktemp("eval") / "in")


@pytest.mark.parametrize("index", range(8), ids=EVAL_IDS)
def test_fuzz_eval_inputs(eval_inputs, index):
    name, command, valid = eval_inputs[index]
    raw = valid.read_bytes()
    code, stdout, err = run_cli(*[str(valid) if c == "{P}" else c for c in command], "--json")
    assert code == 0, err
    json.loads(stdout)

    @FUZZ
    @given(data=st.data())
    def one(data):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            damaged = folder / valid.parent.name / valid.name
            damaged.parent.mkdir()
            damaged.write_bytes(mutate(raw, data, valid.suffix == ".json"))
            target = damaged.parent if name == "phase-txt" else damaged
            args = [str(target) if c == "{P}" else c for c in command]
            before = tree_state(folder)
            code, stdout, err = run_cli(*args, "--json")
            check_contract(code, stdout, err, str(folder), before, folder)
            if code == 0:
                json.loads(stdout)  # a success prints one complete JSON document

    one()
