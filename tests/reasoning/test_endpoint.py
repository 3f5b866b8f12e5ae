"""Endpoint evaluation against a fake OpenAI-compatible HTTP server started by the test.

The server answers each record by a script read from the question (``[null]``, ``[refusal]``,
``[length]``, ``[500x2]`` = fail twice then answer, ``[slow]``, ``[400]``, ``[401]``), counts requests per
record and records how many requests were in flight at once.
"""

import contextlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from surgkit.errors import SurgkitError
from surgkit.reasoning.endpoint import Client, EndpointError, EndpointSettings
from surgkit.reasoning.evaluate import compute_metrics
from surgkit.reasoning.records import Record
from surgkit.reasoning.runners import PREDICTIONS, read_prediction_rows, run_eval

RIGHT = "<think>Level 1: a\nLevel 2: b\nLevel 3: c</think><answer>CalotTriangleDissection</answer>"


class FakeOpenAI(BaseHTTPRequestHandler):
    lock = threading.Lock()
    counts: dict[str, int] = {}
    in_flight = 0
    max_in_flight = 0
    delay = 0.05
    bodies: list[dict] = []

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = body["messages"][1]["content"]
        assert user[0]["image_url"]["url"].startswith("data:image/png;base64,")
        question = user[-1]["text"]
        cls = FakeOpenAI
        with cls.lock:
            cls.bodies.append(body)
            cls.counts[question] = cls.counts.get(question, 0) + 1
            n = cls.counts[question]
            cls.in_flight += 1
            cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
        time.sleep(2.0 if "[slow]" in question and n == 1 else cls.delay)
        with cls.lock:  # before replying: the client may send its next request as soon as it has the reply
            cls.in_flight -= 1
        with contextlib.suppress(BrokenPipeError):  # the client gave up (timeout) before the reply
            self._answer(question, n)

    def _answer(self, question: str, n: int) -> None:
        m = re.search(r"\[(\d{3})x(\d)\]", question)
        if m and n <= int(m.group(2)):
            return self._send(int(m.group(1)), {"error": {"message": "busy"}}, {"Retry-After": "0"})
        for code in ("400", "401"):
            if f"[{code}]" in question:
                return self._send(int(code), {"error": {"message": f"nope {code}"}})
        msg: dict = {"role": "assistant", "content": RIGHT}
        finish = "stop"
        if "[null]" in question:
            msg["content"] = None
        elif "[refusal]" in question:
            msg = {"role": "assistant", "content": None, "refusal": "I cannot help with that."}
        elif "[length]" in question:
            finish = "length"
        self._send(200, {"choices": [{"message": msg, "finish_reason": finish}]})

    def _send(self, code: int, obj: dict, headers: dict | None = None) -> None:
        out = json.dumps(obj).encode()
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    FakeOpenAI.counts, FakeOpenAI.bodies = {}, []
    FakeOpenAI.in_flight = FakeOpenAI.max_in_flight = 0
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}/v1"
    srv.shutdown()


def records(root, tags):
    """Phase records whose questions carry the server's script tags (one image written to ``root``)."""
    from PIL import Image

    Image.new("RGB", (32, 32), (120, 40, 40)).save(root / "f.png")
    return [
        Record.from_dict(
            dict(
                id=f"e/{k}",
                dataset="e",
                split="test",
                video_id="v",
                images=[dict(path="f.png", width=32, height=32)],
                task="phase",
                question=f"Which phase? {tag}",
                answer="CalotTriangleDissection",
                frame_index=k,
            )
        )
        for k, tag in enumerate(tags)
    ]


def settings(url, **kw):
    base = dict(
        url=url, model="served", timeout=1.0, concurrency=4, retries=3, backoff=0.01, max_backoff=0.05
    )
    return EndpointSettings(**{**base, **kw})


def test_bad_answers_are_recorded_as_unparseable_not_fatal(server, tmp_path):
    tags = ["[ok]", "[null]", "[refusal]", "[length]", "[500x2]", "[slow]", "[400]", "[ok2]"]
    recs = records(tmp_path, tags)
    m = run_eval(recs, tmp_path / "ev", tmp_path, endpoint=settings(server))
    g = m["groups"]["e/phase"]
    # right: ok, ok2, the 500-twice one (retried) and the slow one (timed out once, retried)
    assert g["accuracy"] == pytest.approx(4 / 8) and g["unparseable_answers"] == 4
    assert m["statuses"] == {"length": 1, "null": 1, "ok": 4, "refusal": 1, "rejected": 1}
    assert m["endpoint_retries"] == 3  # two 500s and one timeout
    assert FakeOpenAI.counts["Which phase? [500x2]"] == 3 and FakeOpenAI.counts["Which phase? [slow]"] == 2
    rows = read_prediction_rows(tmp_path / "ev" / PREDICTIONS)
    assert rows["e/2"]["status"] == "refusal" and "cannot help" in rows["e/2"]["detail"]
    assert rows["e/3"]["completion"] == RIGHT and rows["e/3"]["status"] == "length"  # kept, not scored
    assert 1 < FakeOpenAI.max_in_flight <= 4  # concurrent, and bounded
    body = FakeOpenAI.bodies[0]
    assert (
        body["model"] == "served"
        and body["temperature"] == 0.0
        and "<think>" in body["messages"][0]["content"]
    )


