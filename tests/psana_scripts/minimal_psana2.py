"""The smallest psana2 script of the reference, verbatim below the wrapper lines.

Wrapper: exp, runnum and data_dir come from argv (``EXP RUN DIR``) or the environment
(``PSANA_EXP``, ``PSANA_RUN``, ``PSANA_DIR``).
"""
import os
import sys

import numpy as np
from psana import DataSource

args = sys.argv[1:] + [None] * 3
exp = args[0] or os.environ["PSANA_EXP"]
runnum = int(args[1] or os.environ["PSANA_RUN"])
data_dir = args[2] or os.environ["PSANA_DIR"]

# ---- verbatim from the reference -----------------------------------------------------
ds  = DataSource(exp=exp, run=runnum, dir=data_dir, max_events=100)
smd = ds.smalldata(filename='out.h5', batch_size=5)
for run in ds.runs():
    det = run.Detector('jungfrau')
    for evt in run.events():
        img = det.raw.calib(evt)
        if img is None: continue
        smd.event(evt, npix=int((img > 10).sum()), sum=float(img.sum()))
if smd.summary:
    smd.save_summary(total=smd.sum(np.array([1.0])))
smd.done()
