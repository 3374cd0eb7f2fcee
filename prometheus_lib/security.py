"""Keep the warehouse password out of everything the platform shows or stores.

A PostgreSQL connection string reaches the console (the run summary, ``prometheus migrate``),
Dagster's event log (materialisation metadata ``warehouse``, shown by the UI), error messages
and dbt's work folder names. Every one of them goes through this module:

- :func:`redact_dsn` turns a connection string of any form libpq accepts into one safe to show,
  in the same form, with each password replaced by ``***``:

  - URL userinfo, ``postgresql://user:secret@host/db`` (any scheme, ``postgres://`` and
    ``postgresql+psycopg://`` too). The password runs from the first ``:`` of the userinfo to the
    *last* ``@`` of the string, so a password holding ``/``, ``@``, ``:`` or ``?`` (which libpq
    misreads as host, port or database) is hidden whole; a URL whose query holds an ``@`` is
    over-redacted (its host hidden too), never under-redacted;
  - URL query parameters, ``postgresql:///db?host=h&password=secret`` (the key compared after
    percent-decoding, so ``pass%77ord=`` counts);
  - key=value DSNs, ``host=h password='a secret'`` (quoted values with ``\\'`` escapes, unquoted
    values with backslash escapes); an unparseable tail is hidden whole.

  ``password`` and ``sslpassword`` are the secret keys.
- :func:`redact_text` scrubs known secrets out of arbitrary text (a driver's error message,
  dbt's output): each secret is matched whether written as is, percent-encoded (any mix, either
  hex case), backslash-escaped (libpq, JSON, ``repr``) or ``\\uXXXX``-escaped, and so are its
  pieces between URL delimiters (libpq names a misparsed password's pieces as host or port);
  connection strings embedded in the text are redacted too.
- :func:`dsn_secrets` lists the secrets a connection string carries, for :func:`redact_text`.

A name derived from a connection (a work folder) must come from its non-secret parts only
(host, port, user, database), never from a hash of the password.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote

REDACTED = "***"
SECRET_KEYS = frozenset({"password", "sslpassword"})
# Pieces of a secret (split on these) at least this long are scrubbed on their own too.
_MIN_PIECE = 3
_PIECE_SPLIT = re.compile(r"[/:@?#&=,;\s]+")
_SCHEME = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://")
# In free text: a URL's userinfo password, and a ``password=value`` pair (either form, or an
# environment variable such as ``PGPASSWORD=`` or ``DAGSTER_PG_PASSWORD=``).
# Bounded and anchored (a scheme starts after a non-scheme character): linear on long lines of
# dbt output; the unbounded form was quadratic (40 KB of letters: 1.4 s).
_TEXT_USERINFO = re.compile(r"((?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s:@/?#]{0,256}:)[^\s]{0,1024}@")
_TEXT_KEYVALUE = re.compile(r"""((?:\b|(?<=_)|(?<=PG))(?:ssl)?password\s*=\s*)('(?:\\.|[^'\\])*'?|(?:\\.|[^\s&'"\\])+)""",
                            re.IGNORECASE)


def is_url(conninfo: str) -> bool:
    """Whether ``conninfo`` is a URL (``scheme://...``) rather than a key=value DSN."""
    return bool(_SCHEME.match(conninfo))


def redact_dsn(conninfo: str) -> str:
    """``conninfo`` with every password replaced by ``***``, in its own form (URL or key=value).

    A string without a password comes back unchanged.
    """
    if not conninfo:
        return conninfo
    if is_url(conninfo):
        return _redact_url(conninfo)[0]
    return _redact_keyvalue(conninfo)[0]


