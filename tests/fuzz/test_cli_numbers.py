"""Every numeric option of every command, fed arbitrary text: it parses to a value inside its documented
range, or the command line is refused with one line naming the option (property-based, no command runs)."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tps_diffusion.cli.parser import LIMITS, UsageError, build_parser

PARSER = build_parser()

#: the smallest valid command line of each command (the option under test is appended)
BASE = {
    "simulate": [], "train": ["--data", "x.h5"], "geodesic": ["--model", "m.pt", "--start", "C5", "--end", "C7ax"],
    "sample": ["--geodesic", "g.npz"], "export": ["--paths", "p.dcd", "--plumed"], "analyze": ["--paths", "p.dcd"],
    "shoot": ["--paths", "p.dcd"], "bench": ["aldp2d", "--out", "r.json"],
}

NUMERIC = sorted({(command, action.option_strings[-1], action.type.__name__)
                  for command, sub in PARSER.commands.items() if command in BASE
                  for action in sub._actions  # the test inspects the parser it is given
                  if action.option_strings and getattr(action.type, "__name__", "") in ("int", "float")
                  and action.nargs is None})

TEXT = st.one_of(
    st.integers(-10**15, 10**15).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e12", "1e-12", "0", "-0", "0.5", "abc", "", "1,5", "0x10", "1e400"]),
)


def test_every_numeric_option_is_covered():
    assert len(NUMERIC) > 30
    assert {option for _, option, _ in NUMERIC} <= set(LIMITS) | {"--frames", "--state-xml", "--lam-min", "--seed"}


@pytest.mark.parametrize("command,option,kind", NUMERIC)
@settings(max_examples=25, deadline=None)
@given(text=TEXT)
def test_numeric_option_parses_in_range_or_is_refused_in_one_line(command, option, kind, text):
    argv = [command, *BASE[command], f"{option}={text}"]
    try:
        args = PARSER.parse_args(argv)
    except UsageError as exc:
        message = str(exc)
        assert "\n" not in message and option in message
        return
    value = getattr(args, option.lstrip("-").replace("-", "_"))
    assert isinstance(value, int if kind == "int" else float) and math.isfinite(value)
    low, inclusive, high = LIMITS.get(f"{command} {option}", LIMITS.get(option, (None, True, None)))
    if low is not None:
        assert value > low or (inclusive and value == low)
    if high is not None:
        assert value <= high
