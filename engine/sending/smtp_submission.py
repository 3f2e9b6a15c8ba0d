"""SMTP submission: customers send through Sendstream with an SMTP username and password.

The server (``adapters.smtp_in``) speaks the protocol; this module decides: who a
login is (a live ``SmtpCredential``), what a credential may send (its domain, its
rate), and how a received MIME message becomes the ``EmailContent`` that the send
service accepts exactly as it accepts ``POST /api/v1/email``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import hashlib
import logging
import mimetypes
import re
import ssl
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email import policy
from email.headerregistry import HeaderRegistry, UnstructuredHeader
from email.message import Message
from email.parser import BytesParser
from uuid import UUID

from adapters.faults import StorageFault, storage_fault
from adapters.mime import build_message
from adapters.smtp_in import SmtpServer
from domain.account import SmtpCredential, domain_accepts_sender
from domain.content import Address, Attachment, EmailContent
from domain.errors import Extensions, RequestRejected, SendEmail
from engine.accounts.passwords import hash_password, verify_password
from engine.application import SenderContext, Sendstream
from engine.params import is_valid_email
from engine.rate_limit import Rate, RateLimiter, seconds_to_wait
from engine.sending.service import SendingService
from engine.settings import Settings

log = logging.getLogger(__name__)

# --- MIME → EmailContent ------------------------------------------------------------------

# Text that may not reach a header, as adapters.mime refuses it: control characters (TAB
# excepted), Unicode line separators, lone surrogates. CR and LF would start a new header.
_UNSAFE_TEXT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_FIELD_NAME = re.compile(r"[!-9;-~]+")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
# Headers the pipeline writes itself (from the content's own fields, or for each copy),
# and trace and authentication fields, which belong to the hops that add them: a client's
# copy would at best be stale and at worst a forgery of ours.
_DROPPED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From", "To", "Cc", "Bcc", "Subject", "Reply-To", "Sender", "Date", "Message-ID",
        "MIME-Version", "Return-Path", "Received", "Delivered-To", "DKIM-Signature",
        "Authentication-Results", "ARC-Seal", "ARC-Message-Signature",
        "ARC-Authentication-Results",
    )
)  # fmt: skip
_DROPPED_PREFIXES = ("content-", "x-sendstream-")
MAX_HEADER_SECTION_BYTES = 256 * 1024
MAX_HEADER_VALUE = 8000  # a long thread's References run to a few thousand characters
MAX_CUSTOM_HEADERS = 100
MAX_PARTS = 200
MAX_DEPTH = 16
MAX_FILENAME = 255
# Values are decoded as unstructured text whatever their name: only the encoded-words
# matter here, and a structured parser can raise on values it finds malformed.
_UNSTRUCTURED = HeaderRegistry(default_class=UnstructuredHeader, use_default_map=False)
# Regenerates an attached message as it came: no header refolding, no ">From " quoting.
_AS_RECEIVED = policy.compat32.clone(linesep="\r\n", mangle_from_=False, max_line_length=0)


class UnusableMessage(ValueError):
    """The received message cannot become an email: its text says why, for the SMTP reply."""


def content_from_mime(
    raw: bytes, envelope_recipients: Sequence[str], *, max_reply_to: int = 5
) -> EmailContent:
    """The email in ``raw`` (RFC 5322 / MIME, as received at DATA), to be sent to the envelope.

    The envelope decides who gets a copy: a recipient named in To or Cc is one of those,
    with the header's display name; any other is Bcc. An address in To or Cc that is not
    in the envelope gets nothing and is left out of the headers, as the content has no
    place for a name that is shown but not sent to.
    Raises ``UnusableMessage`` when the message cannot be sent as it is.
    """
    recipients = _envelope(envelope_recipients)
    if b"\0" in raw:
        raise UnusableMessage("the message contains NUL characters")
    head = _header_section(raw)
    if len(head) > MAX_HEADER_SECTION_BYTES:
        raise UnusableMessage(f"the header section exceeds {MAX_HEADER_SECTION_BYTES} bytes")
    if not head.isascii():
        # RFC 6532 allows UTF-8 headers only with SMTPUTF8, which is not offered; their
        # charset would be a guess.
        raise UnusableMessage("the header section contains 8-bit characters (use RFC 2047)")
    try:
        # compat32 keeps header values as they came. The modern policy parses Content-Type
        # with its full grammar at every get_content_type(), which the parser itself calls
        # for each part: 1.7 ms of a small message against 0.3 ms. Its parsers are used
        # where their decoding matters (addresses, subject, filenames).
        parsed = BytesParser(policy=policy.compat32).parsebytes(raw)
        content = _content(parsed, recipients, max_reply_to)
    except UnusableMessage:
        raise
    except Exception as error:
        # The stdlib parser accepts nearly anything, but its header and content accessors
        # have raised on malformed input before (CPython issues are filed every year).
        raise UnusableMessage("the message is not readable MIME") from error
    _check_renders(content)
    return content


def _envelope(envelope_recipients: Sequence[str]) -> dict[str, str]:
    """Lowered address → address as given, each once, in order."""
    recipients: dict[str, str] = {}
    for address in envelope_recipients:
        if not is_valid_email(address):
            raise UnusableMessage(f"invalid recipient address <{address}>")
        recipients.setdefault(address.lower(), address)
    if not recipients:
        raise UnusableMessage("the message has no recipient")
    return recipients


def _header_section(raw: bytes) -> bytes:
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    return raw[: min(ends)] if ends else raw


def _content(message: Message, recipients: dict[str, str], max_reply_to: int) -> EmailContent:
    senders = _addresses(message, "From")
    if not senders:
        raise UnusableMessage("the message has no From address")
    if len(senders) > 1:
        raise UnusableMessage("the From header must hold exactly one address")
    sender = senders[0]
    if not is_valid_email(sender.email):
        raise UnusableMessage(SendEmail.FROM_EMAIL_INVALID.message)

    placed: set[str] = set()
    visible: dict[str, list[Address]] = {"To": [], "Cc": []}
    for field, group in visible.items():
        for address in _addresses(message, field):
            key = address.email.lower()
            if key in recipients and key not in placed:
                placed.add(key)
                group.append(Address(recipients[key], address.name))
    bcc = tuple(Address(email) for key, email in recipients.items() if key not in placed)

    reply_to = _addresses(message, "Reply-To")
    if any(not is_valid_email(a.email) for a in reply_to):
        raise UnusableMessage(SendEmail.REPLY_TO_INVALID.message)
    if len(reply_to) > max_reply_to:
        raise UnusableMessage(SendEmail.REPLY_TO_TOO_MANY.message)

    subjects = _raw_values(message, "Subject")
    bodies = _Bodies()
    bodies.visit(message, depth=0)
    if bodies.plain is None and bodies.html is None:
        raise UnusableMessage("the message has no text/plain or text/html body")
    return EmailContent(
        subject=_one_line(_decoded("Subject", subjects[0])) if subjects else "",
        sender=sender,
        to=tuple(visible["To"]),
        cc=tuple(visible["Cc"]),
        bcc=bcc,
        reply_to=tuple(reply_to),
        html=bodies.html,
        plain=bodies.plain,
        attachments=tuple(bodies.attachments),
        headers=_custom_headers(message),
    )


def _one_line(text: str) -> str:
    """Display names and subjects lose line breaks and control characters rather than gain
    header lines (an RFC 2047 encoded-word can carry a CR LF)."""
    return _UNSAFE_TEXT.sub(" ", text).strip()


def _raw_values(message: Message, field: str) -> list[str]:
    """The field's values as received, unfolded (compat32 may wrap 8-bit ones in objects)."""
    lowered = field.lower()
    return [_FOLD.sub("", str(v)) for k, v in message.raw_items() if k.lower() == lowered]


