"""skocl: online and incremental fine-tuning of PyTorch classifiers, the sklearn way."""

from ._classifier import OnlineFineTuneClassifier
from ._modules import TrunkHeadNet
from ._persist import load, save
from ._version import __version__
from .pipeline import StreamPipeline, make_stream_pipeline

__all__ = [
    "OnlineFineTuneClassifier",
    "StreamPipeline",
    "TrunkHeadNet",
    "__version__",
    "load",
    "make_stream_pipeline",
    "save",
]
