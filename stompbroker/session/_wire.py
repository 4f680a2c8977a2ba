"""The frames a session writes, encoded with as little work per delivery as we can.

A MESSAGE frame is split in two: a per-delivery head (command, ``subscription``,
``ack``, ``redelivered``) and a tail shared by every delivery of the message in
one protocol version (``message-id``, ``destination``, the producer's headers,
``content-length``, body, NUL). The tail is encoded once and cached on the
message, so a topic message fanned out to many subscribers is encoded once.
"""

from __future__ import annotations

from stompbroker.codec import encode_frame, encode_headers, escape, plain_header_text
from stompbroker.core import Message


def message_tail(message: Message, version: str) -> bytes:
    """The shared part of a MESSAGE frame for ``message`` in ``version``."""
    wire = message.wire
    if wire is None:
        wire = message.wire = {}
    tail = wire.get(version)
    if tail is None:
        body = message.body
        headers = message.headers
        text = f"message-id:{message.message_id}\ndestination:{message.destination}\n"
        if headers:
            text += "".join([f"{name}:{value}\n" for name, value in headers.items()])
        if plain_header_text(text, 2 + len(headers)):  # encode_headers' fast path, no pairs built
            head = text.encode("utf-8")
        else:
            head = encode_headers(
                [
                    ("message-id", message.message_id),
                    ("destination", message.destination),
                    *headers.items(),
                ],
                version,
            )
        tail = wire[version] = b"%scontent-length:%d\n\n%s\0" % (head, len(body), body)
    return tail


def message_head(subscription_id: str, version: str) -> bytes:
    """The start of every MESSAGE frame for one subscription, up to its ack header."""
    return b"MESSAGE\nsubscription:" + escape(subscription_id, version).encode("utf-8") + b"\n"


def browse_end(subscription_id: str, destination: str, version: str) -> bytes:
    """The MESSAGE that ends a browse (ActiveMQ's ``browser:end``)."""
    return encode_frame(
        "MESSAGE",
        [
            ("subscription", subscription_id),
            ("message-id", "browser-end"),
            ("destination", destination),
            ("browser", "end"),
            ("content-length", "0"),
        ],
        b"",
        version,
    )


def receipt(receipt_id: str, version: str) -> bytes:
    """A RECEIPT frame."""
    return encode_frame("RECEIPT", [("receipt-id", receipt_id)], b"", version)


def error(
    message: str,
    detail: str,
    version: str,
    receipt_id: str | None = None,
    extra: list[tuple[str, str]] | None = None,
) -> bytes:
    """An ERROR frame: a short ``message`` header and a plain-text body."""
    headers = [("message", message)]
    if receipt_id is not None:
        headers.append(("receipt-id", receipt_id))
    headers.extend(extra or [])
    body = (detail or message).encode("utf-8") + b"\n"
    headers.append(("content-type", "text/plain"))
    return encode_frame("ERROR", headers, body, version)