def _decoded(field: str, value: str) -> str:
    """An unstructured value with its RFC 2047 encoded-words decoded."""
    return str(_UNSTRUCTURED(field, value)) if "=?" in value else value.strip(" \t")


def _addresses(message: Message, field: str) -> list[Address]:
    try:
        headers = [policy.default.header_factory(field, v) for v in _raw_values(message, field)]
    except Exception as error:
        # e.g. a display name whose encoded-words decode to a line break: the stdlib's
        # Address refuses it, which is right.
        raise UnusableMessage(f"the {field} header is not a valid address list") from error
    found: list[Address] = []
    for header in headers:
        for address in getattr(header, "addresses", ()):
            if address.addr_spec and address.addr_spec != "<>":
                found.append(Address(address.addr_spec, _one_line(address.display_name)))
    return found


def _custom_headers(message: Message) -> tuple[tuple[str, str], ...]:
    headers: list[tuple[str, str]] = []
    for name, raw_value in message.raw_items():
        lowered = name.lower()
        if lowered in _DROPPED_HEADERS or lowered.startswith(_DROPPED_PREFIXES):
            continue
        if not _FIELD_NAME.fullmatch(name):
            raise UnusableMessage("a header name is not valid")
        value = _decoded(name, _FOLD.sub("", str(raw_value)))
        if _UNSAFE_TEXT.search(value):
            raise UnusableMessage(f"the value of {name} is not one line")
        if len(value) > MAX_HEADER_VALUE:
            raise UnusableMessage(f"the value of {name} is too long")
        headers.append((name, value))
    if len(headers) > MAX_CUSTOM_HEADERS:
        raise UnusableMessage(f"the message has more than {MAX_CUSTOM_HEADERS} custom headers")
    return tuple(headers)


