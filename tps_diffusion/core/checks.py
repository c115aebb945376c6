"""Argument checks of the torch-only core: one-line errors that name the fix, raised before any long work.

Every function raises :class:`TypeError` for a value of the wrong kind and :class:`ValueError` for
a value out of range, with a message that names the argument (``owner.name``), the value and what
to pass instead. Valid values are returned unchanged (never converted), so valid inputs behave
exactly as without the checks.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

__all__ = ["LAM_LIMIT", "check_choice", "check_int", "check_lam", "check_real", "check_seed", "check_tensor", "short"]

#: largest |log-SNR| the core accepts: beyond it sigmoid(lam) is 1 or 0 to double precision (and
#: exp(lam) overflows float32 near 88), so noise levels there are numerically meaningless
LAM_LIMIT = 30.0


def short(value, limit: int = 60) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_int(value, name: str, minimum: int | None = None, fix: str | None = None) -> int:
    """``value`` must be an integer (Python or numpy, not bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {short(value)} ({type(value).__name__}); pass a whole number"
                        + (f" >= {minimum}" if minimum is not None else ""))
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} ({value}) must be >= {minimum}; " + (fix or f"pass a value >= {minimum}"))
    return value


def check_seed(value, name: str) -> int:
    """A random seed torch accepts: an integer in ``[-2**63, 2**64 - 1]``."""
    check_int(value, name)
    if not -(2**63) <= value < 2**64:
        raise ValueError(f"{name} ({value}) is outside the seeds torch accepts [-2**63, 2**64 - 1]; pass a smaller "
                         "integer such as 0")
    return value


def check_real(value, name: str, low: float | None = None, high: float | None = None, low_open: bool = False,
               high_open: bool = False, fix: str | None = None) -> float:
    """``value`` must be a finite real number (not bool) in the interval given by ``low``/``high``.

    ``low_open``/``high_open`` exclude the bound itself (``low_open=True, low=0``: strictly positive).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {short(value)} ({type(value).__name__}); pass a float")
    interval = _interval(low, high, low_open, high_open)
    if not math.isfinite(value):
        raise ValueError(f"{name} is {value}, not a finite number; pass a finite value"
                         + (f" {interval}" if interval else ""))
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{name} ({value}) must be {interval}; " + (fix or f"pass a value {interval}"))
    return value


def check_lam(value, name: str) -> float:
    """A log-SNR: finite and within +-:data:`LAM_LIMIT`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number (a log-SNR), got {short(value)} ({type(value).__name__}); "
                        "pass a float")
    if not math.isfinite(value):
        raise ValueError(f"{name} is {value}, not a finite number; pass a finite log-SNR within "
                         f"[-{LAM_LIMIT:g}, {LAM_LIMIT:g}] (typically -10 to 10)")
    if abs(value) > LAM_LIMIT:
        raise ValueError(f"{name} ({value}) is outside [-{LAM_LIMIT:g}, {LAM_LIMIT:g}]: log-SNR beyond +-{LAM_LIMIT:g} "
                         "is numerically meaningless (the sigmoid saturates); use a log-SNR within that range "
                         "(typically -10 to 10)")
    return value


def check_choice(value, name: str, choices) -> str:
    if value not in choices:
        raise ValueError(f"unknown {name} {short(value)}; use one of {', '.join(map(repr, choices))}")
    return value


def check_tensor(value, name: str, ndim: tuple[int, ...] | int | None = None, finite: bool = True,
                 fix: str | None = None, shape: str = "") -> Tensor:
    """``value`` as a tensor of real numbers (tensors are returned as they are; arrays and sequences
    converted with :func:`torch.as_tensor`), with one of the dimensionalities ``ndim``, non-empty and,
    if ``finite``, free of NaN/inf. ``shape`` describes the expected shape in messages (e.g. ``"(N, D)"``);
    ``fix`` is the remedy named when NaN/inf are found."""
    hint = f" {shape}" if shape else ""
    if not isinstance(value, Tensor):
        try:
            value = torch.as_tensor(value)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a tensor or array of numbers{hint}, got {short(value)} "
                            f"({type(value).__name__}); pass a torch.Tensor") from None
    if value.dtype == torch.bool or value.is_complex() or not (value.is_floating_point() or value.dtype in _INTS):
        raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}; pass a float tensor")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    want = " or ".join(f"{d}-D" for d in dims) if dims is not None else ""
    if dims is not None and value.ndim not in dims:
        expected = f"have shape {shape}" if shape else f"be {want}"
        raise ValueError(f"{name} must {expected}, got shape {tuple(value.shape)}; pass a "
                         + (f"tensor of shape {shape}" if shape else f"{want} tensor"))
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)}); pass a non-empty tensor{hint}")
    if finite and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ValueError(f"{name} contains {bad} NaN/inf value(s); " + (fix or "pass finite values only"))
    return value


_INTS = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _interval(low, high, low_open, high_open) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""
