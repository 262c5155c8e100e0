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
# widget state saved by the executor is large and not rendered by the docs: drop it
"$bin/python" - "${nbs[@]}" <<'PY'
import json, sys
for p in sys.argv[1:]:
    nb = json.load(open(p))
    if nb.get("metadata", {}).pop("widgets", None) is not None:
        open(p, "w").write(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
PY
"$bin/nbdev-clean"
