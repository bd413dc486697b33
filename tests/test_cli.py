"""The command line: every command's help lists its arguments; the main job runs and checks in the interpreter."""

from __future__ import annotations

import pytest

from fastconv.cli import COMMANDS, main


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_command_documents_its_arguments(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert f"fastconv {command}" in capsys.readouterr().out


def test_demo_checks_fastconv_against_the_reference(capsys):
    """The README's main job: on a CPU, the shrunk seed problem in the interpreter, every implementation
    checked by the tolerance model, no interpreter time presented as a result."""
    assert main(["demo", "--no-seed"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "FAIL" not in out
    assert "(interp)" in out and "correctness only" in out


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2
