"""Test metrics of class probabilities: loss, accuracy, per-class accuracy, confusion
matrix, expected calibration error (ECE), and flip test-time augmentation. Numpy only."""
import numpy as np


def metrics(probs, labels, ece_bins=15):
    """Loss, accuracy, per-class accuracy, confusion matrix (rows: true class) and ECE:
    the mean |accuracy - confidence| over `ece_bins` equal-width confidence bins,
    weighted by the share of images in each bin (Guo et al. 2017)."""
    probs = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    labels = np.asarray(labels)
    num_classes = probs.shape[1]
    predicted, confidence = probs.argmax(1), probs.max(1)
    correct = predicted == labels
    bins = np.minimum((confidence * ece_bins).astype(int), ece_bins - 1)
    ece = sum(abs(correct[bins == b].mean() - confidence[bins == b].mean()) * (bins == b).mean()
              for b in range(ece_bins) if (bins == b).any())
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return {"loss": float(-np.log(probs[np.arange(len(labels)), labels]).mean()),
            "accuracy": float(correct.mean()),
            "per_class_accuracy": [float(correct[labels == c].mean()) if (labels == c).any() else None
                                   for c in range(num_classes)],
            "ece": float(ece), "confusion": confusion.tolist()}


def tta_probabilities(predict_fn, images, plain=None):
    """Flip test-time augmentation (as airbench does): the mean of the class probabilities
    of each image and of its horizontal mirror. `predict_fn` maps (n, h, w, c) images to
    (n, classes) probabilities; `plain` is predict_fn(images) when already computed."""
    plain = predict_fn(images) if plain is None else plain
    return (np.asarray(plain, np.float64) + np.asarray(predict_fn(images[:, :, ::-1]), np.float64)) / 2
