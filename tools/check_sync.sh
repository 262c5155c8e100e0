#!/usr/bin/env bash
# Fail if nbdev-export or nbdev-clean would change anything: notebooks and exported code must be
# committed together, and notebooks clean. Works on a copy, so the work tree is never touched.
set -euo pipefail
bin="${VENV:-.venv}/bin"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cp -r nbs crystalline_nb pyproject.toml "$tmp"/
( cd "$tmp" && "$OLDPWD/$bin/nbdev-export" >/dev/null && "$OLDPWD/$bin/nbdev-clean" >/dev/null )
status=0
for d in nbs crystalline_nb; do
  if ! diff -rq -x __pycache__ -x '.ipynb_checkpoints' "$d" "$tmp/$d" >/dev/null; then
    diff -rq -x __pycache__ -x '.ipynb_checkpoints' "$d" "$tmp/$d" | sed 's/^/  /' >&2 || true
    status=1
  fi
done
if [ $status -ne 0 ]; then
  echo "error: notebooks and exported code are out of sync or unclean; run 'make sync' (nbdev-export && nbdev-clean) and commit both" >&2
  exit 1
fi
echo "notebooks and crystalline_nb/ in sync and clean"
