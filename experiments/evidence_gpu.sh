#!/bin/bash
# The claims' cells at the papers' budget on one GPU, in one call that ends well inside a 10-minute window:
#   OUT=/tmp/out CLAIMS=C1,C2 ENVS=hopper LIMIT=480 bash experiments/evidence_gpu.sh
# runs `experiments/evidence.py --claims=$CLAIMS --envs=$ENVS` (the tables' protocols: 1M updates, the papers'
# seeds) under experiments/results, stops it with SIGINT after LIMIT seconds (a cell checkpoints every 10k
# updates, so a cut loses at most that), then packs the cells' results, configs, metrics and the checkpoints
# of unfinished cells into $OUT/results.tgz.* (15 MB parts). Finished cells are read back and interrupted ones
# resume, so the same call continues where the last one stopped once the parts are unpacked here:
#   cat <files>/results.tgz.* | tar xzf - && python experiments/evidence.py --page
# then commit experiments/results (checkpoints of cells that have finished are not kept) and docs/results*.
# The local datasets are built on the device on first use (each 1M-transition level takes minutes of one
# core); MINARI_DATASETS_PATH may point at a carried copy instead.
set -o pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}; OUT=${OUT:-runs/evidence_gpu}; LIMIT=${LIMIT:-480}
CLAIMS=${CLAIMS:-C1}; ENVS=${ENVS:-hopper}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
{ nvidia-smi -L; echo "host cores: $(nproc)"; } 2>&1 | tee "$OUT/device.txt"
timeout -s INT -k 30 "$LIMIT" $PY experiments/evidence.py --claims="$CLAIMS" --envs="$ENVS" \
    --workdir=experiments/results 2>&1 | grep -v "^[IW][0-9]\{4\} " | tee "$OUT/log.txt"
echo "evidence exit $? (124 or 130: cut at ${LIMIT}s; rerun to resume)" | tee -a "$OUT/log.txt"
$PY experiments/evidence.py --page 2>&1 | tail -1
# a finished cell's checkpoint is not needed to read it back: only unfinished cells carry theirs
find experiments/results -name results.json | while read -r r; do rm -f "$(dirname "$r")/checkpoint.msgpack"; done
tar czf - experiments/results docs/results.md docs/results | split -b 15M - "$OUT/results.tgz."
ls -la "$OUT"
