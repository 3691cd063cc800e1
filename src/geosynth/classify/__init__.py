"""Downstream classifiers: the test of a synthetic dataset (``geosynth train-clf``).

CLIP ViT-B/16 with LoRA (seed 000, section 5) or timm backbones, trained on synthetic, real or
mixed images, selected on VAL only and evaluated once on TEST. :func:`train_and_test` does
what the command does (splits loaded and aligned by class name, one run per seed, resume).
"""

from geosynth.classify.checkpoint import load_classifier, save_classifier
from geosynth.classify.data import Splits, align_classes, load_class_map, load_splits
from geosynth.classify.evaluation import evaluate
from geosynth.classify.metrics import aggregate_seeds, classification_metrics, confusion_matrix
from geosynth.classify.model import Classifier, ModelSpec, build_classifier
from geosynth.classify.run import run_train_clf, train_and_test
from geosynth.classify.train import TrainConfig, TrainResult, train_classifier

__all__ = [
    "Classifier",
    "ModelSpec",
    "Splits",
    "TrainConfig",
    "TrainResult",
    "aggregate_seeds",
    "align_classes",
    "build_classifier",
    "classification_metrics",
    "confusion_matrix",
    "evaluate",
    "load_class_map",
    "load_classifier",
    "load_splits",
    "run_train_clf",
    "save_classifier",
    "train_and_test",
    "train_classifier",
]
