"""Config loading: errors name the file, the key path and the expectation; env overrides."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from mqi_communicator.config import DEFAULT_COMMAND, Config, load_config, parse_config
from mqi_communicator.engine.build import build_gpus, build_hosts, build_policy, build_settings
from mqi_communicator.errors import ConfigError
from mqi_communicator.remote.schedulers.local.scheduler import LocalScheduler
from mqi_communicator.remote.schedulers.pueue.scheduler import PueueScheduler
from mqi_communicator.remote.schedulers.slurm.scheduler import SlurmScheduler
from mqi_communicator.remote.transport.ssh import SshTransport

MINIMAL = {
    "watch_dir": "cases",
    "results_dir": "results",
    "hosts": {"gpu-server": {"scheduler": {"kind": "local"}, "remote_base": "work"}},
    "gpus": [{"name": "gpu-server/gpu0", "host": "gpu-server", "cuda_devices": "0"}],
}


def write(tmp_path: Path, data: object, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def error_of(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return str(info.value)


def with_(**changes: object) -> dict[str, object]:
    data = yaml.safe_load(yaml.safe_dump(MINIMAL))
    data.update(changes)
    return data


def test_minimal_config_defaults_and_relative_paths(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL), env={})
    assert cfg.watch_dir == tmp_path / "cases"
    assert cfg.results_dir == tmp_path / "results"
    assert cfg.database_url == f"sqlite:///{(tmp_path / 'mqi-communicator.db').as_posix()}"
    assert cfg.hosts["gpu-server"].remote_base == (tmp_path / "work").as_posix()
    assert cfg.command == list(DEFAULT_COMMAND)
    assert cfg.intake.quiescence_s == 5
    assert cfg.engine.poll_interval_s == 10
    assert cfg.log.timezone == "UTC"


def test_unknown_key_names_file_and_key_path(tmp_path: Path) -> None:
    data = with_()
    data["hosts"]["gpu-server"]["schedular"] = {"kind": "local"}  # type: ignore[index]
    path = write(tmp_path, data, "site.yaml")
    msg = error_of(path)
    assert str(path) in msg
    assert "hosts.gpu-server.schedular: unknown key" in msg
    assert "scheduler" in msg  # the allowed keys are listed


def test_top_level_unknown_key(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, with_(watchdir="x")))
    assert "watchdir: unknown key" in msg and "watch_dir" in msg


def test_wrong_type_names_key_and_expectation(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, with_(engine={"poll_interval_s": "soon"})))
    assert "engine.poll_interval_s: expected a valid number" in msg
    assert "'soon'" in msg


def test_unknown_scheduler_kind(tmp_path: Path) -> None:
    data = with_()
    data["hosts"]["gpu-server"]["scheduler"]["kind"] = "pueu"  # type: ignore[index]
    msg = error_of(write(tmp_path, data))
    assert "hosts.gpu-server.scheduler.kind: expected one of 'local', 'pueue', 'slurm'" in msg
    assert "got 'pueu'" in msg


def test_gpu_on_unknown_host(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, with_(gpus=[{"name": "g", "host": "gpu-srv"}])))
    assert "gpus[0].host: expected one of the hosts 'gpu-server', got 'gpu-srv'" in msg


def test_gpu_mapping_must_fit_scheduler(tmp_path: Path) -> None:
    bad = with_(gpus=[{"name": "g", "host": "gpu-server", "pueue_group": "gpu0"}])
    assert "gpus[0].pueue_group: not used by a 'local' scheduler" in error_of(write(tmp_path, bad))
    pueue = with_(
        hosts={"h": {"scheduler": {"kind": "pueue"}, "remote_base": "/r"}},
        gpus=[{"name": "g", "host": "h"}],
    )
    msg = error_of(write(tmp_path, pueue))
    assert "gpus[0].pueue_group: required for a GPU on a 'pueue' scheduler host" in msg


def test_duplicate_gpu_names(tmp_path: Path) -> None:
    gpu = {"name": "g", "host": "gpu-server"}
    assert "gpus[1].name: expected a unique GPU name" in error_of(
        write(tmp_path, with_(gpus=[gpu, gpu]))
    )


def test_ssh_host_needs_hostname_and_absolute_remote_base(tmp_path: Path) -> None:
    data = with_(
        hosts={"s": {"transport": "ssh", "scheduler": {"kind": "local"}, "remote_base": "rel"}},
        gpus=[{"name": "g", "host": "s"}],
    )
    msg = error_of(write(tmp_path, data))
    assert "hosts.s.remote_base: expected an absolute POSIX path, got 'rel'" in msg
    data["hosts"]["s"]["remote_base"] = "/srv/mqi"  # type: ignore[index]
    assert "hosts.s.hostname: required when transport is 'ssh'" in error_of(write(tmp_path, data))


def test_missing_required_keys(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, {"watch_dir": "x"}))
    for key in ("results_dir", "hosts", "gpus"):
        assert f"{key}: required key is missing" in msg


def test_bad_timezone_and_results_inside_watch_dir(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, with_(log={"timezone": "Korea/Nowhere"})))
    assert "log.timezone: expected an IANA time zone" in msg
    msg = error_of(write(tmp_path, with_(results_dir="cases/results")))
    assert "results_dir: expected a folder outside watch_dir" in msg


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "the whole case directory cannot be the results"),
        (".", "the whole case directory cannot be the results"),
        ("./", "the whole case directory cannot be the results"),
        ("../elsewhere", "expected a relative path of plain names"),
        ("/abs/output", "expected a relative path of plain names"),
        ("out//put", "expected a relative path of plain names"),
        ("out\\put", "expected a relative path of plain names"),
        (".MQI/x", "marker folder"),
    ],
)
def test_results_subdir_must_be_a_folder_inside_the_case(
    tmp_path: Path, value: str, expected: str
) -> None:
    msg = error_of(write(tmp_path, with_(engine={"results_subdir": value})))
    assert "engine.results_subdir: " in msg and expected in msg, msg


def test_results_subdir_nested_and_trailing_slash(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, with_(engine={"results_subdir": "out/dose/"})), env={})
    assert cfg.engine.results_subdir == "out/dose"


def test_yaml_syntax_error_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("watch_dir: x\nhosts: [unclosed\n", encoding="utf-8")
    msg = error_of(path)
    assert str(path) in msg and "not valid YAML" in msg and "line" in msg


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    assert "cannot read the config file" in error_of(tmp_path / "nope.yaml")
    assert "expected a mapping of keys at the top level" in error_of(write(tmp_path, [1, 2]))


def test_env_overrides_nested_values_and_database_url(tmp_path: Path) -> None:
    env = {
        "MQI__ENGINE__POLL_INTERVAL_S": "2.5",
        "MQI__INTAKE__READY_MARKER": "READY",
        "MQI__HOSTS__GPU_SERVER__SCHEDULER__TIMEOUT_S": "7",
        "MQI__GPUS__0__CUDA_DEVICES": "3",
        "MQI_DATABASE_URL": "postgresql://u@db/mqi",
        "UNRELATED": "x",
    }
    cfg = load_config(write(tmp_path, MINIMAL), env=env)
    assert cfg.engine.poll_interval_s == 2.5
    assert cfg.intake.ready_marker == "READY"
    assert cfg.hosts["gpu-server"].scheduler.timeout_s == 7
    assert cfg.gpus[0].cuda_devices == "3"
    assert cfg.database_url == "postgresql://u@db/mqi"


def test_env_override_error_names_the_variable(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, MINIMAL), env={"MQI__ENGINE__MAX_ATTEMPTS": "many"})
    assert "engine.max_attempts (from MQI__ENGINE__MAX_ATTEMPTS)" in msg
    msg = error_of(write(tmp_path, MINIMAL), env={"MQI__ENGINE__COLOUR": "red"})
    assert "engine.colour (from MQI__ENGINE__COLOUR): unknown key" in msg


def test_env_override_bad_list_index(tmp_path: Path) -> None:
    msg = error_of(write(tmp_path, MINIMAL), env={"MQI__GPUS__5__HOST": "x"})
    assert "MQI__GPUS__5__HOST" in msg and "list index below 1" in msg


def test_parse_config_from_objects(tmp_path: Path) -> None:
    cfg = parse_config(MINIMAL, base_dir=tmp_path, env={})
    assert isinstance(cfg, Config) and cfg.watch_dir == tmp_path / "cases"
    direct = Config.model_validate(MINIMAL, context={"base_dir": tmp_path})
    assert direct == cfg


@pytest.mark.parametrize("name", ["local.yaml", "pueue-ssh.yaml", "slurm-ssh.yaml"])
def test_shipped_examples_validate_and_build(name: str) -> None:
    example = resources.files("mqi_communicator") / "examples" / name
    with resources.as_file(example) as path:
        cfg = load_config(path, env={})
    hosts = build_hosts(cfg)
    gpus = build_gpus(cfg)
    assert {g.host for g in gpus} <= set(hosts)
    kinds = {h.scheduler.kind for h in cfg.hosts.values()}
    expected = {"local.yaml": LocalScheduler, "pueue-ssh.yaml": PueueScheduler}
    sched_type = expected.get(name, SlurmScheduler)
    assert all(isinstance(h.scheduler, sched_type) for h in hosts.values()), kinds
    if name != "local.yaml":
        assert all(isinstance(h.transport, SshTransport) for h in hosts.values())
    assert build_policy(cfg).max_attempts == cfg.engine.max_attempts
    assert build_settings(cfg).exclusive is cfg.database_url.startswith("sqlite")
    for host in hosts.values():
        host.transport.close()


def test_a_takeover_grace_shorter_than_a_start_step_is_refused(tmp_path: Path) -> None:
    # Issue 8: a 30 min grace with a 60 min transfer timeout let a second engine take
    # over a case whose upload still ran.
    data = with_(engine={"submit_grace_s": 1800, "transfer_timeout_s": 3600})
    message = error_of(write(tmp_path, data))
    assert "engine.submit_grace_s" in message and "engine.transfer_timeout_s" in message
    assert "scheduler.timeout_s" in message and "3660" in message and "1800" in message


def test_the_takeover_grace_is_derived_from_the_longest_start_step(tmp_path: Path) -> None:
    data = with_(engine={"transfer_timeout_s": 7200, "lease_ttl_s": 30})
    data["hosts"]["gpu-server"]["scheduler"]["timeout_s"] = 90  # type: ignore[index]
    cfg = load_config(write(tmp_path, data), env={})
    assert cfg.engine.submit_grace_s is None
    settings = build_settings(cfg)
    assert settings.submit_grace.total_seconds() == 7290
    assert settings.lease_ttl_s == 30
    explicit = with_(engine={"transfer_timeout_s": 600, "submit_grace_s": 900})
    cfg = load_config(write(tmp_path, explicit, "explicit.yaml"), env={})
    assert build_settings(cfg).submit_grace.total_seconds() == 900
    assert "engine.lease_ttl_s" in error_of(write(tmp_path, with_(engine={"lease_ttl_s": 0.5})))
