"""The Quix Streams adapter refuses a release it was not checked against."""

from __future__ import annotations

import pytest
import quixstreams

from fraudrules.pipeline.quix import TESTED_VERSIONS, check_version
from fraudrules.settings import ConfigError


def test_the_installed_quix_streams_is_a_tested_one() -> None:
    check_version()
    assert ".".join(quixstreams.__version__.split(".")[:2]) in TESTED_VERSIONS


@pytest.mark.parametrize("version", ["3.29.0", "4.0.0", "3.2.0"])
def test_an_untested_release_is_refused_with_what_to_install(version: str) -> None:
    with pytest.raises(ConfigError, match=rf"quixstreams {version} is installed.*pip install 'quixstreams~=3\.28\.0'"):
        check_version(version)
