"""surgkit.utils.runinfo.check_resume: same settings resume, changed ones are refused by name."""

from __future__ import annotations

import json

import pytest

from surgkit.errors import DataFormatError, SurgkitError
from surgkit.utils.runinfo import RUN_INFO_NAME, check_resume, first_difference


def test_new_same_changed_overwrite(tmp_path):
    s = {"seed": 0, "fps": "1", "model": {"depth": 2, "dims": (8, 16)}}
    assert check_resume(tmp_path, s, command="surgkit x") == "new"
    recorded = json.loads((tmp_path / RUN_INFO_NAME).read_text())
    assert recorded["settings"] == {"seed": 0, "fps": "1", "model": {"depth": 2, "dims": [8, 16]}}
    assert recorded["command"] == "surgkit x"
    assert check_resume(tmp_path, dict(s)) == "same"
    with pytest.raises(SurgkitError, match=r"model\.dims\[1\]=16, this run has model\.dims\[1\]=32"):
        check_resume(tmp_path, {**s, "model": {"depth": 2, "dims": (8, 32)}})
    with pytest.raises(SurgkitError, match=r"seed=0, this run has seed=1; pass --overwrite"):
        check_resume(tmp_path, {**s, "seed": 1})
    with pytest.raises(SurgkitError, match=r"extra='<not set>'"):
        check_resume(tmp_path, {**s, "extra": True})
    assert check_resume(tmp_path, {**s, "seed": 1}, overwrite=True) == "overwrite"
    assert check_resume(tmp_path, {**s, "seed": 1}) == "same"


def test_number_kinds(tmp_path):
    assert first_difference({"a": 1}, {"a": 1.0}) is None
    assert first_difference({"a": True}, {"a": 1}) == ("a", True, 1)
    assert first_difference({"a": "1"}, {"a": 1}) == ("a", "1", 1)
    assert first_difference({"a": [1, 2]}, {"a": [1, 2, 3]}) == ("a", [1, 2], [1, 2, 3])
    assert first_difference({"a": float("nan")}, {"a": float("nan")}) is None


@pytest.mark.parametrize(
    "text", ["{", "[]", '{"format": "other", "settings": {}}', '{"format": "surgkit-run/1"}']
)
def test_damaged_record_is_one_line(tmp_path, text):
    (tmp_path / RUN_INFO_NAME).write_text(text)
    with pytest.raises(DataFormatError) as e:
        check_resume(tmp_path, {"seed": 0})
    assert str(e.value).startswith(str(tmp_path / RUN_INFO_NAME))


def test_run_folder_locks_records_and_clears_only_on_overwrite(tmp_path):
    from surgkit.utils.lock import LOCK_NAME
    from surgkit.utils.runinfo import guarded_run, run_folder

    run = tmp_path / "run"
    with run_folder(run, {"lr": 0.1}, False, "surgkit train") as status:
        assert status == "new" and (run / LOCK_NAME).exists()
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "step-1").write_text("w")
        (run / "notes.txt").write_text("mine")
        assert json.loads((run / LOCK_NAME).read_text())["command"] == "surgkit train"
    with run_folder(run, {"lr": 0.1}, False, "surgkit train") as status:
        assert status == "same" and (run / "checkpoints" / "step-1").exists()
    with (
        pytest.raises(SurgkitError, match=r"lr=0.1, this run has lr=0.2"),
        run_folder(run, {"lr": 0.2}, False, "t"),
    ):
        pass
    assert (run / "checkpoints" / "step-1").exists()  # refused: nothing touched
    with run_folder(run, {"lr": 0.2}, True, "surgkit train", clear=("checkpoints",)) as status:
        assert status == "overwrite"
    assert not (run / "checkpoints").exists() and (run / "notes.txt").read_text() == "mine"

    calls = []

    @guarded_run("surgkit demo-train", lambda a: {"seed": a["seed"]}, overwrite=lambda a: not a["resume"])
    def train(out_dir, seed=0, resume=False):
        calls.append((seed, resume))
        return out_dir

    assert train(tmp_path / "g", seed=1) == tmp_path / "g"
    with pytest.raises(SurgkitError, match="seed=1, this run has seed=2"):
        train(tmp_path / "g", seed=2, resume=True)
    train(tmp_path / "g", seed=2)  # a fresh start (no resume) may change settings
    assert calls == [(1, False), (2, False)]
