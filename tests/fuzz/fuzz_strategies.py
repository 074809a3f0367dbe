"""Hypothesis strategies for hostile input shared by the fuzz modules: text with what storage refuses,
JSON of any shape, and RFC 5322 / MIME messages that are almost right (the interesting ones)."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import strategies as st

#: text with NUL, lone surrogates, control and non-BMP characters, and the usual suspects
text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    ["", "\x00", "\ud800", "\r\n", "\n.\n", "=?utf-8?b?AA==?=", "%00", "../../etc/passwd", "A" * 300, "é", "\u202e"])
ascii_line = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=20,
)


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


json_bytes = (st.builds(lambda v: json.dumps(v).encode(), json_value) | st.binary(max_size=200)
              | st.integers(1, 50_000).map(lambda n: nested(n).encode())
              | st.integers(1, 50_000).map(lambda n: ('{"a":' * n + "1" + "}" * n).encode()))

# -- mail ---------------------------------------------------------------------------------------------
_header_name = st.sampled_from(["From", "To", "Cc", "Subject", "Message-ID", "Date", "Received", "Content-Type",
                                "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version", "DKIM-Signature",
                                "Reply-To", "Return-Path", "X-Mailer"]) | st.from_regex(r"\A[!-9;-~]{1,20}\Z")
_header_value = st.sampled_from([
    "multipart/mixed; boundary=b1", "multipart/alternative; boundary=\"b1\"", "multipart/mixed", "text/plain; charset=x-unknown",
    "text/plain; charset=utf-7", "text/html; charset=\"utf-8\"", "message/rfc822", "application/octet-stream; name=\"=?utf-8?q?a=00?=\"",
    "base64", "quoted-printable", "x-uuencode", "8bit", "attachment; filename*=utf-8''%00%ff", "attachment; filename=\"a\\\"b\"",
    "=?utf-8?b?AA==?=", "=?x-unknown?q?abc?=", "=?utf-8?q?=E2=80=AE?=", "<minji.kim@canary-mail.test>",
    "\"Minji\" <minji.kim@canary-mail.test>, jiho.park@canary-mail.test", "undisclosed-recipients:;", "<>", "@:;,<>",
    "from evil ([192.0.2.1]) by mx; Mon, 23 Nov 2026 10:00:00 +0000", "from x ([IPv6:::1])", "from y ([999.1.1.1])",
    "v=1; a=rsa-sha256; d=phish.test; s=s1; h=from; bh=AA==; b=AA==", "v=1; d=; b=", "Mon, 32 Foo 99999 99:99:99 +9999",
]) | ascii_line | text


def _header(name: str, value: str) -> bytes:
    return name.encode("ascii", "replace") + b": " + value.encode("utf-8", "surrogatepass")


_body_text = st.sampled_from([
    "Confirm at https://phish.test/login?id=1 now.", "http://[::1]:99999/x https://a.b/c).", "=E2=80=AE=ZZ=\n",
    "QUJD\n====\n!!!", "begin 644 x\n`\nend\n", "." * 10, "\x00", "https://" + "a" * 2000,
]) | text
_leaf = st.builds(
    lambda ctype, cte, disp, body: b"\r\n".join(h for h in (
        _header("Content-Type", ctype), _header("Content-Transfer-Encoding", cte) if cte else b"",
        _header("Content-Disposition", disp) if disp else b"") if h) + b"\r\n\r\n" + body.encode("utf-8", "surrogatepass"),
    st.sampled_from(["text/plain", "text/html", "text/plain; charset=x-unknown", "application/pdf", "image/png", "message/rfc822",
                     "text/plain; charset=utf-16"]) | ascii_line,
    st.sampled_from(["", "base64", "quoted-printable", "7bit", "x-bogus"]),
    st.sampled_from(["", "inline", "attachment; filename=invoice.pdf", "attachment; filename*=utf-8''%E2%80%AE.exe"]),
    _body_text | st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()),
)


def _multipart(parts: list[bytes], boundary: str, close: bool) -> bytes:
    b = boundary.encode("utf-8", "surrogatepass")
    body = b"".join(b"--" + b + b"\r\n" + p + b"\r\n" for p in parts)
    return (b"Content-Type: multipart/mixed; boundary=\"" + b + b"\"\r\n\r\n" + body + (b"--" + b + b"--\r\n" if close else b""))


_boundary = st.sampled_from(["b1", "", " ", "--", "a" * 80, "\"", "b1\r\nX: y"]) | ascii_line
_part = st.recursive(_leaf, lambda inner: st.builds(_multipart, st.lists(inner, max_size=4), _boundary, st.booleans()),
                     max_leaves=8)


def deep_multipart(depth: int) -> bytes:
    """A message whose multipart nesting is ``depth`` deep (each level its own boundary)."""
    head = b"".join(b"Content-Type: multipart/mixed; boundary=\"b%d\"\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth))
    tail = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return b"From: a@phish.test\r\nSubject: deep\r\n" + head + b"Content-Type: text/plain\r\n\r\nhi" + tail


def deep_rfc822(depth: int) -> bytes:
    """A message forwarding a message forwarding ... ``depth`` times (message/rfc822)."""
    return b"From: a@phish.test\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * depth + b"Subject: inner\r\n\r\nhi"


messages = (
    st.builds(lambda headers, body: b"\r\n".join(_header(n, v) for n, v in headers) + b"\r\n\r\n" + body,
              st.lists(st.tuples(_header_name, _header_value), max_size=8), _part | st.binary(max_size=200))
    | st.binary(max_size=300)
    | st.integers(1, 3000).map(deep_multipart)
    | st.integers(1, 3000).map(deep_rfc822)
    | st.builds(lambda n: b"Subject: " + b"=?utf-8?q?a?= " * n + b"\r\n\r\nx", st.integers(1, 5000))
    | st.builds(lambda n: b"To: " + b"a@b.test, " * n + b"\r\n\r\nx", st.integers(1, 5000))
    | st.builds(lambda n: b"Subject: x\r\n" + b" folded\r\n" * n + b"\r\nbody", st.integers(1, 5000))
)


def jsonable(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