def dsn_secrets(conninfo: str) -> list[str]:
    """The secrets ``conninfo`` carries: each password as written and as decoded, and libpq's reading.

    Pass them to :func:`redact_text` to scrub a message about this connection.
    """
    if not conninfo:
        return []
    found = _redact_url(conninfo)[1] if is_url(conninfo) else _redact_keyvalue(conninfo)[1]
    try:
        from psycopg.conninfo import conninfo_to_dict

        parsed = conninfo_to_dict(conninfo)
    except Exception:  # noqa: BLE001 - unparseable or no psycopg: the written forms suffice
        parsed = {}
    found += [str(parsed[k]) for k in SECRET_KEYS if parsed.get(k)]
    out: list[str] = []
    for s in found:
        if s and s not in out:
            out.append(s)
    return out


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with each of ``secrets`` (in any encoding) and any embedded password replaced by ``***``."""
    if not text:
        return text
    patterns: list[str] = []
    for secret in secrets:
        if not secret:
            continue
        pieces = [p for p in _PIECE_SPLIT.split(secret) if len(p) >= _MIN_PIECE and p != secret]
        for s in (secret, *pieces):
            pattern = _secret_pattern(s)
            if pattern not in patterns:
                patterns.append(pattern)
    # Longest first, so a whole secret is replaced before its pieces are.
    for pattern in sorted(patterns, key=len, reverse=True):
        text = re.sub(pattern, REDACTED, text)
    text = _TEXT_USERINFO.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return _TEXT_KEYVALUE.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def redact_error(error: BaseException | str, conninfo: str) -> str:
    """The text of an error about a connection to ``conninfo``, without its secrets."""
    return redact_text(str(error).strip(), dsn_secrets(conninfo))


# ----------------------------------------------------------------------------- internals
def _hex_ci(escape: str) -> str:
    """A regex for an escape like ``%2f`` or ``\\u00e9`` whose hex digits match in either case."""
    head = 1 if escape.startswith("%") else 2
    return re.escape(escape[:head]) + "".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in escape[head:])


def _secret_pattern(secret: str) -> str:
    """A regex matching ``secret`` written plainly, percent-encoded or escaped, character by character."""
    parts = []
    for ch in secret:
        alts = [re.escape(ch)]
        # %XX of each UTF-8 byte, either hex case
        alts.append("".join(_hex_ci(f"%{b:02x}") for b in ch.encode()))
        if ch == " ":
            alts.append(r"\+")
        if ord(ch) > 127:  # repr's \xe9, JSON's \u00e9 (and a UTF-16 pair beyond the BMP)
            alts.append(re.escape(ch.encode("unicode_escape").decode()))
            units = ch.encode("utf-16-be")
            alts.append("".join(_hex_ci(f"\\u{units[i] << 8 | units[i + 1]:04x}") for i in range(0, len(units), 2)))
        alt = "|".join(dict.fromkeys(alts))
        # libpq, JSON and repr escape quotes and backslashes with (possibly doubled) backslashes.
        prefix = r"(?:\\)*" if ch in "'\"\\" else ""
        parts.append(f"{prefix}(?:{alt})")
    pattern = "".join(parts)
    if len(secret) < _MIN_PIECE:  # a very short secret: only where it stands alone, or every "p" would go
        pattern = rf"(?<![A-Za-z0-9]){pattern}(?![A-Za-z0-9])"
    return pattern


def _redact_url(url: str) -> tuple[str, list[str]]:
    """Redact a URL's userinfo password and its secret query parameters; also return the secrets."""
    secrets: list[str] = []
    m = _SCHEME.match(url)
    assert m is not None
    head, rest = url[: m.end()], url[m.end():]
    at = rest.rfind("@")
    userinfo = rest[:at] if at >= 0 else ""
    if at >= 0 and ":" in userinfo:
        user, _, password = userinfo.partition(":")
        secrets += [password, unquote(password)]
        rest = f"{user}:{REDACTED}{rest[at:]}"
        at = len(user) + 1 + len(REDACTED)
        q = rest.find("?", at)  # the password may hold a "?"
    else:
        q = rest.find("?")
    if q < 0:
        return head + rest, secrets
    query = rest[q + 1:]
    params = []
    for param in query.split("&"):
        key, eq, value = param.partition("=")
        if eq and unquote(key).strip().lower() in SECRET_KEYS:
            secrets += [value, unquote(value)]
            value = REDACTED
        params.append(f"{key}{eq}{value}")
    return head + rest[: q + 1] + "&".join(params), secrets


def _redact_keyvalue(dsn: str) -> tuple[str, list[str]]:
    """Redact the secret values of a key=value DSN (libpq's syntax); also return the secrets."""
    secrets: list[str] = []
    out: list[str] = []
    i, n = 0, len(dsn)
    while i < n:
        ws = re.compile(r"\s*").match(dsn, i)
        assert ws is not None
        out.append(ws.group())
        i = ws.end()
        if i >= n:
            break
        m = re.compile(r"([^\s=]+)(\s*=\s*)").match(dsn, i)
        if m is None:  # not key=value: libpq rejects it; hide the rest, it may be a password's tail
            out.append(REDACTED)
            tail = dsn[i:].strip()
            if len(tail) >= _MIN_PIECE:
                secrets.append(tail)
            break
        key = m.group(1)
        i = m.end()
        if i < n and dsn[i] == "'":
            v = re.compile(r"'((?:\\.|[^'\\])*)('?)", re.S).match(dsn, i)
            assert v is not None
            raw, value, quoted = v.group(), v.group(1), True
        else:
            v = re.compile(r"(?:\\.|[^\s\\])*\\?", re.S).match(dsn, i)
            assert v is not None
            raw, value, quoted = v.group(), v.group(), False
        i = v.end()
        if key.lower() in SECRET_KEYS:
            secrets += [raw, value, re.sub(r"\\(.)", r"\1", value, flags=re.S)]
            out.append(m.group() + (f"'{REDACTED}'" if quoted else REDACTED))
        else:
            out.append(m.group() + raw)
    return "".join(out), secrets
