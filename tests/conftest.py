"""Root test configuration: Hypothesis profiles and the real-service fixtures.

The fixtures for real services live in ``tests/infra/`` (one module each) and start
those services themselves: a loopback sshd, a loopback Slurm, PostgreSQL access.
When a service cannot be started the tests that need it skip with the reason, unless
``CI=true`` or ``MQI_REQUIRE_<SERVICE>=1`` is set, in which case they fail.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

pytest_plugins = [
    "tests.infra.pg",
    "tests.infra.sshd",
    "tests.infra.sshd_readonly_tmp",
    "tests.infra.slurm",
]

# The CI profile is derandomized so a CI run is reproducible; `thorough` explores anew.
settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=10_000,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=50, stateful_step_count=30, deadline=None)
# scripts/mutation.py: the CI run without shrinking (a failure is all it needs to know,
# and shrinking a database-backed stateful run takes minutes).
settings.register_profile(
    "mutation",
    settings.get_profile("ci"),
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    print_blob=False,
)
settings.load_profile(os.environ.get("MQI_HYPOTHESIS_PROFILE", "ci"))
