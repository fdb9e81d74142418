"""The documentation builds without a single warning, examples included."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Output of earlier builds in the source tree; a fresh copy must regenerate it.
GENERATED = shutil.ignore_patterns("_build", "auto_examples", "generated", "__pycache__")


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("numpydoc")
    pytest.importorskip("sphinx_gallery")
    pytest.importorskip("matplotlib")

    # Build from a copy: sphinx-gallery and autosummary write into the source tree, and
    # a copy keeps the checkout clean and the build free of stale generated pages.
    src = tmp_path / "src"
    shutil.copytree(ROOT / "docs", src / "docs", ignore=GENERATED)
    shutil.copytree(ROOT / "examples", src / "examples", ignore=GENERATED)
    out = tmp_path / "html"
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))

    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", str(out)],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,  # a guard against a hung build, not a speed target
    )
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        print(output)
    assert proc.returncode == 0, f"sphinx failed (exit {proc.returncode}):\n{output[-5000:]}"

    for page in ("index", "install", "api", "user_guide/online_fine_tuning"):
        assert (out / f"{page}.html").is_file(), page
    assert (out / "api" / "generated" / "skocl.OnlineFineTuneClassifier.html").is_file()
    # The gallery example ran and its figure was captured.
    assert (out / "auto_examples" / "plot_online_digits.html").is_file()
    assert list((out / "_images").glob("sphx_glr_plot_online_digits_*.png"))
