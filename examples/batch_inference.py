"""A model compiled from plain Python and used for batch inference on NumPy arrays.

    python examples/batch_inference.py [--limit N] [--batch B]

Trains a small MLP on Fashion-MNIST for one epoch in eager PyTorch, compiles its forward pass
with `hytorch.stage` for batches of B images given as NumPy arrays (`hytorch.TensorType`),
then classifies the test set with the compiled function and with PyTorch, and prints both
accuracies, how often they agree and how long each took (measured side by side here).
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import hytorch
from hytorch.data import MNIST


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


def log_probabilities(model, images):
    return F.log_softmax(model(images), dim=1)


def train_one_epoch(model, limit):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.5)
    for images, labels in MNIST(train=True, batch_size=64, shuffle=True, limit=limit):
        optimizer.zero_grad()
        F.nll_loss(log_probabilities(model, images), labels).backward()
        optimizer.step()


def test_batches(batch, limit):
    """The test set as (images [batch,1,28,28] float32, labels, count) NumPy batches; the last
    batch is padded with zeros to the compiled size and `count` says how many are real."""
    for images, labels in MNIST(train=False, batch_size=batch, limit=limit).batches_numpy():
        count = len(labels)
        if count < batch:
            images = np.concatenate([images, np.zeros((batch - count, *images.shape[1:]),
                                                      images.dtype)])
        yield images, labels, count


def classify(predict, batch, limit):
    """(predicted classes, labels, seconds) of `predict` over the test set."""
    predicted, truth, seconds = [], [], 0.0
    for images, labels, count in test_batches(batch, limit):
        start = time.perf_counter()
        out = predict(images)
        seconds += time.perf_counter() - start
        predicted.append(np.asarray(out)[:count].argmax(axis=1))
        truth.append(labels)
    return np.concatenate(predicted), np.concatenate(truth), seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="use the first N images of each split")
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()

    model = make_model()
    train_one_epoch(model, args.limit)
    compiled = hytorch.stage(log_probabilities, model,
                             hytorch.TensorType([args.batch, 1, 28, 28]))
    print(f"compiled for {compiled.program.arg_types[1]}: {compiled.ir[:120]} ...")

    def eager(images):
        with torch.no_grad():
            return log_probabilities(model, torch.from_numpy(images)).numpy()

    ours, truth, compiled_seconds = classify(lambda images: compiled(model, images),
                                             args.batch, args.limit)
    theirs, _, eager_seconds = classify(eager, args.batch, args.limit)
    print(f"test images: {len(truth)}")
    print(f"compiled accuracy: {100 * np.mean(ours == truth):.2f}%  "
          f"PyTorch accuracy: {100 * np.mean(theirs == truth):.2f}%  "
          f"agreement: {100 * np.mean(ours == theirs):.2f}%")
    print(f"compiled {compiled_seconds:.4f} s, PyTorch {eager_seconds:.4f} s "
          f"({eager_seconds / compiled_seconds:.1f}x)")


if __name__ == "__main__":
    main()
