"""fer-train: FER2013 data, class balancing, augmentation, models and training.

The stage reads FER2013 (Kaggle CSV or image folders), balances and augments the training split,
builds a model whose first layer takes raw 0-255 pixels, trains it resumably and writes evaluation
reports. Importing this package does not import TensorFlow; the modules that need it do.
"""

from fer_train.spec import CLASSES, INPUT_SPEC

__all__ = ["CLASSES", "INPUT_SPEC"]
