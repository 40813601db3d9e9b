#!/usr/bin/env bash
# The demo: simulate a training run and a 5%-hit run, train the CNN, reduce with MPI,
# then inspect the output and score it against the simulation's truth.
set -euo pipefail
cd "$(dirname "$0")/.."
NP=${NP:-2}
FRAMES=${FRAMES:-1000}
mkdir -p demo
[ -f demo/train.h5 ] || mpireduce simulate demo/train.h5 --frames 300 --hit-fraction 0.4 --seed 101
[ -f demo/hitfinder.pt ] || mpireduce train demo/train.h5 -o demo/hitfinder.pt --labels truth --size 64 --detect-config jobs/demo.yaml
[ -f demo/run.h5 ] || mpireduce simulate demo/run.h5 --frames "$FRAMES" --hit-fraction 0.05 --seed 202
mpiexec -n "$NP" mpireduce run jobs/demo.yaml --overwrite
mpireduce inspect demo/reduced.cxi
python bench/score.py demo/reduced.cxi demo/run.h5
