"""Benchmark coverage: action / tool-localisation / MCQ records, Surg-R1 ms-swift and Surgery-R1-style
imports (and export), teacher chains through a fake endpoint."""

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from surgkit.reasoning.benchmarks import mcq_records, to_mcq
from surgkit.reasoning.cot import validate_chain
from surgkit.reasoning.endpoint import EndpointSettings
from surgkit.reasoning.evaluate import SURGVLM_HEADLINE, arena_score, compute_metrics
from surgkit.reasoning.importers import from_surgery_r1, from_swift, to_swift
from surgkit.reasoning.render import answer_payload, render_target
from surgkit.reasoning.scoring import answer_correct

from .helpers import phase_rec, rec


def test_world_records_cover_every_arena_benchmark(synth_world):
    from surgkit.reasoning.synth_adapter import build_from_world

    recs = build_from_world(synth_world).records
    tasks = {r.task for r in recs}
    assert {"phase", "action", "triplet", "cvs", "vqla", "tool_localization"} <= tasks
    # every benchmark of the SurgVLM Arena map has a group: perfect answers give 100 on each
    preds = {r.id: f"<answer>{answer_payload(r)}</answer>" for r in recs}
    m = compute_metrics(recs, preds)
    arena = arena_score(m, SURGVLM_HEADLINE)
    assert arena["missing"] == [] and arena["score"] > 99.0
    for r in recs:  # and every template chain of the new records passes the validator
        if r.task in ("action", "tool_localization"):
            assert validate_chain(render_target(r, "cot"), r) == [], r.id


def test_copesd_action_question_does_not_leak_the_instruction(synth_world):
    from surgkit.reasoning.synth_adapter import build_from_world

    actions = [r for r in build_from_world(synth_world).records if r.task == "action"]
    assert actions
    for r in actions[:20]:
        assert (
            re.search(rf"\b{r.answer}\b", r.question) is None
            and r.provenance["instruction"] not in r.question
        )
        assert r.labels["action"] == r.answer


def test_mcq_copies_are_seeded_and_scored_by_letter():
    r = phase_rec()
    vocab = [
        "Preparation",
        "CalotTriangleDissection",
        "ClippingCutting",
        "GallbladderDissection",
        "CleaningCoagulation",
    ]
    a, b = to_mcq(r, vocab), to_mcq(r, vocab)
    assert a.options == b.options and len(a.options) == 4 and a.options[a.answer_index] == r.answer
    letter = chr(65 + a.answer_index)
    assert answer_correct(f"<answer>{letter}</answer>", a)
    wrong = chr(65 + (a.answer_index + 1) % 4)
    assert not answer_correct(f"<answer>{wrong}</answer>", a)
    copies = mcq_records([r, rec(id="t/2", answer="Preparation")])
    assert [c.id for c in copies] == ["t/v1/10/q0/mcq", "t/2/mcq"]


@pytest.fixture
def frame(tmp_path):
    Image.new("RGB", (200, 100), (90, 30, 30)).save(tmp_path / "f.png")
    return tmp_path / "f.png"


def test_import_surg_r1_swift_jsonl(tmp_path, frame):
    lines = [
        {
            "messages": [
                {
                    "role": "user",
                    "content": "<image>Which surgical phase is being performed?\nA. Preparation\nB. ClippingCutting\nC. CalotTriangleDissection",
                },
                {"role": "assistant", "content": "C. CalotTriangleDissection"},
            ],
            "images": [str(frame)],
        },
        {
            "messages": [
                {
                    "role": "user",
                    "content": "<image>Find <ref-object> in the format of bbox (x1,y1), (x2,y2).",
                },
                {"role": "assistant", "content": "<bbox>"},
            ],
            "images": [str(frame)],
            "objects": {"ref": ["grasper"], "bbox": [[10, 20, 60, 80]]},
        },
        {"messages": [{"role": "user", "content": "<image>x"}], "images": ["missing.png"]},
        {
            "messages": [
                {"role": "user", "content": "<image>Phase?\nA. x\nB. y"},
                {"role": "assistant", "content": "Q"},
            ],
            "images": [str(frame)],
        },
    ]
    p = tmp_path / "surg_r1.jsonl"
    p.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    recs, errors = from_swift(p)
    assert [r.task for r in recs] == ["phase", "tool_localization"]
    mcq, loc = recs
    assert (
        mcq.options == ["Preparation", "ClippingCutting", "CalotTriangleDissection"] and mcq.answer_index == 2
    )
    assert mcq.question == "Which surgical phase is being performed?"
    assert loc.answer_box() == (10.0, 20.0, 60.0, 80.0) and loc.answer == "grasper"
    assert [e.line for e in errors] == [3, 4, 5]
    assert "image not found" in str(errors[0]) and "names no option" in str(errors[1])
    # round trip through the export
    back = to_swift(recs)
    assert back[0]["messages"][1]["content"] == "C. CalotTriangleDissection"
    assert back[1]["objects"] == {"ref": ["grasper"], "bbox": [[10.0, 20.0, 60.0, 80.0]]}


