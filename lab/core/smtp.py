"""Sans-I/O SMTP for the attacker's proxy (DESIGN §2; STYLE habits 1-3).

Bytes in, commands out, in the manner of h11 and mitmproxy's layers: a `Relay` is the state
machine of ONE proxied connection. The connection handler (`lab.services.mitm`) feeds it what
each side sent and carries out the commands it returns. Every decision (which reply answers
which command, what an attack rewrites, when the stream turns into opaque TLS) is made here,
where tests reach it without sockets.

The wire format (replies, line framing, the end of DATA) is in lab/core/smtpwire.py. Bounds: a
line or a whole reply longer than `MAX_LINE` is a protocol error of the side that sent it; the
relay records the error and answers `CloseBoth`; it never buffers more than that per side.
It keeps only the first `MAX_PLAINTEXT` bytes of what the sender said in the clear. BDAT
(RFC 3030) is not modelled: the lab's receiver does not offer CHUNKING.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from msgspec import Struct
from msgspec.structs import asdict

from .model import Attack
from .smtpwire import MAX_LINE, LineBuffer, Reply, SmtpError, decode_text

CORRUPT_VERB = "XXXXXXXA"  # what the Cisco PIX "fixup smtp" made of STARTTLS: same length
SENDER_TO_RECEIVER = "sender->receiver"
RECEIVER_TO_SENDER = "receiver->sender"
MAX_PLAINTEXT = 1024 * 1024

__all__ = ["MAX_LINE", "MAX_PLAINTEXT", "LineBuffer", "Reply", "SmtpError"]  # re-exported


# ---- commands the relay returns (the handler carries them out, in order) ----

class SendToClient(Struct, frozen=True):
    """Write to the sender. `raw`: bytes the relay passed on without parsing them."""
    data: bytes
    raw: bool = False


class SendToServer(Struct, frozen=True):
    """Write to the receiver. `raw`: bytes the relay passed on without parsing them."""
    data: bytes
    raw: bool = False


class StartPassthrough(Struct, frozen=True):
    """From now on copy raw bytes both ways; feed the relay nothing but EOFs."""

class StartTLSWithServer(Struct, frozen=True):
    """Upgrade the receiver side to TLS (the attacker as client); then keep feeding plaintext."""
    server_hostname: str


class StartTLSWithClient(Struct, frozen=True):
    """Upgrade the sender side to TLS with the attacker's certificate `cert` (a PKI variant)
    for `host`; then keep feeding plaintext."""
    host: str
    cert: str


class CloseBoth(Struct, frozen=True):
    """Close both connections (after writing what earlier commands wrote)."""
    reason: str


Command = (SendToClient | SendToServer | StartPassthrough | StartTLSWithServer | StartTLSWithClient
           | CloseBoth)


class Entry(Struct, frozen=True):
    """One line of the evidence: a command, a reply, a message body or an event.

    `said` is what the originator said, `heard` what the other side heard (None: dropped).
    `origin` is "sender", "receiver", "attacker" (made up by the attacker) or "proxy";
    `attack` names the attack responsible for a change; `tls` marks dialogue inside TLS the
    attacker terminated (intercept-tls)."""
    kind: str  # command | reply | data | event
    direction: str  # SENDER_TO_RECEIVER | RECEIVER_TO_SENDER | "" for events
    said: str
    heard: str | None
    changed: bool = False
    origin: str = "sender"
    attack: str | None = None
    tls: bool = False

    def to_json(self) -> dict[str, str | bool | None]:
        """Plain JSON: strings, booleans and null (`heard`, `attack`)."""
        return asdict(self)


# ---- the attacks (habit 3) ----

class Answer(Struct, frozen=True):
    """The attacker answers the command itself; the receiver never sees it."""
    reply: Reply


class Rename(Struct, frozen=True):
    """The command reaches the receiver under another verb."""
    verb: str


def _unchanged(reply: Reply) -> Reply:
    return reply


class Transform(Struct, frozen=True):
    """What one attack does. `ehlo` rewrites a 250 EHLO reply, `starttls` handles the sender's
    STARTTLS command (None: forward it), `intercept` terminates TLS after the receiver's 2xx to
    STARTTLS, and `inject` is sent in plaintext right after that 2xx."""
    ehlo: Callable[[Reply], Reply] = _unchanged
    starttls: Answer | Rename | None = None
    intercept: bool = False
    inject: Reply | None = None


def _strip(reply: Reply) -> Reply:
    return reply.without_keyword("STARTTLS")


def _corrupt(reply: Reply) -> Reply:
    return reply.with_keyword_renamed("STARTTLS", CORRUPT_VERB)


# Keyed by the proxy-layer kinds of `lab.model.ATTACKS` (a test checks they match). Pure: each
# entry maps values to values. Several attacks combine: EHLO rewrites apply in the step's
# order, and the first attack that handles a STARTTLS command wins.
# Why these are downgrades: RFC 8461 §4.2, §5 (C-01, A-01) make a policy-bound sender refuse
# to deliver when STARTTLS is missing, refused or fails; an opportunistic one falls back.
TRANSFORMS: dict[str, Transform] = {
    # RFC 5321 §4.2.4: a server without the command answers 502; strict senders try STARTTLS
    # whether or not it is offered (DESIGN §4), so the attacker must answer it too.
    "strip-starttls": Transform(
        ehlo=_strip, starttls=Answer(Reply(502, ("5.5.1 STARTTLS not supported",)))),
    # RFC 3207 §4: 454 is the server's temporary refusal.
    "reject-starttls": Transform(
        starttls=Answer(Reply(454, ("4.7.0 TLS not available due to temporary reason",)))),
    "corrupt-starttls": Transform(ehlo=_corrupt, starttls=Rename(CORRUPT_VERB)),
    "intercept-tls": Transform(intercept=True),
    # RFC 3207 §4.2: the client MUST discard what it learnt before TLS; a sender that keeps
    # bytes buffered from then takes these for its EHLO reply inside TLS (response injection).
    "inject-response": Transform(
        inject=Reply(250, ("attacker.invalid injected before TLS", "PIPELINING"))),
}

# ---- the relay ----

# Modes of the sender side, and where the receiver's reply to a barrier command leads.
# Invariants: the sender's bytes are parsed as commands only in "lines" and as message lines
# only in "data". A barrier is a command after which the meaning of the sender's next bytes
# depends on the answer; while one is in flight those bytes are held unparsed ("hold"). An
# honest sender sends nothing meanwhile: RFC 2920 §3.1 ends a pipelined group with DATA and
# RFC 3207 §4 with STARTTLS. "passthrough" and "closed" are final. Unlisted replies -> "lines".
_AFTER_BARRIER: dict[tuple[str, int], str] = {
    ("DATA", 3): "data",  # 354: message lines follow until "."  (RFC 5321 §4.1.1.4)
    ("STARTTLS", 2): "tls",  # 220: TLS follows                    (RFC 3207 §4)
}
_BARRIERS = frozenset(verb for verb, _ in _AFTER_BARRIER)


class _Pending(Struct, frozen=True):
    verb: str  # the command a receiver reply will answer ("<greeting>" first)
    answer: Reply | None = None  # made up by the attacker, sent when it is this one's turn
    attack: str | None = None


class Relay:
    """The proxy's state machine for one connection.

    `attacks` are those that apply to this connection (the caller filters with
    `Attack.applies_to(mx_host)`). Each input returns the commands to carry out, in order.
    Protocol errors of either side become a transcript event and `CloseBoth`; only misuse of
    this API raises `SmtpError`."""

    def __init__(self, attacks: Sequence[Attack] = (), *, mx_host: str = "") -> None:
        for attack in attacks:
            if attack.kind not in TRANSFORMS:
                raise SmtpError(f"attack {attack.kind!r} does not act in the proxy "
                                f"(proxy attacks: {', '.join(TRANSFORMS)})")
        self.attacks = tuple(attacks)
        self.mx_host = mx_host
        self.mode = "lines"  # lines | hold | data | passthrough | closed
        self.transcript: list[Entry] = []
        self.mail_from_count = 0  # MAIL FROM commands the attacker could read
        self.client_bytes = 0  # plaintext bytes the sender sent (all, not only those kept)
        self._plain = bytearray()
        self._server, self._client = LineBuffer("receiver"), LineBuffer("sender")
        self._reply: list[bytes] = []  # lines of an unfinished multi-line reply
        self._reply_size = 0
        self._pending: deque[_Pending] = deque([_Pending("<greeting>")])
        self._tls = False  # inside TLS the attacker terminated
        self._body_bytes = 0

    @property
    def saw_mail_from(self) -> bool:
        """A MAIL FROM crossed readable by the attacker (in clear or inside its own TLS)."""
        return self.mail_from_count > 0

    @property
    def client_plaintext(self) -> bytes:
        """The first `MAX_PLAINTEXT` bytes the sender sent that the attacker could read."""
        return bytes(self._plain)

    # -- inputs --

    def receive_server(self, data: bytes) -> list[Command]:
        return self._guard(self._server, data, self._pump_server)

    def receive_client(self, data: bytes) -> list[Command]:
        return self._guard(self._client, data, self._pump_client)

    def server_eof(self) -> list[Command]:
        return self._eof("receiver")

    def client_eof(self) -> list[Command]:
        return self._eof("sender")

    def upstream_unreachable(self, reason: str) -> list[Command]:
        """The handler could not connect to the genuine receiver."""
        self._event(f"receiver unreachable: {reason}")
        return self._close([], "receiver unreachable")

    def tls_failed(self, side: str, reason: str) -> list[Command]:
        """The handler's TLS handshake with `side` ("sender" or "receiver") failed."""
        self._event(f"TLS handshake with the {side} failed: {reason}")
        return self._close([], f"TLS handshake with the {side} failed")

    # -- plumbing --

    def _guard(self, buf: LineBuffer, data: bytes, pump: Callable[[list[Command]], None]
               ) -> list[Command]:
        if self.mode == "passthrough":
            raise SmtpError("data fed to the relay after StartPassthrough")
        if self.mode == "closed":
            return []
        out: list[Command] = []
        buf.feed(data)
        try:
            pump(out)
        except SmtpError as exc:
            self._event(f"protocol error: {exc}")
            self._close(out, str(exc))
        return _merged(out)

    def _eof(self, side: str) -> list[Command]:
        if self.mode == "closed":
            return []
        out: list[Command] = []
        if self.mode != "passthrough":  # pass on an unfinished line as it is
            if side == "receiver":
                out.append(SendToClient(b"".join(self._reply) + self._server.take_rest(), True))
            else:
                out.append(SendToServer(self._client.take_rest(), True))
        self._event(f"{side} closed the connection")
        return _merged(self._close(out, f"{side} closed the connection"))

    def _close(self, out: list[Command], reason: str) -> list[Command]:
        self.mode = "closed"
        out.append(CloseBoth(reason))
        return out

    def _log(self, kind: str, direction: str, said: str, heard: str | None, *,
             origin: str, attack: str | None = None) -> None:
        changed = heard != said or origin == "attacker"
        entry = Entry(kind, direction, said, heard, changed, origin, attack, self._tls)
        self.transcript.append(entry)

    def _event(self, what: str, attack: str | None = None) -> None:
        origin = "attacker" if attack else "proxy"
        self.transcript.append(Entry("event", "", what, None, False, origin, attack, self._tls))

    # -- receiver -> sender --

    def _pump_server(self, out: list[Command]) -> None:
        while self.mode not in ("passthrough", "closed"):
            line = self._server.next_line()
            if line is None:
                return
            self._reply.append(line)
            self._reply_size += len(line)
            if self._reply_size >= MAX_LINE:
                raise SmtpError(f"a reply of {MAX_LINE} bytes or more", "receiver")
            if line[3:4] == b"-":
                continue  # a continuation line: wait for the whole reply
            lines, self._reply, self._reply_size = self._reply, [], 0
            self._on_reply(Reply.parse(lines), b"".join(lines), out)

    def _on_reply(self, reply: Reply, raw: bytes, out: list[Command]) -> None:
        pending = self._pending.popleft() if self._pending else _Pending("<unsolicited>")
        heard, names = reply, list[str]()
        if pending.verb == "EHLO" and reply.code == 250:
            for attack in self.attacks:
                rewritten = TRANSFORMS[attack.kind].ehlo(heard)
                if rewritten != heard:
                    heard, names = rewritten, [*names, attack.kind]
        data = raw if heard == reply else heard.encode()  # unchanged replies go out verbatim
        nxt = _AFTER_BARRIER.get((pending.verb, reply.code // 100), "lines")
        intercept = next((a for a in self.attacks if TRANSFORMS[a.kind].intercept), None)
        if nxt == "tls" and intercept:
            if len(self._client):
                raise SmtpError("sent data after STARTTLS before the reply to it", "sender")
            # The receiver side first: the sender starts its handshake the moment it reads
            # this reply, and the handler must be ready for it by then.
            out.append(StartTLSWithServer(self.mx_host))
        out.append(SendToClient(data))
        self._log("reply", RECEIVER_TO_SENDER, decode_text(raw), decode_text(data), origin="receiver",
                  attack=",".join(names) or None)
        if pending.verb in _BARRIERS:
            if nxt == "tls":
                return self._start_tls(out, intercept)
            self.mode = nxt
        self._flush_answers(out)
        self._pump_client(out)  # what the sender sent meanwhile, now that its meaning is known

    def _start_tls(self, out: list[Command], intercept: Attack | None) -> None:
        for attack in self.attacks:
            inject = TRANSFORMS[attack.kind].inject
            if inject is not None:
                out.append(SendToClient(inject.encode()))
                text = decode_text(inject.encode())
                self._log("reply", RECEIVER_TO_SENDER, text, text, origin="attacker",
                          attack=attack.kind)
        out.append(SendToClient(b"".join(self._reply) + self._server.take_rest(), True))
        self._reply, self._reply_size = [], 0
        if intercept is None:
            out += [SendToServer(self._client.take_rest(), True), StartPassthrough()]
            self.mode = "passthrough"
            return self._event("tls-passthrough")
        out.append(StartTLSWithClient(self.mx_host, intercept.cert or "self-signed"))
        self._event("tls-intercepted", intercept.kind)
        self._tls, self.mode = True, "lines"
        self._pending.clear()  # RFC 3207 §4.2: the session starts over inside TLS

    def _flush_answers(self, out: list[Command]) -> None:
        """Send the attacker's own replies whose turn has come (pipelining keeps order)."""
        while self._pending and self._pending[0].answer is not None:
            pending = self._pending.popleft()
            data = pending.answer.encode() if pending.answer else b""
            out.append(SendToClient(data))
            self._log("reply", RECEIVER_TO_SENDER, decode_text(data), decode_text(data), origin="attacker",
                      attack=pending.attack)

    # -- sender -> receiver --

    def _pump_client(self, out: list[Command]) -> None:
        while self.mode in ("lines", "data"):
            if self.mode == "data":
                if not self._on_body(out):
                    return
                continue
            line = self._client.next_line()
            if line is None:
                return
            self._read(line)
            self._on_command(line, out)
        if self.mode == "hold" and len(self._client) >= MAX_LINE:
            raise SmtpError(f"sent {MAX_LINE} bytes or more before the reply to STARTTLS or DATA",
                            "sender")

    def _read(self, data: bytes) -> None:
        """Count what the sender said readably, and keep the first MAX_PLAINTEXT bytes."""
        self.client_bytes += len(data)
        self._plain += data[: max(0, MAX_PLAINTEXT - len(self._plain))]

    def _on_body(self, out: list[Command]) -> bool:
        """Pass on the body lines buffered; False when no complete line is there yet."""
        block, ended = self._client.body_lines()
        if not block:
            return False
        self._read(block)
        out.append(SendToServer(block))
        self._body_bytes += len(block)
        if ended:  # RFC 5321 §4.1.1.4: the end of the mail data
            text = f"[message data: {self._body_bytes} bytes]"
            self._log("data", SENDER_TO_RECEIVER, text, text, origin="sender")
            self._body_bytes, self.mode = 0, "lines"
            self._pending.append(_Pending("<end of data>"))
        return True

    def _on_command(self, line: bytes, out: list[Command]) -> None:
        said = decode_text(line)
        verb, _, arg = said.partition(" ")
        verb = verb.upper()  # RFC 5321 §2.4: verbs are case-insensitive
        if verb == "MAIL" and arg.upper().startswith("FROM:"):
            self.mail_from_count += 1
        # the first attack that handles STARTTLS decides
        attack = next((a.kind for a in self.attacks if TRANSFORMS[a.kind].starttls), None)
        action = TRANSFORMS[attack].starttls if attack and verb == "STARTTLS" else None
        if isinstance(action, Answer):
            self._log("command", SENDER_TO_RECEIVER, said, None, origin="sender", attack=attack)
            self._pending.append(_Pending(verb, action.reply, attack))
            return self._flush_answers(out)
        if isinstance(action, Rename):
            line = action.verb.encode() + line[len(verb):]
            verb = action.verb  # no longer a barrier: the receiver will refuse it
        out.append(SendToServer(line))
        self._log("command", SENDER_TO_RECEIVER, said, decode_text(line), origin="sender",
                  attack=attack if action else None)
        self._pending.append(_Pending(verb))
        if verb in _BARRIERS:
            self.mode = "hold"


def _merged(commands: list[Command]) -> list[Command]:
    """Runs of writes to the same side become one write (joined once, so linear)."""
    out: list[Command] = []
    run: list[SendToClient | SendToServer] = []
    for command in [*commands, None]:
        same = (isinstance(command, SendToClient | SendToServer) and bool(run)
                and type(command) is type(run[0]) and command.raw == run[0].raw)
        if run and not same:
            out.append(type(run[0])(b"".join(c.data for c in run), run[0].raw))
            run = []
        if isinstance(command, SendToClient | SendToServer):
            if command.data:
                run.append(command)
        elif command is not None:
            out.append(command)
    return out
