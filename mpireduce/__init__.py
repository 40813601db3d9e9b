"""mpireduce: MPI data reduction for X-ray detector frames.

The package reads like the data flow of a reduction job::

    sources  ->  detect  ->  classify  ->  gather  ->  writer
    (events)    (peaks)     (scores)      (rank 0)    (CXI + provenance)

``simulate`` makes SFX-like runs with ground truth for tests, training and demos;
``cli`` is the single entry point (``mpireduce simulate|train|run|inspect``).
"""

__version__ = "0.1.0"
