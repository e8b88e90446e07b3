"""``hooks:`` is strict like the rest of the config: each mistake is one clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mqi_communicator.config import parse_config
from mqi_communicator.errors import ConfigError

BASE: dict[str, Any] = {
    "watch_dir": "cases",
    "results_dir": "results",
    "hosts": {"local": {"scheduler": {"kind": "local"}, "remote_base": "remote"}},
    "gpus": [{"name": "local/gpu0", "host": "local"}],
}


def parse(tmp_path: Path, hooks: Any) -> Any:
    return parse_config({**BASE, "hooks": hooks}, base_dir=tmp_path, env={})


def test_a_valid_hooks_section(tmp_path: Path) -> None:
    config = parse(
        tmp_path,
        {
            "targets": {
                "a": {"url": "https://x.example/h", "events": ["case_failed"]},
                "b": {"command": ["notify", "--now"]},
            }
        },
    )
    assert config.hooks.targets["a"].events == ["case_failed"]
    assert config.hooks.max_attempts == 10
    assert parse_config(BASE, base_dir=tmp_path, env={}).hooks.targets == {}


@pytest.mark.parametrize(
    ("hooks", "expected"),
    [
        ({"targets": {"a": {}}}, "exactly one of 'command' or 'url'"),
        ({"targets": {"a": {"url": "http://x", "command": ["y"]}}}, "exactly one of"),
        ({"targets": {"a": {"url": "ftp://x"}}}, "hooks.targets.a.url"),
        ({"targets": {"a": {"command": ["y"], "headers": {"A": "b"}}}}, "only used with 'url'"),
        ({"targets": {"a": {"url": "http://x", "events": ["case_exploded"]}}}, "events"),
        ({"targets": {"a,b": {"url": "http://x"}}}, "without commas"),
        ({"targets": {}, "retries": 3}, "retries"),
        ({"targets": {"a": {"command": []}}}, "command"),
    ],
)
def test_mistakes_are_clear_errors(tmp_path: Path, hooks: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(tmp_path, hooks)
    assert expected in str(info.value)
