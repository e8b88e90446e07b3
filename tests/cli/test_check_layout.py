"""``check-config`` refuses overlapping folders and shared CUDA devices; warns of the rest."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from mqi_communicator.config.layout import is_within

from .conftest import local_config, write_config

Cli = Callable[..., Result]


def _check(cli: Cli, root: Path, **overrides: Any) -> Result:
    path = write_config(root, local_config(root, **overrides))
    return cli("check-config", "--config", str(path))


def _refused(result: Result, key: str, *words: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert f": {key}: expected" in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr
    assert result.stdout == ""


def _local_host(remote_base: str) -> dict[str, Any]:
    return {
        "local": {
            "transport": "local",
            "scheduler": {"kind": "local"},
            "remote_base": remote_base,
        }
    }


def test_remote_base_inside_watch_dir(cli: Cli, tmp_path: Path) -> None:
    _refused(
        _check(cli, tmp_path, hosts=_local_host("watch/remote")),
        "hosts.local.remote_base",
        "every upload would become a new case",
    )
    _refused(_check(cli, tmp_path, hosts=_local_host("watch")), "hosts.local.remote_base")


def test_remote_base_reaching_watch_dir_through_a_symlink_or_dotdot(
    cli: Cli, tmp_path: Path
) -> None:
    (tmp_path / "watch" / "uploads").mkdir(parents=True)
    (tmp_path / "uploads-link").symlink_to(tmp_path / "watch" / "uploads")
    _refused(_check(cli, tmp_path, hosts=_local_host("uploads-link")), "hosts.local.remote_base")
    _refused(
        _check(cli, tmp_path, hosts=_local_host("results/../watch/x")), "hosts.local.remote_base"
    )
    # A watch folder that is itself a symlink to the remote base's parent.
    (tmp_path / "real").mkdir()
    (tmp_path / "watch-link").symlink_to(tmp_path / "real")
    _refused(
        _check(cli, tmp_path, watch_dir="watch-link", hosts=_local_host("real/remote")),
        "hosts.local.remote_base",
    )


def test_watch_and_results_inside_each_other(cli: Cli, tmp_path: Path) -> None:
    _refused(_check(cli, tmp_path, watch_dir="results/incoming"), "watch_dir")
    _refused(_check(cli, tmp_path, results_dir="watch/out"), "results_dir")
    _refused(_check(cli, tmp_path, results_dir="watch"), "results_dir")
    (tmp_path / "results-link").symlink_to(tmp_path / "watch")
    _refused(_check(cli, tmp_path, results_dir="results-link"), "results_dir")


def test_database_inside_watch_dir(cli: Cli, tmp_path: Path) -> None:
    url = f"sqlite:///{(tmp_path / 'watch' / 'mqi.db').as_posix()}"
    _refused(_check(cli, tmp_path, database_url=url), "database_url", "outside watch_dir")
    bare = str(tmp_path / "results" / ".." / "watch" / "db" / "mqi.db")
    _refused(_check(cli, tmp_path, database_url=bare), "database_url")


def test_two_gpus_on_one_cuda_device_of_a_host(cli: Cli, tmp_path: Path) -> None:
    gpus = [
        {"name": "local/gpu0", "host": "local", "cuda_devices": "0,1"},
        {"name": "local/gpu1", "host": "local", "cuda_devices": "2, 1"},
    ]
    _refused(
        _check(cli, tmp_path, gpus=gpus),
        "gpus[1].cuda_devices",
        "CUDA device '1' is already gpus[0] ('local/gpu0')",
    )
    gpus[1]["cuda_devices"] = "2,3"
    assert _check(cli, tmp_path, gpus=gpus).exit_code == 0


def test_missing_folders_and_idle_hosts_are_warnings(cli: Cli, tmp_path: Path) -> None:
    hosts = {
        **_local_host("remote-missing"),
        "spare": {"transport": "local", "scheduler": {"kind": "local"}, "remote_base": "remote"},
    }
    result = _check(
        cli,
        tmp_path,
        watch_dir="watch-missing",
        results_dir="results-missing",
        hosts=hosts,
        log={"file": "logs-missing/run.log"},
    )
    assert result.exit_code == 0, result.stderr
    assert ": OK" in result.stdout
    for needle in (
        f"watch_dir: {tmp_path / 'watch-missing'} does not exist",
        f"results_dir: {tmp_path / 'results-missing'} does not exist",
        "hosts.local.remote_base:",
        "log.file: folder",
        "hosts.spare: no GPU in gpus uses this host",
    ):
        assert needle in result.stderr, needle
    assert all(line.startswith("warning: ") for line in result.stderr.splitlines())
    assert not (tmp_path / "watch-missing").exists()

    # run refuses what check-config warned of, and creates nothing.
    path = tmp_path / "mqi.yaml"
    run = cli("run", "--once", "--config", str(path))
    assert run.exit_code == 2
    assert (
        "watch_dir" in run.stderr and "results_dir" in run.stderr and "no such folder" in run.stderr
    )
    assert not (tmp_path / "watch-missing").exists() and not (tmp_path / "results-missing").exists()


def test_a_clean_layout_has_no_warning(cli: Cli, tmp_path: Path) -> None:
    result = _check(cli, tmp_path)
    assert result.exit_code == 0 and result.stderr == "", result.stderr


@pytest.mark.skipif(os.name == "nt", reason="POSIX paths in this test")
def test_is_within_resolves_before_comparing(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "a")
    assert is_within(tmp_path / "link" / "b" / "c", tmp_path / "a")
    assert is_within(tmp_path / "a" / ".." / "a", tmp_path / "a")
    assert not is_within(tmp_path / "ab", tmp_path / "a")  # a prefix of the name is not inside
    assert not is_within(tmp_path / "a", tmp_path / "a" / "b")
