"""jinja2 as wheelforge uses it: every template renders in jinja2's immutable sandbox,
with no globals (``range``, ``cycler``, ``lipsum``, ``joiner``, ``namespace``, ``dict``)
but the variables it is given, and values that land in generated TOML or YAML are
written as quoted strings by :func:`toml_string` and :func:`yaml_string`, never as raw
template text.

The sandbox is also bounded, since a pull request's matrix is rendered by ``plan`` in
CI: ``**`` whose result would exceed :data:`MAX_INT_BITS` bits, ``*`` and ``+`` that would
make a string or list longer than :data:`MAX_LENGTH`, widths, counts and lengths over
:data:`MAX_LENGTH` in calls and filters (``'x'.ljust(N)``, ``center``, ``indent``,
``'{:>N}'.format``, ``'%Ns'|format``), ``replace`` and ``join`` results over it, output
over :data:`MAX_OUTPUT` characters and (on the main thread) a render that takes longer
than :data:`MAX_SECONDS` are each a :class:`TemplateLimit` error, never a stalled or
swapping CI job."""

from __future__ import annotations

import math
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["SecurityError", "TemplateLimit", "sandboxed", "toml_string", "yaml_string"]

MAX_INT_BITS = 4096  # about 1,200 decimal digits
MAX_LENGTH = 100_000  # characters of a string, items of a list, a width or a count
MAX_OUTPUT = 1_000_000  # characters one render may produce
MAX_SECONDS = 5.0  # one render, on the main thread (a signal interrupts it)

_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n",
                 "\f": "\\f", "\r": "\\r"}  # fmt: skip
_YAML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_BIG_NUMBER = re.compile(rf"[0-9]{{{len(str(MAX_LENGTH)) + 1},}}")
_SIZED = (str, list, tuple)


class TemplateLimit(jinja2.TemplateError):
    """A template that would take too much time or memory to render."""


def _too_big(what: str) -> TemplateLimit:
    return TemplateLimit(f"{what} (templates are bounded: see wheelforge.templating)")


def _bits(value: Any) -> int:
    return abs(value).bit_length() if isinstance(value, int) else 0


def _check_power(base: Any, exponent: Any) -> None:
    if not (isinstance(base, int) and isinstance(exponent, int)):
        return
    if exponent > 0 and abs(base) > 1 and exponent * math.log2(abs(base)) > MAX_INT_BITS:
        raise _too_big(f"{_short(base)} ** {_short(exponent)} has more than {MAX_INT_BITS} bits")


def _short(value: Any) -> str:
    text = str(value) if _bits(value) < 200 else f"<a {_bits(value)}-bit number>"
    return text if len(text) <= 40 else text[:37] + "..."


