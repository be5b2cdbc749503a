"""``probe()``: what an SMTP or LMTP server under test does with each rule and extension.

Every check opens its own connection to the one host named, so a server that hangs up on one
check cannot spoil the next. No check delivers mail: transactions are ended with RSET before
their data is complete, and content checks (bare LF, ``<LF>.<LF>``) hang up in the middle of
DATA rather than ever sending CR LF . CR LF. Checks that need an accepted recipient use
``recipient``; give one that discards mail (a null route), since a server that wrongly ends the
data at a bare LF would deliver what came before it.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ..protocol import RemoteProtocolError, Reply, ReplyParser, parse_ehlo

__all__ = ["Check", "ProbeReport", "probe"]

_QUIET = 1.0  # seconds of silence taken as "the server does not answer this"


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One finding: ``status`` is the stable verdict, ``detail`` what the server said."""

    name: str
    status: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeReport:
    """What :func:`probe` found: the target and one :class:`Check` per check, in order."""

    target: str
    checks: list[Check] = field(default_factory=list)

    def status(self, name: str) -> str:
        return next(check.status for check in self.checks if check.name == name)

    def stable(self) -> dict[str, str]:
        """Check name -> status: what fixtures compare (details carry queue ids, names...)."""
        return {check.name: check.status for check in self.checks}

    def to_json(self) -> str:
        checks = [asdict(check) for check in self.checks]
        return json.dumps({"target": self.target, "checks": checks}, indent=2)

    def table(self) -> str:
        width = max(len(check.name) for check in self.checks)
        swidth = min(24, max(len(check.status) for check in self.checks))
        lines = [f"probe of {self.target}"]
        for check in self.checks:
            row = f"  {check.name:<{width}}  {check.status:<{swidth}}  {check.detail}"
            lines.append(row.rstrip())
        return "\n".join(lines)


# A check's result: its status and detail.
Verdict = tuple[str, str]


class _Closed(Exception):
    """The server closed the connection."""


