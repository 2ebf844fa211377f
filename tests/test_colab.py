"""What the notebooks do in Colab before their work: install only what Colab lacks, never touch
its own stack, and name the repository in one place. (Colab itself cannot run here: its versions
are those googlecolab/backend-info lists for the 2026-08 runtime; `make test-colab` runs the whole
suite on them.)
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts.set_repository import FILES, named, set_repository
from utils.colab import KEEP, SECTIONS, plan_install, read_sections


def colab_stack(repo_root) -> dict[str, str]:
    """Colab's versions: the pins the Python 3.13 CI run uses, plus other preinstalled packages."""
    pins = (repo_root / "scripts" / "colab-stack.txt").read_text().splitlines()
    stack = dict(line.split("==") for line in pins if line and not line.startswith("#"))
    stack = {canonicalize_name(name): version for name, version in stack.items()}
    return stack | {
        "gradio-client": "2.4.0",
        "soxr": "0.5.0",
        "matplotlib": "3.10.0",
        "pyyaml": "6.0.2",
        "tqdm": "4.67.1",
        "tensorboard": "2.19.0",
        "gdown": "6.0.0",
        "imageio-ffmpeg": "0.6.0",
        "ipykernel": "6.17.1",
        "jupyter-client": "7.4.9",
    }


APP_ONLY = {"gradio", "gradio-client", "ctranslate2", "faster-whisper", "yt-dlp"}


def names(lines):
    return {canonicalize_name(Requirement(line).name) for line in lines}


def test_each_notebook_reads_its_own_sections(repo_root):
    needs = {
        nb: names(read_sections(repo_root / "requirements.txt", s)) for nb, s in SECTIONS.items()
    }
    assert not needs["01"] & APP_ONLY and not needs["02"] & APP_ONLY  # no gradio, no CTranslate2
    assert needs["03"] >= APP_ONLY and "jiwer" in needs["02"] and "jiwer" not in needs["03"]
    assert {"torch", "transformers", "datacollective"} <= needs["01"]
    # nothing of a headless run or the kernel: upgrading those under Colab's kernel breaks it
    every = set().union(*needs.values())
    assert not every & {"ipykernel", "papermill", "nbformat", "jupyter-client"}
    # and nothing in requirements.txt lies outside a section (it would never be installed in Colab)
    lines = [
        line.strip()
        for line in (repo_root / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert names(lines) == every


@pytest.mark.parametrize("notebook", sorted(SECTIONS))
def test_on_colabs_stack_only_missing_packages_are_installed(repo_root, notebook):
    wanted = read_sections(repo_root / "requirements.txt", SECTIONS[notebook])
    colab = colab_stack(repo_root)
    install, kept = plan_install(wanted, colab)
    # requirements.txt's lower bounds admit every version Colab ships: nothing kept back, and
    # nothing Colab has is reinstalled
    assert kept == []
    assert not names(install) & set(colab), install
    assert names(install) == names(wanted) - set(colab)


def test_a_too_old_colab_package_is_kept_not_replaced():
    installed = {"torch": "2.3.0", "numpy": "1.26.4", "jiwer": "2.0.0"}
    install, kept = plan_install(
        ["torch>=2.4", "numpy>=2.0", "jiwer>=3.0", "yt-dlp>=2025.1.1"], installed
    )
    assert install == ["jiwer>=3.0", "yt-dlp>=2025.1.1"]  # not KEEP: upgraded or installed
    assert [k.split()[0] for k in kept] == ["torch", "numpy"] and "torch" in KEEP


def test_pip_honours_the_pins(tmp_path):
    """The constraints written for pip really stop it: with numpy pinned to the installed version,
    asking for another numpy is refused rather than carried out (pip's own resolver, dry run)."""
    import numpy

    pins = tmp_path / "constraints.txt"
    pins.write_text(f"numpy=={numpy.__version__}\n")
    # --no-index: pip decides from the constraints alone, without asking any index
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "-q", "-c", str(pins)]
    proc = subprocess.run([*cmd, f"numpy!={numpy.__version__}"], capture_output=True, text=True)
    assert proc.returncode != 0 and "conflict" in (proc.stdout + proc.stderr).lower()


def test_the_repository_is_named_in_one_place(repo_root, tmp_path):
    assert len(named(repo_root)) == 1, named(repo_root)  # README and notebooks agree
    for f in FILES:
        shutil.copy(repo_root / f, tmp_path / f)
    assert set_repository("alice/whisper-finetune", tmp_path) == list(FILES)
    assert named(tmp_path) == {"alice/whisper-finetune"}
    assert set_repository("alice/whisper-finetune", tmp_path) == []  # idempotent
    with pytest.raises(SystemExit, match="not OWNER/REPO"):
        set_repository("alice/../../etc", tmp_path)