def _size(value: Any, limit: int = MAX_LENGTH) -> int:
    """Characters and items in ``value``, nested lists counted through (a list of one
    string repeated is as big as its text would be); counting stops past ``limit``."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, list | tuple | dict):
            total += 1 + len(item)
            stack.extend(item.items() if isinstance(item, dict) else item)
        else:
            total += 1
    return total


def _check_size(value: Any, what: str) -> Any:
    _check_length(_size(value), what)
    return value


def _check_length(length: int, what: str) -> None:
    if length > MAX_LENGTH:
        raise _too_big(f"{what} of {length} items or characters (at most {MAX_LENGTH})")


def _check_numbers(args: Iterable[Any], what: str) -> None:
    for value in args:
        if isinstance(value, int) and not isinstance(value, bool) and value > MAX_LENGTH:
            raise _too_big(f"{what} with {_short(value)} (numbers here are at most {MAX_LENGTH})")
        if isinstance(value, str) and _BIG_NUMBER.search(value) and what.endswith("format"):
            raise _too_big(f"{what}: a width or precision over {MAX_LENGTH}")


class _BoundedCodeGenerator(CodeGenerator):
    """``a ~ b`` checked: the operands together at most :data:`MAX_LENGTH`."""

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"{join}(environment.bounded_operands((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            _check_power(left, right)
        elif operator_ == "*":
            if _bits(left) + _bits(right) > MAX_INT_BITS:
                raise _too_big(
                    f"{_short(left)} * {_short(right)} has more than {MAX_INT_BITS} bits"
                )
            for sequence, count in ((left, right), (right, left)):
                if isinstance(sequence, _SIZED) and isinstance(count, int):
                    _check_length(_size(sequence) * max(count, 0), "'*' makes a sequence")
        elif operator_ == "+":
            if isinstance(left, _SIZED) and isinstance(right, _SIZED):
                _check_length(_size(left) + _size(right), "'+' makes a sequence")
        elif operator_ == "%" and isinstance(left, str):
            _check_numbers([left], "'%' format")
            _check_numbers(right if isinstance(right, tuple) else [right], "'%' format")
            _check_size(right, "'%' formats a value")
        return super().call_binop(context, operator_, left, right)

    code_generator_class = _BoundedCodeGenerator

    def bounded_operands(self, operands: tuple[Any, ...]) -> tuple[Any, ...]:
        return _check_size(operands, "'~' makes a string")  # type: ignore[no-any-return]

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(__obj, "__name__", "a call")
        owner = getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None)
        what = f"{name}()"
        if isinstance(owner, str) and name in ("format", "format_map"):
            what = "str.format"
            _check_numbers([owner], what)
        _check_numbers([*args, *kwargs.values()], what)
        _check_size((args, kwargs), f"the arguments of {what}")
        return super().call(__context, __obj, *args, **kwargs)


def _bounded_filters(filters: dict[str, Callable[..., Any]]) -> None:
    """Wrap the built-in filters whose output size an argument sets."""

    def numbers_checked(name: str) -> None:
        original = filters[name]

        def checked(*args: Any, **kwargs: Any) -> Any:
            _check_numbers([*args[1:], *kwargs.values()], f"the {name} filter")
            if name == "format":
                _check_numbers(args[:1], "the format filter: format")
            return original(*args, **kwargs)

        filters[name] = checked

    for name in ("center", "indent", "wordwrap", "truncate", "format", "batch", "slice", "round"):
        if name in filters:
            numbers_checked(name)

    def size_checked(name: str) -> None:
        original = filters[name]

        def checked(*args: Any, **kwargs: Any) -> Any:
            for value in args:
                if not isinstance(value, jinja2.runtime.Context | jinja2.nodes.EvalContext):
                    _check_size(value, f"the {name} filter's input")
            return original(*args, **kwargs)

        checked.jinja_pass_arg = getattr(original, "jinja_pass_arg", None)  # type: ignore[attr-defined]
        filters[name] = checked

    sized = "string pprint tojson list unique sort reverse urlencode xmlattr dictsort map select"
    for name in (*sized.split(), "reject", "groupby", "sum", "min", "max"):
        if name in filters:
            size_checked(name)
    replace, join = filters["replace"], filters["join"]

    def bounded_replace(context: Any, value: Any, old: Any, new: Any, count: Any = None) -> Any:
        text, old_text, new_text = str(value), str(old), str(new)
        hits = text.count(old_text) if old_text else len(text) + 1
        _check_length(len(text) + hits * len(new_text), "replace makes a string")
        return replace(context, value, old, new, count)

    def bounded_join(context: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        if isinstance(value, _SIZED):
            size = sum(len(x) if isinstance(x, str) else 20 for x in value) + len(d) * len(value)
            _check_length(size, "join makes a string")
        return join(context, value, d, attribute)

    bounded_replace.jinja_pass_arg = replace.jinja_pass_arg  # type: ignore[attr-defined]
    bounded_join.jinja_pass_arg = join.jinja_pass_arg  # type: ignore[attr-defined]
    filters["replace"], filters["join"] = bounded_replace, bounded_join


def _bounded_concat(pieces: Iterable[str]) -> str:
    out: list[str] = []
    size = 0
    for piece in pieces:
        size += len(piece)
        if size > MAX_OUTPUT:
            raise _too_big(f"the output exceeds {MAX_OUTPUT} characters")
        out.append(piece)
    return "".join(out)


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """SIGALRM after ``seconds`` on the main thread (a loop in the template is Python
    code, so the signal interrupts it); elsewhere, no limit."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "setitimer"
    ):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _too_big(f"rendering took more than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    signal.setitimer(signal.ITIMER_REAL, min(seconds, outer) if outer else seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:  # an outer timer keeps (about) its deadline
            signal.setitimer(signal.ITIMER_REAL, max(outer - seconds, 0.001))


class _BoundedTemplate(jinja2.Template):
    def render(self, *args: Any, **kwargs: Any) -> str:
        if not getattr(self.environment, "bounded_time", True):
            return super().render(*args, **kwargs)
        with _time_limit(MAX_SECONDS):
            return super().render(*args, **kwargs)


def sandboxed(*, bounded_render: bool = True, **options: Any) -> ImmutableSandboxedEnvironment:
    """A sandboxed, bounded environment (undefined names are errors) without jinja2's
    globals. ``bounded_render``: one render produces at most :data:`MAX_OUTPUT`
    characters in :data:`MAX_SECONDS` (False for wheelforge's own templates over large
    data, such as an index page of many files)."""
    options.setdefault("finalize", lambda value: _check_size(value, "an output value"))
    environment = _BoundedSandbox(undefined=jinja2.StrictUndefined, **options)
    environment.globals.clear()
    if bounded_render:
        environment.concat = _bounded_concat  # type: ignore[method-assign]
    environment.bounded_time = bounded_render  # type: ignore[attr-defined]
    environment.template_class = _BoundedTemplate
    _bounded_filters(environment.filters)
    return environment


def toml_string(value: object) -> str:
    """``value`` as a TOML basic string (``"..."``): quotes, backslashes and control
    characters escaped, so the text can neither end the string nor start a new line."""
    out = ['"']
    for char in str(value):
        if char in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def yaml_string(value: object) -> str:
    """``value`` as a YAML double-quoted scalar, printable ASCII only (everything else
    escaped), so it can neither end the scalar nor start a new line or key."""
    out = ['"']
    for char in str(value):
        code = ord(char)
        if char in _YAML_ESCAPES:
            out.append(_YAML_ESCAPES[char])
        elif 0x20 <= code < 0x7F:
            out.append(char)
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)
