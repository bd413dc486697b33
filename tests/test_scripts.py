"""The GPU session scripts' shared step runner (``scripts/step.sh``), on the CPU: the scripts themselves need a
GPU, but how they select, time out, log and summarise a step does not."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def _run(script: str, out: Path, **env) -> subprocess.CompletedProcess:
    body = f'set -u\nOUT={out}\nsource scripts/step.sh\n{script}\n'
    return subprocess.run(["bash", "-c", body], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})


def test_a_step_logs_its_output_and_summarises_it(tmp_path):
    res = _run('step ok 10 bash -c "echo 3 passed in 0.1s"; echo "rc=$? seconds=$STEP_SECONDS"', tmp_path)
    assert "rc=0 seconds=0" in res.stdout
    assert (tmp_path / "ok.log").read_text() == "3 passed in 0.1s\n"
    line = (tmp_path / "summary.txt").read_text()
    assert line.split()[:3] == ["ok", "exit", "0"] and line.rstrip().endswith("3 passed in 0.1s")
    assert "=== ok" in (tmp_path / "session.log").read_text()


def test_a_step_past_its_limit_returns_timeouts_status(tmp_path):
    res = _run('step slow 1 sleep 5; echo "rc=$?"', tmp_path)
    assert "rc=124" in res.stdout
    assert (tmp_path / "summary.txt").read_text().split()[:3] == ["slow", "exit", "124"]


def test_steps_selects_and_variables_before_step_reach_the_command(tmp_path):
    script = ('STEPS="b" step a 10 echo A; STEPS="b" WHO=me step b 10 bash -c \'echo "1 passed by $WHO"\'\n'
              'note "c skipped: a reason"')
    _run(script, tmp_path)
    assert not (tmp_path / "a.log").exists()
    assert (tmp_path / "b.log").read_text() == "1 passed by me\n"
    lines = (tmp_path / "summary.txt").read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == ["b", "c"] and lines[1] == "c skipped: a reason"


def test_step_show_prints_the_matching_lines_and_a_failure_keeps_its_status(tmp_path):
    res = _run('STEP_SHOW="^FAILED"; step f 10 bash -c "echo FAILED t::x; echo noise; echo 1 failed; exit 1"; '
               'echo "rc=$?"', tmp_path)
    assert "\nFAILED t::x\n" in res.stdout and "\nnoise\n" not in res.stdout and "rc=1" in res.stdout
    assert (tmp_path / "summary.txt").read_text().rstrip().endswith("1 failed")


@pytest.mark.parametrize("script", ["gpu_session.sh", "gpu_outside.sh", "gpu_verify.sh"])
def test_the_session_scripts_parse_and_use_the_shared_step(script):
    text = (ROOT / "scripts" / script).read_text()
    assert "source scripts/step.sh" in text and "\nstep() {" not in text
    assert subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)]).returncode == 0
