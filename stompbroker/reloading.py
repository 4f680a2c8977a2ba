"""Live configuration changes (SIGHUP): what a new file changes in a running broker.

A reload reads the file again (with the command line's overrides), checks it as at start,
and applies it without dropping a connection:

* destination policies (limits, fsync, redelivery, TTL, DLQ, ...) apply to existing and new
  destinations at once; ``broker.auto_create`` too;
* durable subscriptions the file declares are created (removed ones stay: they hold messages
  and are deleted by their clients);
* listeners the file adds start, those it removes stop (their open connections go on);
* heart-beat and limit settings apply to new connections;
* users, passwords and access rules (the users file too) apply at once
  (``security.configure_access``): to new logins and every connection's next SEND or
  SUBSCRIBE, and ``end_revoked`` closes, with an ERROR, each connection whose user was
  removed or whose password changed (anonymous ones when anonymous clients are no longer
  let in) and each with a subscription the rules no longer let it read;
* ``broker.data_dir`` and ``broker.store`` change only at the next start (logged).

An invalid file is refused with the same messages as at start; the running configuration stays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.logger import Logger

from stompbroker.config import Config, ConfigError, WebSocketListener

if TYPE_CHECKING:
    from stompbroker.service import BrokerService
    from stompbroker.transport import Connections

log = Logger(namespace="stompbroker.reload")

#: Builds a listening endpoint from its string; raises ValueError (or similar) if invalid.
EndpointFactory = Callable[[str], Any]


def listener_keys(config: Config) -> list[tuple[Any, ...]]:
    """One key per configured listener: what, if it changes, makes it another listener."""
    keys: list[tuple[Any, ...]] = [("stomp", spec) for spec in config.listeners.stomp]
    keys.extend(websocket_key(entry) for entry in config.listeners.websocket)
    return keys


def websocket_key(entry: WebSocketListener) -> tuple[Any, ...]:
    """The key of a ``listeners.websocket`` entry (its endpoint string comes second)."""
    return ("websocket", entry.endpoint, entry.path, entry.allowed_origins)


def end_revoked(connections: Connections) -> int:
    """Close, with its ERROR, each open connection the users and rules now in force no
    longer allow (``StompSession.revoked``); count them in ``connections.revoked``."""
    ended = 0
    for connection in list(connections.open.values()):
        why = connection.session.revoked()
        if why is None:
            continue
        message, detail = why
        log.warn(
            "connection {id} from {peer} (user {user}) closed on reload: {message}: {detail}",
            id=connection.id,
            peer=connection.peer,
            user=connection.user,
            message=message,
            detail=detail,
        )
        connection.session.close_with_error(message, detail)
        ended += 1
    connections.revoked += ended
    return ended


def reload(service: BrokerService, read: Callable[[], Config], endpoint: EndpointFactory) -> bool:
    """Read the configuration again and apply it; False (logged) if it is refused."""
    from stompbroker.service import policies, selectors

    try:
        config = read()
        selectors(config)
        endpoints = {key: endpoint(key[1]) for key in listener_keys(config)}
        new_policies = policies(config)
    except ConfigError as exc:
        log.error("configuration not reloaded: {error}", error=str(exc))
        return False
    except (ValueError, TypeError, KeyError) as exc:
        log.error("configuration not reloaded: invalid listener endpoint: {error}", error=exc)
        return False
    old = service.config
    for key in ("data_dir", "store", "virtual_topics"):
        if getattr(old.broker, key) != getattr(config.broker, key):
            log.warn("broker.{key} changes at the next start, not on reload", key=key)
    service.apply(config, new_policies, endpoints)
    log.info("configuration reloaded from {source}", source=config.source)
    return True
