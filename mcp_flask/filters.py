"""The DreamFactory ``filter`` grammar: text -> a small, immutable AST.  No SQL here.

DreamFactory splits filters with regular expressions (reference §2.1), which is
why ``a = 1 AND b = 2`` silently binds ``'1 AND b=2'``, ``STARTS WITH 'x'``
binds literal quotes and ``BETWEEN`` does not parse.  This module is a real
tokenizer plus a recursive-descent parser instead::

    filter    := or_expr EOF
    or_expr   := and_expr  (("or"  | "||") and_expr)*
    and_expr  := not_expr  (("and" | "&&") not_expr)*
    not_expr  := "not" not_expr | "(" or_expr ")" | predicate
    predicate := column ( cmp_op value
                        | ["not"] "like" value
                        | ["not"] ("starts" "with" | "ends" "with" | "contains") value
                        | ["not"] "in" "(" value ("," value)* ")"
                        | ["not"] "between" value "and" value
                        | "is" ["not"] "null" )
    cmp_op    := "=" | "!=" | "<>" | ">" | ">=" | "<" | "<=" | eq | ne | gt | gte | lt | lte
    value     := 'single' | "double" | bare word | :param | {lookup.name}

Precedence is the standard NOT > AND > OR.  Keywords are ASCII and
case-insensitive; symbol operators need no spaces (``age>30``).  Strings take
doubled quotes (``'O''Brien'``) and the escapes ``\\'`` ``\\"`` ``\\\\``; any other
backslash is kept as written.  Everything else (``;``, ``--`` and ``/* */``
comments, function calls, sub-selects, NUL bytes, look-alike Unicode quotes or
operators) is a ``FilterSyntaxError`` pointing at the position and the token.

The parser is pure and its nodes are frozen, so parsed filters can be cached
and shared.  Column names are kept as written; ``dialects/where.py`` validates
them against a table, coerces values by column type and renders SQL.

Imports only ``errors`` from the project.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Union

from .errors import InvalidArguments

#: Longest filter text accepted, in characters.
MAX_FILTER_LENGTH = 8192
#: Deepest nesting of parentheses and NOTs (a parse error, never a RecursionError).
MAX_DEPTH = 32
#: Most values in one IN list.
MAX_IN_LIST = 1000

# ASCII whitespace only: a no-break space or other Unicode space is a syntax
# error rather than a silent separator, so look-alike text cannot hide tokens.
_WHITESPACE = frozenset(" \t\r\n\f\v")
# Bare values: numbers, words, ISO dates/times (``2024-01-31T10:00:00+02:00``),
# LIKE patterns (``J%``) and e-mail-ish text.  None of ( ) , = < > ! & | ' " ; / *
# can occur in one, so a bare word never swallows an operator or a comment.
_WORD_START_EXTRA = frozenset("_-+.%")
_WORD_EXTRA = _WORD_START_EXTRA | frozenset("$:@")

_COMPARE_SYMBOLS = {"=": "=", "!=": "!=", "<>": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}
_COMPARE_WORDS = {"eq": "=", "ne": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
# Words that may never be a bare value: they would hide a mistake such as
# ``a = and b = 1``.  Quote them to mean the text.
_RESERVED = frozenset({"and", "or", "not", "is", "in", "like", "between"})


class FilterSyntaxError(InvalidArguments):
    """The filter text does not parse.  ``position`` is a 0-based offset; ``token`` the text there."""

    def __init__(self, position: int, token: str | None, expected: str):
        near = "end of filter" if token is None else repr(_clip(token))
        super().__init__(f"filter syntax error at position {position} near {near}: {expected}")
        self.position = position
        self.token = token
        self.expected = expected


def _clip(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[:width] + "..."


# ------------------------------------------------------------------------ AST

@dataclass(frozen=True)
class Literal:
    """A value written in the filter: ``raw_kind`` is ``'string'`` (quoted) or ``'bare'``.

    ``value`` is always text (quotes removed, escapes decoded): the column's type
    decides what it means, so ``zip = 01234`` keeps its leading zero.
    """

    value: str
    raw_kind: str


@dataclass(frozen=True)
class Param:
    """``:name``: a value from the caller's ``params`` map."""

    name: str


@dataclass(frozen=True)
class Lookup:
    """``{role.region}``/``{user.id}``: a value from the server-side ``lookups`` map."""

    name: str


Value = Union[Literal, Param, Lookup]


