"""Fixtures shared by the local execution tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from relay_shell.config import ContainmentMode
from relay_shell.local.containment import ContainmentService
from tests.components import cgroup_mechanism


@pytest.fixture(params=[cgroup_mechanism()])
async def service(request: pytest.FixtureRequest) -> AsyncIterator[ContainmentService]:
    """A containment service on cgroups (a module testing every mechanism defines its own)."""
    containment = ContainmentService(ContainmentMode(request.param))
    yield containment
    await containment.aclose()
