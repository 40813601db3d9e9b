"""Per-event numbers of a run, printed as JSON lines; run with real psana or with the shim.

Usage: real_psana_dump.py FILE_OR_DIR [EXP RUN]: psana2 ``files=FILE`` (xtc2 for real
psana) or ``exp=EXP, run=RUN, dir=DIR`` (the shim on a converted run).
"""
import json
import sys

import numpy as np
from psana import DataSource

if len(sys.argv) > 2:
    ds = DataSource(exp=sys.argv[2], run=int(sys.argv[3]), dir=sys.argv[1])
else:
    ds = DataSource(files=sys.argv[1], skip_calib_load='all')
for run in ds.runs():
    cspad = run.Detector('xppcspad')
    motor = run.Detector('motor1')
    gcc = run.Detector('HX2:DVD:GCC:01:PMON')
    for evt in run.events():
        raw = cspad.raw.raw(evt)
        print(json.dumps({
            'timestamp': int(evt.timestamp), 'expt': run.expt, 'runnum': run.runnum,
            'shape': None if raw is None else list(raw.shape),
            'raw_sum': None if raw is None else int(raw.astype(np.int64).sum()),
            'raw_first': None if raw is None else int(raw.flat[0]),
            'motor1': motor(evt), 'gcc': gcc(evt), 'datetime': str(evt.datetime()),
        }))