@dataclass(frozen=True)
class Compare:
    """``column op value``; ``op`` is one of ``= != > >= < <=`` (``<>`` and words normalised)."""

    column: str
    op: str
    value: Value
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class InList:
    column: str
    values: tuple[Value, ...]
    negate: bool = False
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Between:
    column: str
    lo: Value
    hi: Value
    negate: bool = False
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Like:
    """``kind`` is ``'like'`` (the value is a pattern) or ``'starts'|'ends'|'contains'`` (plain text)."""

    column: str
    kind: str
    value: Value
    negate: bool = False
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class IsNull:
    column: str
    negate: bool = False
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class And:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Or:
    items: tuple["Node", ...]


@dataclass(frozen=True)
class Not:
    item: "Node"


Predicate = Union[Compare, InList, Between, Like, IsNull]
Node = Union[Predicate, And, Or, Not]


# ------------------------------------------------------------------------ tokens

@dataclass(frozen=True)
class Token:
    """``kind``: word, string, param, lookup, op (comparison symbol), and, or, '(' , ')' , ',' or eof."""

    kind: str
    text: str        # as written in the filter
    value: str       # decoded: string contents, param/lookup name, the word itself
    pos: int

    def keyword(self) -> str | None:
        """The lower-cased keyword this word spells, or None.

        Only ASCII words are keywords: ``str.lower`` maps e.g. the Kelvin sign to
        ``k``, and a Unicode look-alike must not become ``like``.
        """
        if self.kind == "word" and self.text.isascii():
            return self.text.lower()
        return None


def _is_word_start(ch: str) -> bool:
    return ch.isalnum() or ch in _WORD_START_EXTRA


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch in _WORD_EXTRA


def _is_ident(text: str) -> bool:
    """``[A-Za-z_][A-Za-z0-9_$]*``, Unicode letters and digits allowed."""
    return bool(text) and _scan_ident(text, 0) == len(text)


def tokenize(text: str) -> list[Token]:
    """Split filter text into tokens (ending with an ``eof`` token) or raise FilterSyntaxError."""
    return list(iter_tokens(text))


