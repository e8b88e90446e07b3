"""Text from outside (case folder names, paths under the watch folder) made safe to show.

A folder name may hold anything but ``/`` and NUL: an escape sequence that recolours or
clears the operator's terminal, a newline or carriage return that forges a log line,
a right-to-left override that reorders what is shown. :func:`printable` is the one rule
every log line and console output applies to such text (README, "Names are escaped").
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

#: Shown as the familiar short escapes; everything else unsafe as ``\xNN``/``\uNNNN``.
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
#: Control (Cc), format (Cf: bidi overrides, zero-width), surrogate (Cs: undecodable
#: bytes of a file name, which a UTF-8 console cannot even encode), and the line and
#: paragraph separators (Zl, Zp) that some viewers break lines on.
_UNSAFE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(ch: str) -> str:
    short = _SHORT.get(ch)
    if short is not None:
        return short
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, keep_newlines: bool = False) -> str:
    """``text`` with every control or invisible formatting character written as an escape.

    ``"a\\x1b[31mb\\n"`` becomes ``a\\x1b[31mb\\n`` shown literally, so a hostile name can
    neither drive the terminal nor start a new log line. Printable text (any script,
    spaces, backslashes of Windows paths) is unchanged.

    Args:
        text: Anything; non-strings are converted with ``str``.
        keep_newlines: Leave ``\\n`` as is (multi-line messages the program wrote itself,
            such as a traceback).
    """
    s = text if isinstance(text, str) else str(text)
    if s.isprintable():  # false for every category in _UNSAFE
        return s  # the common case: nothing to do, no copy
    out = []
    for ch in s:
        if (ch == "\n" and keep_newlines) or ch == " ":
            out.append(ch)
        elif unicodedata.category(ch) in _UNSAFE:
            out.append(_escape(ch))
        else:
            out.append(ch)
    return "".join(out)
