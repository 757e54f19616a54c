"""Signed session cookies and CSRF tokens (HMAC-SHA256, standard library only).

A session cookie is ``role|id|fingerprint|version|issued.signature``; ``fingerprint`` is the start
of the SHA-256 of the login token it was issued for, so rotating an annotator's token (or restarting
the server with another admin token) ends every session made with the old one; ``version`` is the
user's session version in the database, which logout increments, so a copied cookie stops working
on the server the moment its owner logs out. A CSRF token is an HMAC of the session cookie under a
separate label: a page from another origin can neither read it nor forge it, and it changes with
the session.

Login tokens travel in login links (``/login?token=...``); :class:`RedactTokens` keeps them out of
every log line (uvicorn's access log included).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from dataclasses import dataclass

SESSION_COOKIE = "studio_session"
PRELOGIN_COOKIE = "studio_prelogin"
SESSION_MAX_AGE = 14 * 24 * 3600
FINGERPRINT_LEN = 16


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class Session:
    role: str  # "admin" or "annotator"
    user_id: int
    fingerprint: str
    version: int
    issued: int
    raw: str  # the signed cookie value (input of the CSRF token)


class Signer:
    def __init__(self, secret: str):
        if len(secret) < 16:
            raise ValueError("the signing secret must be at least 16 characters")
        self._key = secret.encode("utf-8")

    def _mac(self, label: str, payload: str) -> str:
        return _b64(hmac.new(self._key, f"{label}:{payload}".encode("utf-8"), hashlib.sha256).digest())

    def sign(self, payload: str) -> str:
        return f"{payload}.{self._mac('session', payload)}"

    def unsign(self, value: str) -> str | None:
        if not isinstance(value, str) or "." not in value or len(value) > 512:
            return None
        payload, sig = value.rsplit(".", 1)
        return payload if hmac.compare_digest(sig, self._mac("session", payload)) else None

    # sessions ---------------------------------------------------------------------------------
    def make_session(self, role: str, user_id: int, token_hash: str, version: int = 0) -> str:
        return self.sign(f"{role}|{user_id}|{token_hash[:FINGERPRINT_LEN]}|{version}|"
                         f"{int(time.time())}")

    def read_session(self, value: str | None) -> Session | None:
        payload = self.unsign(value) if value else None
        if payload is None:
            return None
        parts = payload.split("|")
        if len(parts) != 5 or parts[0] not in ("admin", "annotator"):
            return None
        try:
            user_id, version, issued = int(parts[1]), int(parts[3]), int(parts[4])
        except ValueError:
            return None
        if time.time() - issued > SESSION_MAX_AGE:
            return None
        return Session(parts[0], user_id, parts[2], version, issued, value)

    # CSRF ------------------------------------------------------------------------------------
    def csrf_for(self, session_raw: str) -> str:
        return self._mac("csrf", session_raw)

    def check_csrf(self, session_raw: str, token: str | None) -> bool:
        return isinstance(token, str) and hmac.compare_digest(token, self.csrf_for(session_raw))

    # the login form has no session yet: double-submit a random nonce cookie
    @staticmethod
    def new_nonce() -> str:
        return secrets.token_urlsafe(16)

    def prelogin_csrf(self, nonce: str) -> str:
        return self._mac("prelogin", nonce)

    def check_prelogin(self, nonce: str | None, token: str | None) -> bool:
        return bool(nonce) and isinstance(token, str) and hmac.compare_digest(
            token, self.prelogin_csrf(nonce))


def fingerprint(token_hash: str) -> str:
    return token_hash[:FINGERPRINT_LEN]


TOKEN_IN_TEXT = re.compile(r"(token=)[^&\s\"']+", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``.../login?token=abc&x=1`` -> ``.../login?token=[redacted]&x=1``."""
    return TOKEN_IN_TEXT.sub(lambda m: m.group(1) + REDACTED, text)


class RedactTokens(logging.Filter):
    """A logging filter that rewrites any ``token=...`` in a record's message before it is
    written (the message is formatted here, so tokens passed as ``%s`` arguments are caught)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "token=" in message.lower():
            record.msg, record.args = redact(message), ()
        return True


LOGGERS = ("uvicorn.access", "uvicorn.error")  # filters see records logged on these directly


def install_log_redaction() -> None:
    """Attach :class:`RedactTokens` to the server's loggers (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
