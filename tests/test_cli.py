from click.testing import CliRunner

from fraudrules import __version__
from fraudrules.cli import cli


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])

    assert result.exit_code == 0
    assert result.output.strip() == f"fraudrules, version {__version__}"
