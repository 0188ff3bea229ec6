from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mfc_lab.bus import MOCK_POLKIT_POLICY, PrivateBus
from mfc_lab.polkit import MockPolkit


@pytest.fixture(scope="module")
def mock_bus() -> Iterator[tuple[PrivateBus, MockPolkit]]:
    """A private system bus with the project's policy and python-dbusmock's polkitd."""
    if os.geteuid() != 0:
        pytest.skip("needs root: a private system bus and polkit")
    with PrivateBus(extra_policy=MOCK_POLKIT_POLICY) as bus, MockPolkit(bus) as polkit:
        yield bus, polkit


@pytest.fixture
def polkit(mock_bus) -> Iterator[MockPolkit]:
    bus, polkit = mock_bus
    polkit.set_allowed([])
    polkit.allow_unknown(False)
    yield polkit
    polkit.set_allowed([])


@pytest.fixture
def bus(mock_bus) -> PrivateBus:
    return mock_bus[0]
