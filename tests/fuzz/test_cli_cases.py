"""Replay of the CLI fuzz's case list: every hostile input gives one clean error line (or, for the valid
controls, success); no traceback, no exit 0 with a wrong result, no input run directory changed."""

import pytest
from cli_cases import CASES, classify, make_inputs


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    return make_inputs(tmp_path_factory.mktemp("fuzz_inputs"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_case(case, fields, tmp_path):
    outcome, line = classify(case, fields, tmp_path / "out")
    assert outcome == ("ok" if case[2] == "ok" else "clean error"), line
