"""skocl: online and incremental fine-tuning of PyTorch classifiers, the sklearn way."""

from ._classifier import OnlineFineTuneClassifier
from ._network import TrunkHeadNet

__version__ = "0.1.0.dev0"

__all__ = ["OnlineFineTuneClassifier", "TrunkHeadNet", "__version__"]
