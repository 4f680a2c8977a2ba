"""The configuration's ``security`` section: users, groups, rules, the users file, the docs."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from twisted.internet.task import Clock

from stompbroker.config import (
    Config,
    ConfigError,
    RuleEntry,
    SecuritySection,
    UserEntry,
    load,
    parse,
)
from stompbroker.core import verify_password
from stompbroker.reloading import reload
from stompbroker.service import BrokerService
from tests.helpers import doc_default, doc_section
from tests.test_access import cheap_hash

ROOT = Path(__file__).resolve().parent.parent
HASH = cheap_hash("pw")


def test_security_defaults() -> None:
    """No section: no users, no rules, anonymous clients decided by the users (null)."""
    assert Config().security == SecuritySection()
    assert SecuritySection() == SecuritySection(None, None, (), ())


def test_users_and_rules_are_read() -> None:
    """Users keep their groups and line; a rule's single pattern becomes a tuple of one."""
    config = parse(
        "security:\n"
        "  allow_anonymous: true\n"
        "  users:\n"
        f"    - name: alice\n      password_hash: {HASH}\n      groups: [ops]\n"
        "  rules:\n"
        "    - principal: ops\n"
        "      destinations: /queue/orders.>\n"
        "      permissions: [read, write]\n"
        "    - principal: '*'\n"
        "      destinations: [/topic/a, /topic/b.*]\n"
        "      permissions: [read]\n",
        "f.yaml",
    )
    security = config.security
    assert security.allow_anonymous is True
    assert security.users == (UserEntry("alice", HASH, ("ops",), 4),)
    assert security.rules == (
        RuleEntry("ops", ("/queue/orders.>",), ("read", "write"), 8),
        RuleEntry("*", ("/topic/a", "/topic/b.*"), ("read",), 11),
    )


def _user(name: str, groups: str = "[]") -> str:
    return f"    - {{name: {name}, password_hash: '{HASH}', groups: {groups}}}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("security:\n  users: x\n", "f.yaml:2: security.users: expected a list of mappings"),
        (
            "security:\n  allow_anonymous: maybe\n",
            "f.yaml:2: security.allow_anonymous: expected true, false or null",
        ),
        (
            "security:\n  users:\n    - {name: a, password_hash: secret}\n",
            "f.yaml:3: security.users[0].password_hash: expected a hash printed by",
        ),
        (
            "security:\n  users:\n    - {name: a}\n",
            "f.yaml:3: security.users[0].password_hash: required key missing",
        ),
        (
            "security:\n  users:\n    - {name: 'a b', password_hash: x}\n",
            "f.yaml:3: security.users[0].name: expected a name",
        ),
        (
            "security:\n  users:\n" + _user("a") + _user("a"),
            "f.yaml:4: security.users[1].name: 'a' is given twice",
        ),
        (
            "security:\n  users:\n" + _user("a") + _user("a.b"),
            "f.yaml:4: security.users[1].name: begins with the user 'a' and a dot",
        ),
        (
            "security:\n  users:\n" + _user("a", "[b]") + _user("b"),
            "f.yaml:4: security.users[1].name: 'b' is also a group",
        ),
        (
            "security:\n  users:\n" + _user("a", "['x y']"),
            "f.yaml:3: security.users[0].groups: expected a list of names",
        ),
        (
            "security:\n  rules:\n"
            "    - {principal: ghost, destinations: /queue/a, permissions: [read]}\n",
            "f.yaml:3: security.rules[0].principal: no user or group is named 'ghost'",
        ),
        (
            "security:\n  rules:\n"
            "    - {principal: '*', destinations: /queue/a, permissions: [delete]}\n",
            "f.yaml:3: security.rules[0].permissions: expected a list of permissions",
        ),
        (
            "security:\n  rules:\n"
            "    - {principal: '*', destinations: /queue/a, permissions: []}\n",
            "f.yaml:3: security.rules[0].permissions: expected a list of permissions",
        ),
        (
            "security:\n  rules:\n"
            "    - {principal: '*', destinations: [/queue/a, /dsub/x], permissions: [read]}\n",
            "f.yaml:3: security.rules[0].destinations: expected /queue/NAME or /topic/NAME",
        ),
        (
            "security:\n  rules:\n"
            "    - {principal: '*', destinations: '/queue/a.>.b', permissions: [read]}\n",
            "f.yaml:3: security.rules[0].destinations: expected /queue/NAME",
        ),
        (
            "security:\n  rules:\n    - {principal: '*', permissions: [read]}\n",
            "f.yaml:3: security.rules[0].destinations: required key missing",
        ),
        ("security:\n  colour: red\n", "f.yaml:2: security.colour: unknown key"),
    ],
)
def test_security_mistakes_name_file_line_and_key(text: str, message: str) -> None:
    """Each mistake in security: is refused with the file, the line and the key path."""
    with pytest.raises(ConfigError) as caught:
        parse(text, "f.yaml")
    assert str(caught.value).startswith(message)


