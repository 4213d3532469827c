"""The README's quick start, run verbatim against a real Herald."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def test_readme_quick_start_runs_as_written(herald, tmp_path):
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    script = tmp_path / "quickstart.py"
    script.write_text(code)
    env = {**os.environ, "HERALD_URL": herald.base, "HERALD_KEY": herald.tenant("acme")}
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"published \S+ history \[\{'id': 1\}\]", lines[0]), lines
    assert lines[1] == "400 invalid_name"