class _Bodies:
    """The first inline text/plain and text/html parts, and every other leaf as an attachment."""

    def __init__(self) -> None:
        self.plain: str | None = None
        self.html: str | None = None
        self.attachments: list[Attachment] = []
        self._parts = 0

    def visit(self, part: Message, depth: int) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS or depth > MAX_DEPTH:
            raise UnusableMessage("the message has too many or too deeply nested MIME parts")
        if depth and not all(str(value).isascii() for _, value in part.raw_items()):
            raise UnusableMessage("a MIME part's headers contain 8-bit characters")
        maintype = part.get_content_maintype()
        if maintype == "multipart":
            if not part.is_multipart():
                raise UnusableMessage("a multipart part has no parts (is its boundary missing?)")
            for child in _children(part):
                self.visit(child, depth + 1)
            return
        content_type = part.get_content_type()
        filename = _filename(part)
        inline = part.get_content_disposition() != "attachment" and not filename
        if inline and content_type == "text/plain" and self.plain is None:
            self.plain = _text(part) or None
        elif inline and content_type == "text/html" and self.html is None:
            self.html = _text(part) or None
        else:
            self.attachments.append(self._attachment(part, content_type, filename))

    def _attachment(self, part: Message, content_type: str, filename: str) -> Attachment:
        if part.get_content_maintype() == "message":
            # The parser made a message object of it; what is sent is its source form.
            data = _header_section_end(part.as_bytes(policy=_AS_RECEIVED))
            # RFC 2046 5.2.1 forbids encoding a message/rfc822 body, but some clients do.
            encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
            if encoding == "base64":
                data = binascii.a2b_base64(data)
            elif encoding == "quoted-printable":
                data = binascii.a2b_qp(data)
        else:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
        if not filename:
            extension = mimetypes.guess_extension(content_type) or ".bin"
            filename = f"attachment-{len(self.attachments) + 1}{extension}"
        if len(filename) > MAX_FILENAME:
            raise UnusableMessage(f"an attachment's filename exceeds {MAX_FILENAME} characters")
        return Attachment(filename, content_type, base64.b64encode(data).decode("ascii"))


def _filename(part: Message) -> str:
    """RFC 2231 parameters are decoded by the stdlib; RFC 2047 words in a quoted filename
    are not standard, but common enough (Outlook, Gmail) to decode too."""
    return _one_line(_decoded("Content-Disposition", part.get_filename() or ""))


