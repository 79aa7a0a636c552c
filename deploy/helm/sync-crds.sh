#!/usr/bin/env sh
# Copies the CRDs from deploy/crds/ (the source of truth) into the chart's crds/ directory.
# Run it after editing a CRD; tests/unit/test_chart_crds.py fails while the copies differ.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../crds"
dst="$here/dbaasctl/crds"
mkdir -p "$dst"
rm -f "$dst"/*.yaml
cp "$src"/*.yaml "$dst"/
ls "$dst"
