#!/usr/bin/env bash
# Execute notebooks in place so that the docs and README show fresh outputs, then clean them.
# Usage: tools/run_nbs.sh [NOTEBOOK ...]   (default: every notebook in nbs/ except tutorials)
set -euo pipefail
bin="${VENV:-.venv}/bin"
nbs=("$@"); [ ${#nbs[@]} -gt 0 ] || nbs=(nbs/[0-9]*.ipynb nbs/index.ipynb)
for nb in "${nbs[@]}"; do
  echo "running $nb"
  ( cd "$(dirname "$nb")" && "$OLDPWD/$bin/jupyter" nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=600 "$(basename "$nb")" ) 2>&1 | grep -v "^\[NbConvertApp\]" || true
done
"$bin/nbdev-clean"