def test_users_file_adds_users(tmp_path: Path) -> None:
    """load reads users_file; its users join the inline ones, and rules may name them."""
    users = tmp_path / "users.yaml"
    users.write_text(f"users:\n  - name: bob\n    password_hash: '{HASH}'\n    groups: [ops]\n")
    main = tmp_path / "broker.yaml"
    main.write_text(
        f"security:\n  users_file: {users}\n  users:\n"
        + _user("alice")
        + "  rules:\n    - {principal: ops, destinations: /queue/>, permissions: [read]}\n"
    )
    config = load(str(main))
    assert [u.name for u in config.security.users] == ["alice", "bob"]
    assert verify_password("pw", config.security.users[1].password_hash)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("users:\n  - {name: x}\n", "users.yaml:2: users[0].password_hash: required key missing"),
        ("people: []\n", "users.yaml:1: people: unknown key (a users file holds only: users)"),
        ("users:\n" + _user("alice").replace("    ", "  "), "users.yaml:2: users[0].name: 'alice'"),
        ("users: [\n", "users.yaml:2: not valid YAML"),
    ],
)
def test_users_file_mistakes_name_that_file(tmp_path: Path, content: str, message: str) -> None:
    """A mistake in the users file is reported with that file's name and line."""
    users = tmp_path / "users.yaml"
    users.write_text(content)
    main = tmp_path / "broker.yaml"
    main.write_text(f"security:\n  users_file: {users}\n  users:\n" + _user("alice"))
    with pytest.raises(ConfigError) as caught:
        load(str(main))
    assert str(caught.value).startswith(f"{tmp_path}/{message}")


def test_missing_users_file_is_reported(tmp_path: Path) -> None:
    """A users_file that cannot be read stops the load, naming the key and the file."""
    main = tmp_path / "broker.yaml"
    main.write_text("security:\n  users_file: nowhere.yaml\n")
    with pytest.raises(ConfigError, match=r"broker.yaml: security.users_file: cannot read nowhere"):
        load(str(main))


def test_rules_naming_unknown_principals_are_checked_after_the_users_file(tmp_path: Path) -> None:
    """A rule's principal must be a user or group of the main file or of the users file."""
    users = tmp_path / "users.yaml"
    users.write_text("users: []\n")
    main = tmp_path / "broker.yaml"
    main.write_text(
        f"security:\n  users_file: {users}\n  rules:\n"
        "    - {principal: ghost, destinations: /queue/a, permissions: [read]}\n"
    )
    with pytest.raises(ConfigError, match=r"broker.yaml:4: security.rules\[0\].principal"):
        load(str(main))


def test_every_security_key_is_documented() -> None:
    """docs/configuration.md lists every key of security, users and rules, with its default."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    for heading, cls in (
        ("## `security`", SecuritySection),
        ("### `security.users` entries", UserEntry),
        ("### `security.rules` entries", RuleEntry),
    ):
        part = doc_section(text, heading, end="\n#")
        for field in fields(cls):
            if field.name == "line":
                continue
            default = doc_default(part, field.name)
            assert default is not None, f"{heading}: {field.name} is not documented"
            assert default, f"{heading}: {field.name} has no default documented"


def test_production_example_requires_logins() -> None:
    """conf/production.yaml has users, refuses anonymous clients and grants by rules."""
    config = load(str(ROOT / "conf" / "production.yaml"))
    assert config.security.allow_anonymous is False
    assert config.security.users and config.security.rules


def test_reload_gives_the_running_broker_new_users_and_rules(tmp_path: Path) -> None:
    """A reload changes the service's access control in place: sessions see the new rules."""
    first = parse(
        "broker: {store: memory}\nsecurity:\n  users:\n" + _user("alice"), str(tmp_path / "a")
    )
    service = BrokerService(first, Clock(), [])
    access = service.access
    assert service.settings.access is access
    assert access.permits("alice", "write", "/queue/x")
    second = parse(
        "broker: {store: memory}\nlisteners: {stomp: []}\nsecurity:\n  users:\n"
        + _user("alice")
        + _user("bob")
        + "  rules:\n    - {principal: bob, destinations: /queue/>, permissions: [write]}\n",
        str(tmp_path / "b"),
    )
    assert reload(service, lambda: second, lambda spec: None)
    assert service.access is access and service.settings.access is access
    assert set(access.users) == {"alice", "bob"}
    assert not access.permits("alice", "write", "/queue/x")
    assert access.permits("bob", "write", "/queue/x")
