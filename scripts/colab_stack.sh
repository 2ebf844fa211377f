#!/usr/bin/env bash
# Runs the test suite on Colab's stack: Python 3.13 in a virtual environment (.venv-colab) with
# Colab's versions of torch, transformers, datasets, gradio, numpy... pinned (scripts/colab-stack.txt).
# torch 2.11 for Python 3.13 comes from PyPI as Colab's own (CUDA) build; it runs on the CPU here.
# Extra arguments go to pytest. Safe to rerun: the environment is built once per pins/requirements.
set -euo pipefail
cd "$(dirname "$0")/.."

py=""
# pyenv's own 3.13 first: a pyenv shim named python3.13 may exist without that version selected
for candidate in "$(pyenv root 2>/dev/null || echo ~/.pyenv)"/versions/3.13*/bin/python3.13 python3.13; do
  if "$candidate" -c "import sys; assert sys.version_info[:2] == (3, 13)" 2>/dev/null; then
    py="$(command -v "$candidate")"; break
  fi
done
if [ -z "$py" ] && command -v pyenv >/dev/null 2>&1; then
  pyenv install -s 3.13 && py="$(pyenv root)/versions/$(pyenv latest 3.13)/bin/python3.13"
fi
[ -n "$py" ] || { echo "colab_stack: no Python 3.13 (install it with pyenv: pyenv install 3.13)" >&2; exit 1; }

venv=.venv-colab
stamp="$venv/.done-$(cat scripts/colab-stack.txt requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q -c scripts/colab-stack.txt torch -r requirements-dev.txt
  touch "$stamp"
fi
"$venv/bin/python" -c "import sys, torch, transformers, datasets, gradio, numpy
print('colab stack: Python', sys.version.split()[0], 'torch', torch.__version__, 'transformers',
      transformers.__version__, 'datasets', datasets.__version__, 'gradio', gradio.__version__,
      'numpy', numpy.__version__)"
"$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
