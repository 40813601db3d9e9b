"""Hit/miss classification of events: input transform, CNN model file, batched inference.

``transform`` turns a frame and its peaks into a small multi-channel image; ``model``
holds the CNN and its safe (``weights_only``) file format; ``infer`` is the batched
interface the job uses (a CNN, descriptor MLP or the peak-count rule); ``factory`` builds
the job's classifier from any model file (also diffuse and SPI); ``train`` and ``command`` make
``mpireduce train``. torch is imported only by ``model``/``train``, never here.
"""

from .factory import make_classifier
from .infer import Classifier, CnnClassifier, PeakCountRule, prepare_batch
from .transform import InputTransform

__all__ = ["Classifier", "CnnClassifier", "InputTransform", "PeakCountRule", "make_classifier", "prepare_batch"]