def test_concurrency_bound_is_respected(server, tmp_path):
    recs = records(tmp_path, [f"[ok{k}]" for k in range(12)])
    FakeOpenAI.delay = 0.1
    try:
        run_eval(recs, tmp_path / "ev", tmp_path, endpoint=settings(server, concurrency=3))
    finally:
        FakeOpenAI.delay = 0.05
    assert FakeOpenAI.max_in_flight == 3


def test_exhausted_retries_stop_with_progress_saved_and_resume(server, tmp_path):
    recs = records(tmp_path, ["[ok]", "[ok1]", "[503x9]", "[ok3]"])
    with pytest.raises(SurgkitError, match=r"HTTP 503 for record 'e/2' after 3 attempts"):
        run_eval(recs, tmp_path / "ev", tmp_path, endpoint=settings(server, retries=2, concurrency=1))
    saved = read_prediction_rows(tmp_path / "ev" / PREDICTIONS)
    assert set(saved) == {"e/0", "e/1"}  # the answers before the failure are kept
    FakeOpenAI.counts = {"Which phase? [503x9]": 9}  # the server recovers
    m = run_eval(recs, tmp_path / "ev", tmp_path, endpoint=settings(server, retries=2, concurrency=1))
    assert m["groups"]["e/phase"]["accuracy"] == 1.0
    assert FakeOpenAI.counts.get("Which phase? [ok]") is None  # resumed: no second request for e/0


def test_auth_error_stops_at_once(server, tmp_path):
    from surgkit.reasoning.runners import chat_messages
    from surgkit.reasoning.scoring import BoxSettings

    client = Client(settings(server))
    messages = chat_messages(records(tmp_path, ["[401]"])[0], tmp_path, BoxSettings(), True)
    with pytest.raises(EndpointError, match="HTTP 401 for record 'x': nope 401"):
        client.ask(messages, "x")
    assert client.retried == 0


def test_resume_is_keyed_by_model_identity_and_settings(server, tmp_path):
    recs = records(tmp_path, ["[a]", "[b]"])
    out = tmp_path / "ev"
    run_eval(recs, out, tmp_path, endpoint=settings(server, model="model-A"))
    assert len(FakeOpenAI.bodies) == 2
    # another model into the same folder: refused, naming what differs
    with pytest.raises(SurgkitError, match=r"was written with source\.model='model-A'.*'model-B'"):
        run_eval(recs, out, tmp_path, endpoint=settings(server, model="model-B"))
    # other generation settings: refused too
    with pytest.raises(SurgkitError, match=r"generation\.max_tokens"):
        run_eval(recs, out, tmp_path, endpoint=settings(server, model="model-A", max_tokens=7))
    # overwrite: model B answers every record itself
    m = run_eval(recs, out, tmp_path, endpoint=settings(server, model="model-B"), overwrite=True)
    assert [b["model"] for b in FakeOpenAI.bodies] == ["model-A"] * 2 + ["model-B"] * 2
    assert m["source"].endswith("(model-B)")
    # a predictions line of another model is refused when read back
    rows = (out / PREDICTIONS).read_text().replace("model-B", "model-A")
    (out / PREDICTIONS).write_text(rows)
    bad = (out / PREDICTIONS).read_text().splitlines()
    bad[0] = json.dumps({**json.loads(bad[0]), "source_key": "0" * 16})
    (out / PREDICTIONS).write_text("\n".join(bad) + "\n")
    with pytest.raises(SurgkitError, match=r"predictions\.jsonl:1: written by"):
        run_eval(recs, out, tmp_path, endpoint=settings(server, model="model-B"))


def test_statuses_from_a_predictions_file(tmp_path):
    recs = records(tmp_path, ["[a]", "[b]"])
    p = tmp_path / "p.jsonl"
    p.write_text(
        json.dumps({"id": "e/0", "completion": RIGHT, "status": "length"})
        + "\n"
        + json.dumps({"id": "e/1", "completion": None})
        + "\n"
    )
    m = run_eval(recs, tmp_path / "ev", tmp_path, predictions=p)
    assert m["groups"]["e/phase"]["accuracy"] == 0.0 and m["statuses"] == {"length": 1, "null": 1}
    assert compute_metrics(recs, {"e/0": RIGHT, "e/1": RIGHT})["groups"]["e/phase"]["accuracy"] == 1.0
