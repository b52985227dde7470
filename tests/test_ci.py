""".ci/run: removes its virtual environment on every exit and keeps pytest's exit status.

A fake `python3` on PATH stands in for the real one (no 1.7 GB install): it makes a venv folder whose `python`
answers pip and the version line with success and `-m pytest` with the status under test."""
import os
import stat
import subprocess

import pytest

from helpers import REPO_DIR

FAKE_PYTHON3 = r'''#!/usr/bin/env bash
# python3 -m venv DIR: a venv whose python passes everything but pytest, which exits $FAKE_PYTEST_RC
mkdir -p "$3/bin"
printf 'PATH="%s/bin:$PATH"\n' "$3" > "$3/bin/activate"
cat > "$3/bin/python" <<'PY'
#!/usr/bin/env bash
if [ "$1 $2" = "-m pytest" ]; then touch "$(dirname "$0")/../pytest-ran"; exit "$FAKE_PYTEST_RC"; fi
exit 0
PY
chmod +x "$3/bin/python"
'''


@pytest.mark.parametrize("pytest_rc, ci_rc", [(0, 0), (1, 1), (5, 0)])
def test_ci_removes_its_venv_and_keeps_the_exit_status(tmp_path, pytest_rc, ci_rc):
    bin_dir, tmp = tmp_path / "bin", tmp_path / "tmp"
    bin_dir.mkdir(), tmp.mkdir()
    fake = bin_dir / "python3"
    fake.write_text(FAKE_PYTHON3)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp), "FAKE_PYTEST_RC": str(pytest_rc)}
    done = subprocess.run(["bash", str(REPO_DIR / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == ci_rc, done.stdout + done.stderr
    assert list(tmp.iterdir()) == [], "the virtual environment was left behind"


def test_ci_removes_its_venv_when_the_install_fails(tmp_path):
    bin_dir, tmp = tmp_path / "bin", tmp_path / "tmp"
    bin_dir.mkdir(), tmp.mkdir()
    fake = bin_dir / "python3"
    fake.write_text(FAKE_PYTHON3.replace("exit 0\nPY", "exit 9\nPY"))    # pip fails
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(tmp), "FAKE_PYTEST_RC": "0"}
    done = subprocess.run(["bash", str(REPO_DIR / ".ci" / "run")], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 9
    assert list(tmp.iterdir()) == []


def test_ci_installs_torch_as_the_readme_tells_a_cpu_user():
    """The README's CPU block installs torch from PyTorch's CPU index; .ci/run does the same (and falls back at
    once, no retries, to pip's own configuration where that index cannot be reached)."""
    readme = (REPO_DIR / "README.md").read_text()
    cpu_line = next(line for line in readme.splitlines() if line.startswith("pip install torch --index-url"))
    index = cpu_line.split("--index-url")[1].split()[0]
    ci = (REPO_DIR / ".ci" / "run").read_text()
    assert f"--index-url {index}" in ci and "--retries 0" in ci
    assert readme.index(cpu_line) < readme.index("pip install -r requirements.txt")