def iter_tokens(text: str) -> Iterator[Token]:
    """Yield tokens lazily, so the parser reports the *first* error in the text."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        nxt = text[i + 1] if i + 1 < n else ""
        if ch in _WHITESPACE:
            i += 1
        elif ch in "(),":
            yield Token(ch, ch, ch, i)
            i += 1
        elif ch in "=<>!":
            two = ch + nxt
            sym = two if two in _COMPARE_SYMBOLS else ch
            if sym not in _COMPARE_SYMBOLS:       # a lone '!'
                raise FilterSyntaxError(i, ch, "unexpected character")
            yield Token("op", sym, _COMPARE_SYMBOLS[sym], i)
            i += len(sym)
        elif ch in "&|":
            if nxt != ch:
                raise FilterSyntaxError(i, ch, f"expected '{ch}{ch}'")
            yield Token("and" if ch == "&" else "or", ch * 2, ch * 2, i)
            i += 2
        elif ch in "'\"":
            value, end = _scan_string(text, i)
            yield Token("string", text[i:end], value, i)
            i = end
        elif ch == ":":
            end = _scan_ident(text, i + 1)
            if end == i + 1:
                raise FilterSyntaxError(i, ch, "expected a parameter name after ':'")
            yield Token("param", text[i:end], text[i + 1:end], i)
            i = end
        elif ch == "{":
            name, end = _scan_lookup(text, i)
            yield Token("lookup", text[i:end], name, i)
            i = end
        elif (ch == "-" and nxt == "-") or (ch == "/" and nxt == "*"):
            raise FilterSyntaxError(i, ch + nxt, "comments are not allowed in a filter")
        elif _is_word_start(ch):
            end = i
            while end < n and _is_word_char(text[end]):
                if text[end] == "-" and text[end + 1:end + 2] == "-":
                    raise FilterSyntaxError(end, "--", "comments are not allowed in a filter")
                end += 1
            yield Token("word", text[i:end], text[i:end], i)
            i = end
        elif ch == ";":
            raise FilterSyntaxError(i, ch, "';' is not allowed: a filter is one condition, not statements")
        else:
            raise FilterSyntaxError(i, ch, "unexpected character")
    yield Token("eof", "", "", n)


def _scan_string(text: str, start: int) -> tuple[str, int]:
    """Decode the quoted string at ``start``; return (contents, index after the closing quote)."""
    quote = text[start]
    out: list[str] = []
    i, n = start + 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\x00":
            raise FilterSyntaxError(i, ch, "NUL characters are not allowed")
        if ch == "\\" and i + 1 < n and text[i + 1] in "'\"\\":
            out.append(text[i + 1])
            i += 2
        elif ch == quote:
            if text[i + 1:i + 2] == quote:       # doubled quote: 'O''Brien'
                out.append(quote)
                i += 2
            else:
                return "".join(out), i + 1
        else:
            # Any other backslash stays as written ('C:\temp'); LIKE patterns use it as escape.
            out.append(ch)
            i += 1
    raise FilterSyntaxError(start, _clip(text[start:]), "unterminated string")


def _scan_ident(text: str, start: int) -> int:
    """Index after the identifier starting at ``start`` (``start`` itself if there is none)."""
    i = start
    if i < len(text) and (text[i].isalpha() or text[i] == "_"):
        i += 1
        while i < len(text) and (text[i].isalnum() or text[i] in "_$"):
            i += 1
    return i


def _scan_lookup(text: str, start: int) -> tuple[str, int]:
    """``{name}`` or ``{role.name}``: return (dotted name, index after the ``}``)."""
    i = start + 1
    while True:
        end = _scan_ident(text, i)
        if end == i:
            raise FilterSyntaxError(i, text[i:i + 1] or None, "expected a lookup name such as {user.id}")
        i = end
        if text[i:i + 1] == ".":
            i += 1
            continue
        if text[i:i + 1] == "}":
            return text[start + 1:i], i + 1
        raise FilterSyntaxError(i, text[i:i + 1] or None, "expected '}' to close the lookup")


# ------------------------------------------------------------------------ parser

class _Parser:
    """Recursive descent over the token stream; one instance per parse."""

    def __init__(self, text: str):
        self.tokens = iter_tokens(text)
        #: The one token of lookahead the grammar needs.
        self.tok: Token = next(self.tokens)
        self.depth = 0

    # -- token helpers
    def advance(self) -> Token:
        tok = self.tok
        if tok.kind != "eof":
            self.tok = next(self.tokens)
        return tok

    def error(self, expected: str, tok: Token | None = None) -> FilterSyntaxError:
        tok = tok or self.tok
        return FilterSyntaxError(tok.pos, None if tok.kind == "eof" else tok.text, expected)

    def at_keyword(self, *words: str) -> bool:
        return self.tok.keyword() in words

    def expect_keyword(self, word: str) -> Token:
        if not self.at_keyword(word):
            raise self.error(f"expected '{word}'")
        return self.advance()

    def expect(self, kind: str, what: str) -> Token:
        if self.tok.kind != kind:
            raise self.error(f"expected {what}")
        return self.advance()

    # -- grammar
    def parse(self) -> Node:
        if self.tok.kind == "eof":
            raise self.error("expected a condition (the filter is empty)")
        node = self.or_expr()
        if self.tok.kind != "eof":
            raise self.error("expected 'and', 'or' or the end of the filter")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self.tok.kind == "or" or self.at_keyword("or"):
            self.advance()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(_flatten(items, Or)))

    def and_expr(self) -> Node:
        items = [self.not_expr()]
        while self.tok.kind == "and" or self.at_keyword("and"):
            self.advance()
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else And(tuple(_flatten(items, And)))

    def not_expr(self) -> Node:
        if self.at_keyword("not") or self.tok.kind == "(":
            # Both recurse; bounding depth here turns '((((...' into an error, not a RecursionError.
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.error(f"the filter nests deeper than {MAX_DEPTH} levels")
            if self.at_keyword("not"):
                self.advance()
                node: Node = Not(self.not_expr())
            else:
                self.advance()
                node = self.or_expr()
                self.expect(")", "')'")
            self.depth -= 1
            return node
        return self.predicate()

    def predicate(self) -> Node:
        tok = self.tok
        if tok.kind != "word" or tok.keyword() in _RESERVED or not _is_ident(tok.text):
            if tok.kind == "word" and "." in tok.text:
                raise self.error("expected a column name (fields of related tables are not supported)")
            raise self.error("expected a column name")
        self.advance()
        column, pos = tok.text, tok.pos
        if self.tok.kind == "(":
            raise self.error("function calls are not allowed in a filter")
        if self.tok.kind == "op":
            return self.comparison(column, self.advance().value, pos)
        word = self.tok.keyword()
        if word in _COMPARE_WORDS:
            self.advance()
            return self.comparison(column, _COMPARE_WORDS[word], pos)
        if word == "is":
            self.advance()
            negate = self.at_keyword("not")
            if negate:
                self.advance()
            self.expect_keyword("null")
            return IsNull(column, negate, pos)
        negate = False
        if word == "not":
            self.advance()
            negate = True
            word = self.tok.keyword()
        if word == "like":
            self.advance()
            return Like(column, "like", self.value(), negate, pos)
        if word in ("starts", "ends"):
            self.advance()
            self.expect_keyword("with")
            return Like(column, word, self.value(), negate, pos)
        if word == "contains":
            self.advance()
            return Like(column, "contains", self.value(), negate, pos)
        if word == "in":
            self.advance()
            return InList(column, self.value_list(), negate, pos)
        if word == "between":
            self.advance()
            lo = self.value()
            self.expect_keyword("and")
            return Between(column, lo, self.value(), negate, pos)
        if negate:
            raise self.error("expected 'like', 'in', 'between', 'starts with', 'ends with' "
                             "or 'contains' after 'not'")
        raise self.error("expected an operator")

    def comparison(self, column: str, op: str, pos: int) -> Node:
        if self.at_keyword("null"):
            null = self.advance()
            # DreamFactory users write ``x = null``; SQL's ``x = NULL`` is never true.
            if op == "=":
                return IsNull(column, False, pos)
            if op == "!=":
                return IsNull(column, True, pos)
            raise self.error("null can only be compared with = or != (or use IS NULL)", null)
        return Compare(column, op, self.value(), pos)

    def value(self) -> Value:
        tok = self.tok
        if tok.kind == "string":
            self.advance()
            return Literal(tok.value, "string")
        if tok.kind == "param":
            self.advance()
            return Param(tok.value)
        if tok.kind == "lookup":
            self.advance()
            return Lookup(tok.value)
        if tok.kind == "word":
            kw = tok.keyword()
            if kw == "null":
                raise self.error("null is only allowed as '= null', '!= null' or 'is [not] null'")
            if kw not in _RESERVED:
                self.advance()
                if self.tok.kind == "(":
                    raise self.error("function calls are not allowed in a filter")
                return Literal(tok.value, "bare")
        if tok.kind == "(":
            raise self.error("expected a value (sub-expressions and sub-queries are not allowed here)")
        raise self.error("expected a value")

    def value_list(self) -> tuple[Value, ...]:
        if self.tok.kind != "(":
            raise self.error("value lists must be wrapped in parentheses")
        self.advance()
        values = [self.value()]
        while self.tok.kind == ",":
            self.advance()
            if len(values) >= MAX_IN_LIST:
                raise self.error(f"an IN list may hold at most {MAX_IN_LIST} values")
            values.append(self.value())
        self.expect(")", "',' or ')'")
        return tuple(values)


def _flatten(items: list[Node], kind: type) -> list[Node]:
    """Merge nested nodes of the same kind: ``(a and b) and c`` is one And of three."""
    out: list[Node] = []
    for item in items:
        out.extend(item.items if isinstance(item, kind) else (item,))
    return out


def parse_filter(text: str) -> Node:
    """Parse DreamFactory filter text into an AST, or raise ``FilterSyntaxError``.

    Pure (no database, no table): wrap it in a cache freely.
    """
    if not isinstance(text, str):
        raise InvalidArguments("filter must be a string")
    if len(text) > MAX_FILTER_LENGTH:
        raise FilterSyntaxError(MAX_FILTER_LENGTH, None,
                                f"the filter is longer than {MAX_FILTER_LENGTH} characters")
    if "\x00" in text:
        # Checked up front: drivers and C libraries truncate at NUL, so it must never get further.
        pos = text.index("\x00")
        raise FilterSyntaxError(pos, "\x00", "NUL characters are not allowed")
    return _Parser(text).parse()


def iter_predicates(node: Node):
    """Yield every predicate (Compare, InList, Between, Like, IsNull) in ``node``."""
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, (And, Or)):
            stack.extend(reversed(n.items))
        elif isinstance(n, Not):
            stack.append(n.item)
        else:
            yield n


def referenced_columns(node: Node) -> set[str]:
    """The column names ``node`` uses, as written in the filter."""
    return {p.column for p in iter_predicates(node)}
