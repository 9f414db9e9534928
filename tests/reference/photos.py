#!/usr/bin/env python3
"""Real photos with known ImageNet-1k answers, for tests and benchmarks.

``load_photos()`` returns ``[(name, rgb, expected), ...]``: ``rgb`` is an H x W x 3
uint8 RGB numpy array (C-contiguous), ``expected`` a tuple of label substrings; the
photo passes when the model's **top-1** label (from src/labels/imagenet1k.txt)
contains one of them (see ``top1_ok``).  The photos ship inside the PyPI
``scikit-image`` wheel (``skimage.data``, no download needed; verified with
scikit-image 0.26.0).

Verified with models/efficientnet-lite0.onnx (scripts/gen/make_efficientnet_lite0.py)
and the ``tf-efficientnet-lite`` preprocessing (``preprocess`` below), softmax of the
logits, ONNX Runtime 1.32 CPU::

    chelsea            tiger cat .408, Egyptian cat .340, tabby .167, lynx .015
    coffee             espresso .951, cup .015, consomme .008, chocolate sauce .004
    rocket             missile .242, projectile .164, drilling platform .116,
                       space shuttle .057
    stereo_motorcycle  moped .506, motor scooter .145, disk brake .058, crash helmet .057
    camera             tripod .937, harmonica .010, binoculars .009, microphone .007
                       (grayscale photo, replicated to 3 channels)

``astronaut`` (no ImageNet class fits: football helmet .161, bobsled .110) is only
returned with ``include_unlabeled=True``, with ``expected = ()``.

Caveat: these top-1 checks prove the class order and that the model is trained, but
they are robust to most preprocessing mistakes: with BGR input, torchvision
mean/std, ``x/255 - 0.5`` or an OpenCV resize instead of PIL's, the top-1 stays the
same for every photo except ``rocket`` (BGR or ``x/255 - 0.5`` -> drilling platform).
To test a preprocessing implementation, compare its tensor or logits numerically
with ``preprocess`` + the model, not only the top-1 label.
"""

from __future__ import annotations

import numpy as np

# (name, loader, expected top-1 label substrings)
_PHOTOS = [
    ("chelsea", lambda d: d.chelsea(), ("tabby", "tiger cat", "Egyptian cat")),
    ("coffee", lambda d: d.coffee(), ("espresso", "cup", "coffee mug")),
    ("rocket", lambda d: d.rocket(), ("missile", "projectile", "space shuttle")),
    ("stereo_motorcycle", lambda d: d.stereo_motorcycle()[0], ("moped", "motor scooter")),
    ("camera", lambda d: d.camera(), ("tripod", "reflex camera")),
]
_UNLABELED = [
    ("astronaut", lambda d: d.astronaut(), ()),
]
# Every other photo in the wheel, no answer expected: footage for measuring agreement
# between two models (e.g. FP32 and INT8) on frames neither was tuned on.
_MORE = [
    ("motorcycle_right", lambda d: d.stereo_motorcycle()[1]),
    ("hubble_deep_field", lambda d: d.hubble_deep_field()),
    ("immunohistochemistry", lambda d: d.immunohistochemistry()),
    ("retina", lambda d: d.retina()),
    ("coins", lambda d: d.coins()),
    ("brick", lambda d: d.brick()),
    ("moon", lambda d: d.moon()),
    ("grass", lambda d: d.grass()),
    ("gravel", lambda d: d.gravel()),
    ("clock", lambda d: d.clock()),
    ("page", lambda d: d.page()),
    ("cell", lambda d: d.cell()),
]


def _rgb(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype != np.uint8:
        raise ValueError(f"expected uint8, got {a.dtype}")
    if a.ndim == 2:
        a = np.stack([a, a, a], axis=-1)
    return np.ascontiguousarray(a[..., :3])


def load_photos(include_unlabeled: bool = False):
    """[(name, H x W x 3 uint8 RGB array, expected top-1 label substrings)]."""
    import skimage.data as data  # imported lazily: only the photo users need it

    items = _PHOTOS + (_UNLABELED if include_unlabeled else [])
    return [(name, _rgb(load(data)), expected) for name, load, expected in items]


def photo_names() -> list[str]:
    """Every photo ``load_named`` knows, labelled ones first."""
    return [n for n, *_ in _PHOTOS + _UNLABELED + _MORE]


def load_named(names):
    """[(name, H x W x 3 uint8 RGB array)] for ``names`` (see ``photo_names``)."""
    import skimage.data as data

    known = {n: load for n, load, *_ in _PHOTOS + _UNLABELED + _MORE}
    missing = [n for n in names if n not in known]
    if missing:
        raise SystemExit(f"error: unknown photos {missing}; known: {', '.join(known)}")
    return [(n, _rgb(known[n](data))) for n in names]


def top1_ok(label: str, expected) -> bool:
    """True when ``label`` contains one of ``expected`` (case-insensitive)."""
    return any(e.lower() in label.lower() for e in expected)


def preprocess(rgb: np.ndarray, size: int = 224) -> np.ndarray:
    """``tf-efficientnet-lite`` preprocessing: [3, size, size] float32 (CHW).

    Center crop of side ``int(size / (size + 32) * min(h, w))`` at
    ``((h - side) + 1) // 2``, ``((w - side) + 1) // 2``; PIL bicubic resize to
    size x size; ``(x - 127) / 128`` in float32.
    """
    from PIL import Image

    h, w = rgb.shape[:2]
    side = int(size / (size + 32) * min(h, w))
    top, left = ((h - side) + 1) // 2, ((w - side) + 1) // 2
    crop = np.ascontiguousarray(rgb[top:top + side, left:left + side])
    r = np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC), np.float32)
    return ((r - np.float32(127)) / np.float32(128)).transpose(2, 0, 1).copy()


if __name__ == "__main__":
    # python tests/reference/photos.py [models/efficientnet-lite0.onnx]
    import os
    import sys

    import onnxruntime as ort

    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    model = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "models",
                                                               "efficientnet-lite0.onnx")
    with open(os.path.join(root, "src", "labels", "imagenet1k.txt"), encoding="utf-8") as f:
        labels = f.read().splitlines()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    failed = 0
    for name, rgb, expected in load_photos(include_unlabeled=True):
        (logits,) = sess.run(None, {sess.get_inputs()[0].name: preprocess(rgb)[None]})
        z = logits[0].astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        top = np.argsort(-p, kind="stable")[:5]
        ok = top1_ok(labels[top[0]], expected) if expected else None
        failed += ok is False
        print(f"{name:18s} {'ok  ' if ok else 'FAIL' if ok is False else '--  '} "
              + ", ".join(f"{labels[i]} {p[i]:.3f}" for i in top))
    sys.exit(1 if failed else 0)
