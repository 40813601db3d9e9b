"""A psana1 MPIDataSource script: round-robin events, small_data gathered to rank 0.

Usage: psana1_mpi.py EXP RUN DIR OUT.h5
"""
import sys

import numpy as np
import psana

exp, run, data_dir, out = sys.argv[1:5]
ds = psana.MPIDataSource('exp=%s:run=%s:dir=%s:smd' % (exp, run, data_dir))
det = psana.Detector('jungfrau')
smldata = ds.small_data(out, gather_interval=7)
ds.break_after(30)
n_mine = 0
for evt in ds.events():
    n_mine += 1
    calib = det.calib(evt)
    if calib is None:
        continue
    smldata.event(calib_sum=float(calib.sum()), nested={'npix': int((calib > 10).sum())})
total = smldata.sum(np.array([n_mine]))
smldata.save(n_events=total)
