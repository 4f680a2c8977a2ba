"""The twistd command line: options override the file; mistakes are usage errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage

from stompbroker.tap import Options


def _parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --config and without conf/ in the working directory, the built-ins apply."""
    monkeypatch.chdir(tmp_path)
    config = _parse()["parsed"]
    assert config.listeners.stomp == ("tcp:61613:interface=127.0.0.1",)
    assert config.broker.data_dir == "data"


def test_options_override_the_file(tmp_path: Path) -> None:
    """--listen (repeatable) and --data-dir replace the file's values."""
    path = tmp_path / "b.yaml"
    path.write_text("broker: {data_dir: a}\nlisteners: {stomp: ['tcp:1']}\n")
    options = _parse("--config", str(path), "--listen", "tcp:2", "-l", "tcp:3", "--data-dir", "b")
    config = options["parsed"]
    assert config.listeners.stomp == ("tcp:2", "tcp:3")
    assert config.broker.data_dir == "b"
    assert len(options["endpoints"]) == 2


def test_file_values_apply_without_options(tmp_path: Path) -> None:
    """The file's listeners and data directory apply when no option overrides them."""
    path = tmp_path / "b.yaml"
    path.write_text("broker: {data_dir: a}\nlisteners: {stomp: ['tcp:1']}\n")
    config = _parse("--config", str(path))["parsed"]
    assert config.listeners.stomp == ("tcp:1",)
    assert config.broker.data_dir == "a"


def test_invalid_file_is_a_usage_error(tmp_path: Path) -> None:
    """An invalid file stops the start with file:line: key, not a traceback."""
    path = tmp_path / "bad.yaml"
    path.write_text("broker:\n  colour: red\n")
    with pytest.raises(usage.UsageError, match=r"bad.yaml:2: broker.colour: unknown key"):
        _parse("--config", str(path))


def test_invalid_endpoint_is_a_usage_error(tmp_path: Path) -> None:
    """A listener string Twisted cannot parse is refused by name."""
    with pytest.raises(usage.UsageError, match="invalid listener endpoint 'nonsense:1'"):
        _parse("--listen", "nonsense:1", "--data-dir", str(tmp_path))
