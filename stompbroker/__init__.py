"""stompbroker: a STOMP 1.0-1.2 message broker on Twisted, with the JMS model behind it."""

__version__ = "0.1.0"
