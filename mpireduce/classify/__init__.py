"""Hit/miss classification of events: input transform, CNN model file, batched inference.

``transform`` turns a frame and its peaks into a small multi-channel image; ``model``
holds the CNN and its safe (``weights_only``) file format; ``infer`` is the batched
interface the job uses (a CNN or the peak-count rule); ``train`` and ``command`` make
``mpireduce train``. torch is imported only by ``model``/``train``, never here.
"""

from .infer import Classifier, CnnClassifier, PeakCountRule, make_classifier, prepare_batch
from .transform import InputTransform

__all__ = ["Classifier", "CnnClassifier", "InputTransform", "PeakCountRule", "make_classifier", "prepare_batch"]
