"""Job ids (Flux RFC 19 FLUIDs): 64-bit integers, shown in F58 as loom
shows them ("ƒ2oLkTLb"); parsed from any form loom accepts: decimal, F58
(ƒ or f prefix), 0x hex and dotted hex (src/base/fluid.cpp)."""

from __future__ import annotations

from .errors import InvalidArgument

_F58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_F58_DIGIT = {c: i for i, c in enumerate(_F58)}
_FLORIN = "\u0192"
_MAX = (1 << 64) - 1


class JobId(int):
    """A job id: an int that prints as F58. ``JobId("ƒ2oLkTLb")``,
    ``JobId("1234")`` and ``JobId(1234)`` all work."""

    def __new__(cls, value):
        if isinstance(value, JobId):
            return value
        if isinstance(value, str):
            return int.__new__(cls, _parse(value))
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument("a job id is an int or a string, not %r" % (value,))
        if not 0 <= value <= _MAX:
            raise InvalidArgument("invalid job id %d: not a 64-bit unsigned number" % value)
        return int.__new__(cls, value)

    @property
    def f58(self) -> str:
        v = int(self)
        digits = ""
        while True:
            digits = _F58[v % 58] + digits
            v //= 58
            if v == 0:
                return _FLORIN + digits

    @property
    def dec(self) -> str:
        return int.__repr__(self)

    def __str__(self) -> str:
        return self.f58

    def __repr__(self) -> str:
        return "JobId(%r)" % self.f58

    def __format__(self, spec: str) -> str:
        return format(self.f58, spec)


def _parse(text: str) -> int:
    s = text.strip()

    def bad(why: str) -> InvalidArgument:
        return InvalidArgument('invalid job id "%s": %s' % (text, why))

    if not s:
        raise bad("empty")
    if "." in s:  # dotted hex: 0017.e9fb.8df1.6c2e
        groups = s.split(".")
        if len(groups) != 4 or any(len(g) != 4 for g in groups):
            raise bad("dotted hex wants four groups of four digits")
        try:
            return int("".join(groups), 16)
        except ValueError:
            raise bad("not a hex digit") from None
    if s[0] in ("f", _FLORIN):
        s = s[1:]
        if not s:
            raise bad("no digits after the f58 prefix")
        v = 0
        for c in s:
            if c not in _F58_DIGIT:
                raise bad("not an f58 digit")
            v = v * 58 + _F58_DIGIT[c]
            if v > _MAX:
                raise bad("too large")
        return v
    if s.startswith("0x"):
        h = s[2:]
        if not 1 <= len(h) <= 16 or any(c not in "0123456789abcdefABCDEF" for c in h):
            raise bad("hex wants 1 to 16 digits")
        return int(h, 16)
    if not s.isascii() or not s.isdigit():
        raise bad("not a number")
    v = int(s)
    if v > _MAX:
        raise bad("too large")
    return v
