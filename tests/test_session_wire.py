"""The MESSAGE frames a session writes: what a client's parser reads back from them."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from stompbroker.codec import SERVER_COMMANDS, FrameParser, encode_frame
from stompbroker.core import BROKER_HEADERS, Message
from stompbroker.session._wire import message_head, message_tail

_text = st.text(st.characters(codec="utf-8", exclude_characters="\0"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    message_id=_text.filter(bool),
    destination=_text.filter(bool),
    # The broker drops these names from a SEND (and sets its own), so no message has them.
    headers=st.dictionaries(
        _text.filter(lambda n: n not in BROKER_HEADERS),
        _text,
        max_size=4,
    ),
    body=st.binary(max_size=64),
    version=st.sampled_from(["1.0", "1.1", "1.2"]),
)
# 1.2 escapes CR, so values ending in CR must read back there.
@example(message_id="m\r", destination="\r", headers={"k": "v\r"}, body=b"", version="1.2")
def test_a_message_frame_is_what_the_codec_encodes(
    message_id: str, destination: str, headers: dict[str, str], body: bytes, version: str
) -> None:
    """A MESSAGE is byte for byte what the codec's encoder makes of the same headers (escaped
    for the client's version), and a 1.1/1.2 client's parser reads the same headers back."""
    message = Message(message_id, destination, headers, body, False, 1)
    frame = message_head("sub-0", version) + message_tail(message, version)
    expected = encode_frame(
        "MESSAGE",
        [
            ("subscription", "sub-0"),
            ("message-id", message_id),
            ("destination", destination),
            *headers.items(),
            ("content-length", str(len(body))),
        ],
        body,
        version,
    )
    assert frame == expected
    # STOMP 1.1 has no escape for CR and its parser takes CR LF as the end of a line, so a
    # value (or destination) ending in CR cannot be carried in 1.1: it reads back without
    # the CR. 1.2 escapes CR as \r, so there every value must read back.
    lost_cr = version == "1.1" and any(
        value.endswith("\r") for value in (message_id, destination, *headers.values())
    )
    if version != "1.0" and "" not in headers and not lost_cr:
        parser = FrameParser(version=version, commands=SERVER_COMMANDS)
        (parsed,) = parser.feed(frame)
        assert parsed.body == body
        assert parsed.headers == {
            "subscription": "sub-0",
            "message-id": message_id,
            "destination": destination,
            **headers,
            "content-length": str(len(body)),
        }


def test_the_encoded_tail_is_shared_by_deliveries_in_one_version() -> None:
    """A message fanned out is encoded once per protocol version."""
    message = Message("m-1", "/topic/t", {"a": "b"}, b"x", False, 1)
    assert message_tail(message, "1.2") is message_tail(message, "1.2")
    assert message_tail(message, "1.1") == message_tail(message, "1.2")
