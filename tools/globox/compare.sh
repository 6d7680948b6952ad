#!/usr/bin/env bash
# globox (PyPI) against sppdet's readers: formats, broken inputs, BCCD load time, box agreement.
# Usage: tools/globox/compare.sh [DATA=../shared/data] [OUT=/tmp/globox_eval]
# globox gets its own throwaway venv (no torch); sppdet runs from this checkout's venv.
set -euo pipefail
DATA=$(realpath "${1:-../shared/data}"); OUT=${2:-/tmp/globox_eval}; PY=${PYTHON:-python}
mkdir -p "$OUT"
[ -x /tmp/globox/bin/python ] || { python3 -m venv /tmp/globox && /tmp/globox/bin/pip install -q globox; }
# BCCD's test split as YOLO (the independent converter of the tests)
PYTHONPATH=.:tests $PY -c "
from pathlib import Path; from test_yolo import voc_to_yolo; from sppdet.datasets import load_dataset
v = load_dataset('$DATA/bccd/BCCD', 'test')
voc_to_yolo(Path('$DATA/bccd/BCCD'), Path('$OUT/yolo_bccd'), {'test': 'test'}, v.classes)"
/tmp/globox/bin/python tools/globox/globox_side.py "$OUT" "$DATA"
PYTHONPATH=. $PY tools/globox/sppdet_side.py "$OUT" "$DATA"
