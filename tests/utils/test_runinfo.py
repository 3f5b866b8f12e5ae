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