def _children(part: Message) -> Iterator[Message]:
    payload = part.get_payload()
    assert isinstance(payload, list)
    for child in payload:
        assert isinstance(child, Message)
        yield child


def _header_section_end(source: bytes) -> bytes:
    """What follows the header section of a part's source (its body)."""
    _, blank, body = source.partition(b"\r\n\r\n")
    return body if blank else b""


def _text(part: Message) -> str:
    """A text part's body, decoded with its charset; raises when that is not possible."""
    payload = part.get_payload(decode=True)
    data = payload if isinstance(payload, bytes) else b""
    what = part.get_content_type()
    charset = part.get_content_charset() or "us-ascii"
    try:
        codec = codecs.lookup(charset)
    except LookupError:
        raise UnusableMessage(f"the {what} part has an unknown charset") from None
    try:
        text = data.decode(codec.name)
    except UnicodeDecodeError:
        # A missing charset parameter on UTF-8 text is the common mistake; anything else
        # that does not decode is refused rather than sent garbled.
        if codec.name != "ascii":
            raise UnusableMessage(f"the {what} part is not valid {codec.name}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UnusableMessage(f"the {what} part is 8-bit text without a charset") from None
    if "\0" in text:
        raise UnusableMessage(f"the {what} part contains NUL characters")
    # Stored as the API stores text, with bare LF; the renderer writes CRLF again.
    text = text.replace("\r\n", "\n")
    return text if text.strip() else ""


def _check_renders(content: EmailContent) -> None:
    """What is accepted must render: the delivery worker runs this same code for each copy,
    and a failure there would be found only after the client was told the mail was queued."""
    recipient = content.recipients()[0][1]
    try:
        build_message(
            content,
            recipient=recipient,
            message_id="check",
            domain=content.sender.email.rpartition("@")[2],
        )
    except ValueError as error:
        raise UnusableMessage(f"the message cannot be rendered: {error}") from None


# --- the server -----------------------------------------------------------------------------

AUTH_CACHE_SECONDS = 60.0
_LIVE_CACHE_SECONDS = 2.0  # how soon a deleted credential or deactivated domain is noticed
_VERIFY_THREADS = 2  # Argon2 checks at once: a burst of logins cannot take every core
_INLINE_PARSE_BYTES = 256 * 1024  # larger messages are parsed off the server's loop

# Errors of the send service that say this sender may not send (this mail, from here).
_SENDER_ERRORS = frozenset({2, 3, 12, 13, 32, 34})
_SUPPRESSED = SendEmail.SUPPRESSED.code
_LIMIT_ERRORS = frozenset({429, SendEmail.SENDING_LIMIT_REACHED.code})
_INTERNAL = 500


@dataclass(frozen=True)
class SmtpLogin:
    """An authenticated SMTP session's identity: the credential as it was at AUTH."""

    credential_id: UUID
    username: str
    password_hash: str
    account_id: UUID
    domain_id: UUID


def reply_line(code: int, status: str, text: str) -> str:
    """One SMTP reply line: printable ASCII only (SMTPUTF8 is not offered), bounded."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in " ".join(text.split()))
    return f"{code} {status} {clean[:400]}"


def reply_for_rejection(rejected: RequestRejected) -> str:
    """The SMTP reply for what the send service refused."""
    first = rejected.errors[0] if rejected.errors else None
    text = " ".join(e.message for e in rejected.errors) or "Rejected"
    code = first.code if first is not None else 0
    if code in _SENDER_ERRORS:
        return reply_line(550, "5.7.1", text)
    if code == _SUPPRESSED:
        return reply_line(550, "5.1.1", text)
    if code in _LIMIT_ERRORS:
        # The daily sending limit (17) is temporary too: it resets at midnight UTC, and a
        # queueing client that retries then delivers the mail instead of bouncing it to
        # its author.
        if rejected.retry_after:
            text += f" Try again in {rejected.retry_after} seconds."
        return reply_line(451, "4.7.1", text)
    if code == _INTERNAL:
        return reply_line(451, "4.3.0", text)
    if first == Extensions.BUSY:  # RFC 3463 4.3.2: system not accepting network messages
        return reply_line(451, "4.3.2", text)
    return reply_line(550, "5.6.0", text)


class _Submissions:
    """The engine's side of the SMTP dialogue (``adapters.smtp_in.SubmissionHandler``)."""

    def __init__(self, app: Sendstream, settings: Settings, sending: SendingService) -> None:
        self._app = app
        self._sending = sending
        self._max_recipients = settings.max_recipients
        self._max_reply_to = settings.max_reply_to
        self._limiter = RateLimiter(Rate.parse(settings.smtp_submission_rate_limit))
        # Set while the server runs (by SubmissionServer.start).
        self.verifier: ThreadPoolExecutor | None = None
        self._verified: dict[tuple[UUID, int, bytes], float] = {}
        self._credentials: dict[UUID, tuple[float, SmtpCredential | None]] = {}
        self._senders: dict[UUID, tuple[float, SenderContext]] = {}
        self._dummy_hash: str | None = None

    async def authenticate(self, username: str, password: str) -> SmtpLogin | None:
        credential = self._app.smtp_credential(username)
        secret = password.encode("utf-8", "surrogatepass")
        if credential is None:
            # The same work as a real check, so that response times do not tell which
            # usernames exist.
            await self._verify(self._dummy(), password)
            return None
        key = (credential.id, credential.version, hashlib.sha256(secret).digest())
        now = time.monotonic()
        if self._verified.get(key, 0.0) <= now:
            if not await self._verify(credential.password_hash, password):
                return None
            if len(self._verified) > 10_000:
                self._verified = {k: t for k, t in self._verified.items() if t > now}
            # Keyed by the credential's version: a reset or a deletion starts afresh.
            self._verified[key] = now + AUTH_CACHE_SECONDS
        self._credentials[credential.id] = (now, credential)
        return SmtpLogin(
            credential_id=credential.id,
            username=credential.username,
            password_hash=credential.password_hash,
            account_id=credential.account_id,
            domain_id=credential.domain_id,
        )

    async def _verify(self, password_hash: str, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.verifier, verify_password, password_hash, password)

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = hash_password("not a password of anyone's")
        return self._dummy_hash

    def _still_valid(self, login: SmtpLogin) -> bool:
        """Whether the credential behind a session still exists with the password used."""
        now = time.monotonic()
        cached = self._credentials.get(login.credential_id)
        if cached is not None and now - cached[0] < _LIVE_CACHE_SECONDS:
            credential = cached[1]
        else:
            credential = self._app.smtp_credential(login.username)
            if len(self._credentials) > 10_000:
                self._credentials.clear()
            self._credentials[login.credential_id] = (now, credential)
        return (
            credential is not None
            and credential.id == login.credential_id
            and credential.password_hash == login.password_hash
        )

    def _sender(self, login: SmtpLogin) -> SenderContext:
        """The credential's sender: its account and domain as they are now (or 2 s ago)."""
        now = time.monotonic()
        cached = self._senders.get(login.credential_id)
        if cached is not None and now - cached[0] < _LIVE_CACHE_SECONDS:
            return cached[1]
        sender = self._app.sender_context_for(
            login.account_id, login.domain_id, login.credential_id
        )
        if len(self._senders) > 10_000:
            self._senders.clear()
        self._senders[login.credential_id] = (now, sender)
        return sender

    async def mail_from(self, login: SmtpLogin, address: str) -> str | None:
        if not self._still_valid(login):
            return reply_line(
                530, "5.7.0", "Authentication required: the credential was deleted or changed"
            )
        sender = self._sender(login)
        # The envelope sender goes no further (copies leave with the From address as
        # theirs), but one off the credential's domain is refused before DATA is sent.
        if not domain_accepts_sender(sender.domain_name, address):
            return reply_line(
                550, "5.7.1", f"Sender <{address}> is not on the domain {sender.domain_name}"
            )
        wait = self._limiter.acquire(str(login.credential_id))
        if wait > 0:
            return reply_line(
                451,
                "4.7.1",
                f"Rate limit exceeded for this credential: try again in {seconds_to_wait(wait)}"
                " seconds",
            )
        return None

    async def rcpt_to(self, login: SmtpLogin, address: str, accepted: int) -> str | None:
        if not is_valid_email(address):
            return reply_line(553, "5.1.3", f"Recipient <{address}> is not a valid address")
        if accepted >= self._max_recipients:
            return reply_line(
                452, "4.5.3", f"Too many recipients: at most {self._max_recipients} per message"
            )
        return None

    async def message(
        self, login: SmtpLogin, mail_from: str, recipients: list[str], data: bytes
    ) -> str:
        try:
            if len(data) > _INLINE_PARSE_BYTES:
                content = await asyncio.to_thread(
                    content_from_mime, data, recipients, max_reply_to=self._max_reply_to
                )
            else:
                content = content_from_mime(data, recipients, max_reply_to=self._max_reply_to)
        except UnusableMessage as error:
            return reply_line(550, "5.6.0", str(error))
        try:
            sender = self._sender(login)
            with self._sending.admission.admitted():
                message_id = await self._sending.accept(sender, content, source="smtp")
        except RequestRejected as rejected:
            return reply_for_rejection(rejected)
        except Exception as error:
            fault = storage_fault(error)
            if fault is StorageFault.FULL:  # RFC 3463 4.3.1: mail system full
                log.warning("SMTP submission of %s refused: no disk space", login.username)
                return reply_line(452, "4.3.1", "Insufficient system storage, try again later")
            if fault is StorageFault.UNAVAILABLE:
                log.warning("SMTP submission of %s refused: %s", login.username, error)
            else:
                log.exception("SMTP submission of %s failed", login.username)
            return reply_line(451, "4.3.0", "Temporary failure, try again later")
        return reply_line(250, "2.0.0", f"Ok: queued as {message_id}")


def tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    """The server's TLS context, or None when no certificate is configured."""
    if not cert or not key:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class SubmissionServer:
    """The SMTP submission service of an engine: ``SMTP_SUBMISSION_PORTS`` in the clear
    (with STARTTLS when ``SMTP_TLS_CERT`` and ``SMTP_TLS_KEY`` are set) and
    ``SMTP_SUBMISSION_TLS_PORTS`` with implicit TLS, on ``SMTP_SUBMISSION_HOST``."""

    def __init__(self, app: Sendstream, settings: Settings, sending: SendingService) -> None:
        context = tls_context(settings.smtp_tls_cert, settings.smtp_tls_key)
        if settings.submission_tls_ports and context is None:
            log.warning("SMTP_SUBMISSION_TLS_PORTS ignored: SMTP_TLS_CERT and SMTP_TLS_KEY unset")
        limit = settings.smtp_max_message_bytes
        self._submissions = _Submissions(app, settings, sending)
        self._server = SmtpServer(
            self._submissions,
            host=settings.smtp_submission_host,
            ports=settings.submission_ports,
            tls_ports=settings.submission_tls_ports if context is not None else (),
            tls_context=context,
            hostname=settings.mail_hostname,
            data_size_limit=limit,
            size_exceeded_reply=reply_line(
                552, "5.3.4", f"MessageSizeExceededException: the limit is {limit} bytes"
            ),
            server_label="submission",
        )

    def start(self) -> None:
        self._submissions.verifier = ThreadPoolExecutor(
            _VERIFY_THREADS, thread_name_prefix="smtp-auth"
        )
        try:
            self._server.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._server.stop()
        verifier, self._submissions.verifier = self._submissions.verifier, None
        if verifier is not None:
            verifier.shutdown(wait=True, cancel_futures=True)

    @property
    def ports(self) -> list[int]:
        """Every port bound, plain ones first (port 0 in the settings binds a free one)."""
        return [listener.port for listener in self._server.listeners]

    @property
    def plain_ports(self) -> list[int]:
        return [it.port for it in self._server.listeners if not it.implicit_tls]

    @property
    def tls_ports(self) -> list[int]:
        return [it.port for it in self._server.listeners if it.implicit_tls]