class _Link:
    """A blocking connection with an SMTP reply parser: the probe's only I/O."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.sock: socket.socket = socket.create_connection((host, port), timeout=timeout)
        self.host, self.timeout = host, timeout
        self.parser = ReplyParser()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self, timeout: float | None = None) -> Reply | None:
        """The next reply; None when none came within ``timeout`` (default: the link's)."""
        self.sock.settimeout(timeout or self.timeout)
        while (reply := self.parser.next_reply()) is None:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return None
            if not data:
                raise _Closed
            self.parser.feed(data)
        return reply

    def command(self, line: str) -> Reply:
        self.send(line.encode("utf-8") + b"\r\n")
        reply = self.reply()
        if reply is None:
            raise TimeoutError(f"no reply to {line.split()[0]}")
        return reply

    def start_tls(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock, server_hostname=self.host)
        self.parser = ReplyParser()

    def close(self) -> None:
        self.sock.close()


@dataclass(slots=True)
class _Target:
    host: str
    port: int
    lmtp: bool
    implicit_tls: bool
    context: ssl.SSLContext
    timeout: float
    sender: str
    recipient: str
    ehlo: Reply | None = None

    @property
    def hello(self) -> str:
        return "LHLO" if self.lmtp else "EHLO"

    def connect(self, *, hello: bool = True) -> tuple[_Link, Reply]:
        link = _Link(self.host, self.port, self.timeout)
        if self.implicit_tls:
            link.start_tls(self.context)
        greeting = link.reply()
        if greeting is None:
            raise TimeoutError("no greeting")
        if hello:
            greeting = link.command(f"{self.hello} probe.invalid")
        return link, greeting

    @property
    def keywords(self) -> frozenset[str]:
        if self.ehlo is None or self.ehlo.code != 250:
            return frozenset()
        return frozenset(line.split()[0].upper() for line in self.ehlo.lines[1:] if line.strip())

    def envelope(self, link: _Link) -> None:
        """MAIL and RCPT for ``recipient``; _Skip when either is refused."""
        for line in (f"MAIL FROM:<{self.sender}>", f"RCPT TO:<{self.recipient}>"):
            if not (reply := link.command(line)).is_success:
                raise _Skip(f"{line.split(':')[0]} refused: {_short(reply)}")


def _short(reply: Reply | None) -> str:
    if reply is None:
        return "no reply"
    first = reply.lines[0] if reply.lines else ""
    return f"{reply.code} {first}"[:70]


# -- the checks: each takes the target and returns one Check ----------------------------------


def _greeting(target: _Target) -> Verdict:
    link, greeting = target.connect(hello=False)
    try:
        ehlo = link.command(f"{target.hello} probe.invalid")
    finally:
        link.close()
    target.ehlo = ehlo
    ok = greeting.code == 220 and ehlo.code == 250
    keywords = " ".join(sorted(target.keywords))
    return (
        "ok" if ok else f"{greeting.code}/{ehlo.code}",
        f"{_short(greeting)} | {keywords}",
    )


def _helo(target: _Target) -> Verdict:
    if target.lmtp:
        return ("n/a", "LMTP has no HELO")
    link, _ = target.connect(hello=False)
    try:
        reply = link.command("HELO probe.invalid")
    finally:
        link.close()
    return ("yes" if reply.code == 250 else "no", _short(reply))


def _pipelining(target: _Target) -> Verdict:
    advertised = "PIPELINING" in target.keywords
    link, _ = target.connect()
    try:
        link.send(b"NOOP")  # half a line: a server must not answer yet
        early = link.reply(_QUIET)
        link.send(b"\r\nMAIL FROM:<>\r\nRSET\r\nNOOP\r\nXPROBE\r\n")
        codes = [getattr(link.reply(), "code", None) for _ in range(5 if early is None else 4)]
    finally:
        link.close()
    # One reply per command, in order: the unknown verb's refusal comes last.
    in_order = len(codes) == 5 and None not in codes and codes[-1] in (500, 502)
    status = ("honoured" if in_order and early is None else "broken") if advertised else "no"
    if not advertised and in_order and early is None:
        status = "no (but tolerated)"
    return (status, f"reply codes {codes}")


def _offered(
    keyword: str, exchange: Callable[[_Target, _Link], Reply]
) -> Callable[[_Target], Verdict]:
    """An extension advertised, and whether ``exchange`` (which uses it) is accepted; RSET."""

    def check(target: _Target) -> Verdict:
        if keyword not in target.keywords:
            return "no", ""
        link, _ = target.connect()
        try:
            reply = exchange(target, link)
            link.command("RSET")
        finally:
            link.close()
        return ("yes" if reply.is_success else "advertised, refused"), _short(reply)

    return check


def _mail_with(parameters: str, sender: str | None = None) -> Callable[[_Target, _Link], Reply]:
    def exchange(target: _Target, link: _Link) -> Reply:
        return link.command(
            f"MAIL FROM:<{target.sender if sender is None else sender}> {parameters}"
        )

    return exchange


def _bdat_chunk(target: _Target, link: _Link) -> Reply:
    target.envelope(link)
    link.send(b"BDAT 7\r\nprobe\r\n")  # not LAST: nothing is delivered
    reply = link.reply()
    if reply is None:
        raise TimeoutError("no reply to BDAT")
    return reply


def _size(target: _Target) -> Verdict:
    sizes = [line.split() for line in (target.ehlo.lines if target.ehlo else ())]
    limit = next((words for words in sizes if words and words[0].upper() == "SIZE"), None)
    if limit is None:
        return ("no", "")
    if len(limit) < 2 or not limit[1].isdigit() or int(limit[1]) == 0:
        return ("no limit", "")
    link, _ = target.connect()
    try:
        reply = link.command(f"MAIL FROM:<{target.sender}> SIZE={int(limit[1]) + 1}")
        link.command("RSET")
    finally:
        link.close()
    status = "enforced" if reply.code == 552 else ("refused" if reply.code >= 400 else "ignored")
    return (status, f"limit {limit[1]}: {_short(reply)}")


def _enhanced(target: _Target) -> Verdict:
    advertised = "ENHANCEDSTATUSCODES" in target.keywords
    link, _ = target.connect()
    try:
        reply = link.command("NOOP")
    finally:
        link.close()
    used = reply.enhanced_code is not None
    status = {(True, True): "yes", (True, False): "advertised, unused"}.get(
        (advertised, used), "no"
    )
    return (status, _short(reply))


def _auth(tls: bool) -> Callable[[_Target], Verdict]:

    def check(target: _Target) -> Verdict:
        if tls and "STARTTLS" not in target.keywords and not target.implicit_tls:
            return ("n/a", "no TLS")
        if tls and not target.implicit_tls:
            link, ehlo = _after_starttls(target)
            link.close()
        elif not tls and target.implicit_tls:
            return ("n/a", "implicit TLS")
        else:
            ehlo = target.ehlo
        mechanisms = sorted(parse_ehlo(ehlo).auth) if ehlo and ehlo.code == 250 else []
        return (" ".join(mechanisms) or "none", "")

    return check


def _after_starttls(target: _Target, injected: bytes = b"") -> tuple[_Link, Reply | None]:
    link, _ = target.connect()
    link.send(b"STARTTLS\r\n" + injected)
    reply = link.reply()
    if reply is None or reply.code != 220:
        link.close()
        raise _Skip(f"STARTTLS refused: {_short(reply)}")
    link.start_tls(target.context)
    return link, link.command(f"{target.hello} probe.invalid")


class _Skip(Exception):
    """The check cannot run against this server; the message says why."""


def _starttls(target: _Target) -> Verdict:
    if "STARTTLS" not in target.keywords:
        return ("no", "")
    # NOOP pipelined after STARTTLS in plaintext: executed after the handshake it would answer
    # first, before our EHLO (the injection of CVE-2011-0411 and its many later cousins).
    link, ehlo = _after_starttls(target, injected=b"NOOP\r\n")
    try:
        extra = link.reply(_QUIET)
    except _Closed:
        extra = None
    finally:
        link.close()
    if ehlo is not None and ehlo.code == 250 and len(ehlo.lines) > 1 and extra is None:
        return ("yes, injection discarded", "")
    return ("yes, INJECTION EXECUTED", _short(ehlo))


def _bare_lf_command(target: _Target) -> Verdict:
    link, _ = target.connect()
    try:
        link.send(b"NOOP\n")
        reply = link.reply(_QUIET)
    except _Closed:
        return ("closed", "")
    finally:
        link.close()
    if reply is None:
        return ("waits for CR LF", "")
    status = "accepted" if reply.is_success else "refused"
    return (status, _short(reply))


def _data_ending(ending: bytes) -> Callable[[_Target], Verdict]:
    """Whether ``ending`` (not CR LF . CR LF) ends the data: the smuggling question."""

    def check(target: _Target) -> Verdict:
        link, _ = target.connect()
        try:
            target.envelope(link)
            data = link.command("DATA")
            if data.code != 354:
                raise _Skip(f"DATA refused: {_short(data)}")
            link.send(b"Subject: rawsmtp probe\r\n\r\nnot for delivery" + ending)
            reply = link.reply(_QUIET)
        except _Closed:
            return ("closed the connection", "")
        finally:
            link.close()  # in the middle of DATA: the transaction is aborted
        if reply is None:
            return ("not end of data", "")
        status = "ENDS DATA" if reply.is_success else "refused"
        return (status, _short(reply))

    return check


def _line_length(target: _Target) -> Verdict:
    results = []
    for length in (1000, 4096, 20000):
        link, _ = target.connect()
        try:
            link.send(b"NOOP " + b"x" * (length - 7) + b"\r\n")
            reply = link.reply()
            results.append(f"{length}:{reply.code if reply else 'silent'}")
        except (_Closed, OSError):
            results.append(f"{length}:closed")
        finally:
            link.close()
    return (" ".join(results), "")


def _rset_noop(target: _Target) -> Verdict:
    link, _ = target.connect()
    try:
        codes = [link.command(line).code for line in ("NOOP", f"MAIL FROM:<{target.sender}>")]
        codes += [link.command("RSET").code, link.command(f"MAIL FROM:<{target.sender}>").code]
        link.command("RSET")
    finally:
        link.close()
    ok = codes == [250, 250, 250, 250]
    return ("ok" if ok else "broken", f"codes {codes}")


def _failed_bdat(target: _Target) -> Verdict:
    """BDAT with no transaction: are its octets read as the chunk, or as commands?"""
    link, _ = target.connect()
    try:
        link.send(b"BDAT 6\r\nNOOP\r\nRSET\r\n")
        codes = [getattr(link.reply(), "code", None)]
        while (reply := link.reply(_QUIET)) is not None:
            codes.append(reply.code)
    except _Closed:
        return ("closed the connection", "")
    finally:
        link.close()
    consumed = len(codes) == 2 and codes[1] == 250
    status = "chunk consumed" if consumed else "CHUNK READ AS COMMANDS"
    if len(codes) == 1:
        status = "no reply to what followed"
    return (status, f"reply codes {codes}")


_CHECKS: list[tuple[str, Callable[[_Target], Verdict]]] = [
    ("greeting+ehlo", _greeting),
    ("helo", _helo),
    ("pipelining", _pipelining),
    ("chunking", _offered("CHUNKING", _bdat_chunk)),
    ("failed bdat", _failed_bdat),
    ("size", _size),
    ("smtputf8", _offered("SMTPUTF8", _mail_with("SMTPUTF8", "prøbe@exämple.invalid"))),
    ("8bitmime", _offered("8BITMIME", _mail_with("BODY=8BITMIME"))),
    ("dsn", _offered("DSN", _mail_with("RET=HDRS ENVID=rawsmtp+2Bprobe"))),
    ("enhancedstatuscodes", _enhanced),
    ("starttls", _starttls),
    ("auth before tls", _auth(tls=False)),
    ("auth after tls", _auth(tls=True)),
    ("bare lf command", _bare_lf_command),
    ("lf.lf ends data", _data_ending(b"\n.\n")),
    ("crlf.lf ends data", _data_ending(b"\r\n.\n")),
    ("lf.crlf ends data", _data_ending(b"\n.\r\n")),
    ("line length", _line_length),
    ("rset+noop", _rset_noop),
]


def _run(check: Callable[[_Target], Verdict], target: _Target) -> Verdict:
    try:
        return check(target)
    except _Skip as skip:
        return "skipped", str(skip)
    except (OSError, _Closed, RemoteProtocolError, ssl.SSLError) as error:
        return "error", f"{type(error).__name__}: {error}"[:70]


def probe(
    url: str,
    *,
    recipient: str = "null@probe.invalid",
    sender: str = "",
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> ProbeReport:
    """Probe the server of ``url`` (``smtp://``, ``smtps://`` or ``lmtp://host:port``).

    ``recipient`` is used where a check needs an accepted one (give a null route; nothing is
    ever delivered unless the server ends data at a bare LF, which the report then shows).
    ``ssl_context`` verifies the certificate (default: not verified, since a probe asks what
    the server does, not whether to trust it).
    """
    from ..config._url import options_from_url

    options = options_from_url(url)
    if ssl_context is None:
        ssl_context = ssl.create_default_context()
        ssl_context.check_hostname, ssl_context.verify_mode = False, ssl.CERT_NONE
    target = _Target(
        host=options["host"],
        port=options.get("port") or (465 if options.get("secure") else 25),
        lmtp=bool(options.get("lmtp")),
        implicit_tls=bool(options.get("secure")),
        context=ssl_context,
        timeout=timeout,
        sender=sender,
        recipient=recipient,
    )
    report = ProbeReport(target=f"{target.host}:{target.port}")
    for name, check in _CHECKS:
        status, detail = _run(check, target)
        report.checks.append(Check(name=name, status=status, detail=detail))
        if target.ehlo is None:
            break  # no greeting or EHLO: nothing else can work
    return report
