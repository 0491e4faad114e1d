"""The one vocabulary for checking configuration values: every ``validate`` (offrl/config.py,
each algorithm's, offrl/plugins.py's) states its rules with it, so bad input is always one
line of the same form, naming the key, its value and what is allowed::

    agent.tau=0.0 is invalid: must lie in (0, 1]

Usage: bind a config section and the prefix its keys are shown with, then state rules, each
for one or several keys (a dotted key such as ``"gp.every"`` reads a nested section)::

    ag = Checks(config.agent, "agent")
    ag.one_of(VARIANTS, "variant")
    ag.integer(1, "num_samples", "num_critics")        # int and >= 1
    ag.at_least(0, "alpha", "grad_penalty")            # >= 0
    ag.above(0, "mmd_sigma")                           # > 0
    ag.within("(0, 1]", "tau")                          # an interval, open or closed at each end
    ag.ordered("log_std_min", "log_std_max")           # log_std_min < log_std_max
    ag.need(cond, "kth", "must be an integer in [1, num_candidates + 1]")  # anything else

Every rule takes ``why=``: a short reason appended to the message in parentheses.
"""
from __future__ import annotations

import re

_INTERVAL = re.compile(r"\s*([\[(])\s*([^,]+?)\s*,\s*([^\]\)]+?)\s*([\])])\s*")
_READ = object()


def interval(spec: str) -> tuple[float, float, bool, bool]:
    """``"(0, 1]"`` -> (lo, hi, lo_open, hi_open) = (0.0, 1.0, True, False)."""
    m = _INTERVAL.fullmatch(spec)
    if m is None:
        raise ValueError(f"interval {spec!r} is malformed: write e.g. '(0, 1]' or '[0, 1)'")
    left, lo, hi, right = m.groups()
    return float(lo), float(hi), left == "(", right == ")"


def _num(x) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) and not isinstance(x, bool) else str(x)


class Checks:
    """Rules over one config section; each raises ValueError('<prefix>.<key>=<value!r> is invalid: <what>').

    ``defaults``: values for keys a section may lack (e.g. configs saved before the key existed);
    any other missing key is a KeyError, a mistake in the calling ``validate``."""

    def __init__(self, section, prefix: str, defaults: dict | None = None):
        self.section, self.prefix, self.defaults = section, prefix, dict(defaults or {})

    def value(self, key: str):
        node = self.section
        for part in key.split("."):
            if part not in node:
                if key in self.defaults:
                    return self.defaults[key]
                raise KeyError(f"{self.prefix}.{key} is not in the config")
            node = node[part]
        return node

    def need(self, cond, key: str, what: str, value=_READ) -> None:
        """The generic rule: ``cond`` must hold, else ``key`` (shown with ``value``, default its own) is invalid."""
        if not cond:
            shown = self.value(key) if value is _READ else value
            raise ValueError(f"{self.prefix}.{key}={shown!r} is invalid: {what}")

    def _each(self, keys, ok, what: str, why: str) -> None:
        what = f"{what} ({why})" if why else what
        for key in keys:
            self.need(ok(self.value(key)), key, what)

    def one_of(self, choices, *keys: str, why: str = "") -> None:
        self._each(keys, lambda v: v in choices, f"choose one of {tuple(choices)}", why)

    def integer(self, bound: int, *keys: str, why: str = "") -> None:
        """An int (bool counts, as in Python) >= ``bound``."""
        self._each(keys, lambda v: isinstance(v, int) and v >= bound, f"must be an integer >= {bound}", why)

    def at_least(self, bound, *keys: str, why: str = "") -> None:
        self._each(keys, lambda v: v >= bound, f"must be >= {_num(bound)}", why)

    def above(self, bound, *keys: str, why: str = "") -> None:
        self._each(keys, lambda v: v > bound, f"must be > {_num(bound)}", why)

    def within(self, spec: str, *keys: str, why: str = "") -> None:
        """``spec``: an interval such as ``"(0, 1]"``; ``(``/``)`` exclude the end, ``[``/``]`` include it."""
        lo, hi, lo_open, hi_open = interval(spec)

        def ok(v):
            return (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)

        self._each(keys, ok, f"must lie in {spec.strip()}", why)

    def ordered(self, low: str, high: str, strict: bool = True, why: str = "") -> None:
        """``low`` < ``high`` (``<=`` with ``strict=False``)."""
        lo, hi = self.value(low), self.value(high)
        op = "<" if strict else "<="
        what = f"must be {op} {self.prefix}.{high}={hi!r}" + (f" ({why})" if why else "")
        self.need(lo < hi if strict else lo <= hi, low, what)
