"""A psana1-style script: string DataSource, ds.events(), psana.Detector, EventId.

Usage: psana1_style.py EXP RUN DIR. Prints one line per event that has the area detector:
``sec nsec calib_sum image_ss image_fs ebeam``, then ``done EXP MASK_SHAPE``.
"""
import sys

import psana

exp, run, data_dir = sys.argv[1:4]
ds = psana.DataSource('exp=%s:run=%s:dir=%s:smd' % (exp, run, data_dir))
env = ds.env()
det = psana.Detector('jungfrau')
ebeam = psana.Detector('ebeam_energy')
for nevent, evt in enumerate(ds.events()):
    calib = det.calib(evt)
    if calib is None:
        continue
    sec, nsec = evt.get(psana.EventId).time()
    img = det.image(evt)
    print(sec, nsec, repr(float(calib.sum())), img.shape[0], img.shape[1], ebeam(evt))
print('done', env.experiment(), det.mask(int(run)).shape)
