"""Test configuration for tests/support.

litellm lazily imports ``litellm.llms.github_copilot.authenticator`` inside every
``acompletion`` call, and pydantic then warns that its TypedDicts (``_DeviceCode``,
``_AccessTokenPoll``) use the ``ReadOnly`` qualifier. The repository turns warnings into
errors, and a warning raised as an error aborts that import, so every litellm call in
these tests would fail. Only that pydantic notice is ignored, by its text, category and
emitting module — nothing broader.
"""

from __future__ import annotations

import pytest

_THIRD_PARTY_WARNINGS = (
    "ignore:Items? .* on TypedDict class .* (is|are) using the .ReadOnly. qualifier"
    ":UserWarning:pydantic._internal._generate_schema",
)


def pytest_configure(config: pytest.Config) -> None:
    for line in _THIRD_PARTY_WARNINGS:
        config.addinivalue_line("filterwarnings", line)
