"""stompbroker: a STOMP 1.0-1.2 message broker on Twisted, with the JMS model behind it."""

__version__ = "0.1.0"


def compiled() -> bool:
    """Whether this installation runs its core compiled by mypyc (setup.py), not pure Python."""
    from importlib.util import find_spec

    spec = find_spec("stompbroker.core._routing")
    return spec is not None and spec.origin is not None and not spec.origin.endswith(".py")
