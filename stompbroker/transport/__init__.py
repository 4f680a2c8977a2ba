"""Thin Twisted adapters between sockets and STOMP sessions."""

from ._tcp import SessionFactory, StompFactory, StompProtocol

__all__ = ["SessionFactory", "StompFactory", "StompProtocol"]