def test_import_surgery_r1_style_json(tmp_path, frame):
    good_chain = (
        "<think>Level 1: The bipolar forceps is in the upper left.\nLevel 2: Only the bipolar forceps is named.\n"
        "Level 3: So it is located at left-top.</think><answer>left-top</answer>"
    )
    items = [
        {
            "image": "f.png",
            "question": "Where is bipolar_forceps located?",
            "answer": "left-top",
            "bbox": [1, 1, 40, 30],
            "cot": good_chain,
        },
        {
            "image": "f.png",
            "question": "Where is bipolar_forceps located?",
            "answer": "left-top",
            "bbox": [1, 1, 40, 30],
            "cot": good_chain.replace("upper left", "lower right"),
        },
        {
            "image": "f.png",
            "question": "Find the gallbladder.",
            "answer": "gallbladder",
            "bbox": [100, 10, 190, 90],
        },
        {"image": "f.png", "question": "What is shown?", "answer": "kidney"},
        {"image": "f.png", "question": "Where?", "answer": "left-top", "bbox": [1, 1, 400, 30]},
    ]
    p = tmp_path / "sr1.json"
    p.write_text(json.dumps(items))
    recs, errors = from_surgery_r1(p)
    assert [r.task for r in recs] == ["vqla", "vqla", "grounding", "vqla"]
    assert recs[0].answer_box() == (0.0, 0.0, 40.0, 30.0)  # VQLA 1-based inclusive pixels
    assert recs[0].reasoning["source"] == "teacher" and "upper left" in recs[0].reasoning["level1"]
    assert recs[1].reasoning is None and recs[1].provenance["chain_rejected"]  # a false position is refused
    assert recs[2].labels["object"] == "gallbladder" and recs[3].question_type == "organ"
    assert len(errors) == 1 and errors[0].line == 5 and "outside the 200x100 image" in str(errors[0])


class Teacher(BaseHTTPRequestHandler):
    """Answers with the template chain of the question's record, corrupted for every second record."""

    chains: dict[str, str] = {}

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = body["messages"][1]["content"][-1]["text"]
        assert "Correct answer:" in text and "Annotated facts:" in text
        question = text.split("\n")[0][len("Question: ") :]
        chain = Teacher.chains[question]
        out = json.dumps({"choices": [{"message": {"content": chain}, "finish_reason": "stop"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


def test_teacher_chains_validated_kept_or_replaced_by_templates(tmp_path, synth_world):
    from surgkit.reasoning.cot import present_instruments
    from surgkit.reasoning.synth_adapter import build_from_world
    from surgkit.reasoning.teacher import teach

    recs = [r for r in build_from_world(synth_world).records if r.task == "phase"][:4]
    for k, r in enumerate(recs):
        r.question = f"{r.question} #{k}"  # one question per record for the fake teacher
        chain = render_target(r, "cot").replace("Level 1:", "Level 1: Seen from above,")
        absent = next(
            t for t in ("clipper", "scissors", "irrigator", "bipolar") if t not in present_instruments(r)
        )
        Teacher.chains[r.question] = (
            chain if k % 2 == 0 else chain.replace("Level 1:", f"Level 1: A {absent} is visible.")
        )
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Teacher)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        ep = EndpointSettings(url=f"http://127.0.0.1:{srv.server_port}/v1", model="big-vlm", concurrency=2)
        new, stats = teach(recs, ep, synth_world, tmp_path / "work")
    finally:
        srv.shutdown()
    assert stats["teacher_accepted"] == 2 and stats["template_fallback"] == 2
    assert stats["rejected_by_kind"] == {"instrument": 2}
    assert [r.reasoning["source"] for r in new] == ["teacher", "template", "teacher", "template"]
    assert (
        new[0].reasoning["level1"].startswith("Seen from above") and new[0].reasoning["teacher"] == "big-vlm"
    )
    assert (tmp_path / "work" / "teacher.jsonl").is_file()


def test_world_record_ids_are_unique_and_read_back(synth_world, tmp_path):
    from surgkit.reasoning.records import read_records, write_jsonl
    from surgkit.reasoning.synth_adapter import build_from_world

    recs = build_from_world(synth_world).records
    write_jsonl(tmp_path / "r.jsonl", recs)
    assert len(read_records(tmp_path / "r.jsonl")) == len(recs)  # read_records refuses duplicate ids
