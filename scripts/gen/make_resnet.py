#!/usr/bin/env python3
"""Build a discriminative, randomly initialised ResNet as ONNX, for tests and benchmarks.

Usage::

    make_resnet.py --depth {18,34,50,101,152} OUT.onnx [--seed 20261126] [--threads 1]
    make_resnet.py --depth 50 --caffe2 OUT.onnx [--seed 20261126] [--threads 1]

Two flavours, one recipe for the weights:

torchvision (default)
    torchvision's ``resnet{depth}`` graph and parameter names, built from scratch:
    input ``input`` [N,3,224,224], output ``logits`` [N,1000] (no Softmax).  What
    scripts/bench and scripts/model-table measure, and the fixtures' resnet18.onnx.
``--caffe2`` (only with ``--depth 50``)
    The ResNet-50 derived from the Caffe2-exported ``light_resnet50.onnx`` that the
    PyPI ``onnx`` package ships as a backend test model: input ``gpu_0/data_0``
    [N,3,224,224], output ``gpu_0/softmax_1`` [N,1000] (softmax probabilities).  This
    is models/resnet50-random.onnx (scripts/setup), the integration tests' model;
    tests/reference computes its JSON fixtures from it.

Weights (seeded, not trained; both flavours)
    ``numpy.random.default_rng(seed)``, drawn in graph order (``state_dict`` order for
    torchvision, node order for Caffe2), so the result is a pure function of the seed:

    * Conv and fc (Gemm) weights: He-normal, std = sqrt(2/fan_in); fc bias 0.
    * BatchNormalization scale: 1 + 0.1*N(0,1); bias: 0.1*N(0,1).
    * BatchNormalization running mean / variance: *calibrated*.  With random weights
      and fixed "mean 0, var 1" statistics every channel carries a large
      input-independent offset (post-ReLU inputs are all positive), activations double
      at every residual block, and the final features of any two images have cosine
      similarity > 0.9997: the classifier then returns the same top-5 for everything.
      So, in topological order, each BN gets the per-channel mean / variance of its
      input measured with ONNX Runtime (1 thread by default) on
      ``calibration_images(seed, 16)``, a deterministic set of synthetic scenes, the
      earlier BNs already calibrated.  This is what training would make those
      statistics; it keeps every BN output at roughly zero mean / unit variance and
      makes the network input-sensitive.
    * Feature normalisation and classifier scale: three nodes between the pooled
      features and the fc, ``Sub`` (minus the per-channel mean of the features over the
      calibration set, initializer ``feat_mean``), ``Mul`` (times 1/std,
      ``feat_inv_std``) and ``LpNormalization`` (p=2, axis=1).  A ReLU network with
      fixed batch-norm is close to positively homogeneous, so without the L2
      normalisation a frame with more contrast or high-frequency detail than the
      calibration images (e.g. ``ffmpeg -f lavfi -i cellauto``) gets logits 20-100x
      larger and a one-hot softmax with probabilities that underflow to exactly 0
      (ties).  With it, the logit spread is the same for every input: the He-normal
      fc weight is scaled by one scalar so that the per-image std of the logits over
      the 1000 classes is ``LOGIT_STD`` (4.0).  Top-1 probabilities then range over
      roughly 0.1-0.95 and the top-5 logits are well separated.

torchvision graph
    Built with ``onnx.helper`` (opset 17, IR version 8), with exactly the layers of
    ``torchvision.models.resnet{depth}`` (v1.5):

    * stem: ``conv1`` 7x7/2 pad 3, 3->64, no bias; ``bn1``; ReLU; MaxPool 3x3/2 pad 1;
    * ``layer1``..``layer4`` with 64/128/256/512 planes and strides 1/2/2/2:
      BasicBlock (3x3 conv - BN - ReLU - 3x3 conv - BN, expansion 1) for 18/34 with
      [2,2,2,2]/[3,4,6,3] blocks, Bottleneck (1x1 - 3x3 - 1x1, expansion 4, the
      stride on the 3x3 as in torchvision) for 50/101/152 with
      [3,4,6,3]/[3,4,23,3]/[3,8,36,3] blocks; ``downsample`` = 1x1 conv with the
      block's stride + BN wherever stride != 1 or the channel count changes; the
      residual Add is followed by ReLU;
    * GlobalAveragePool (= ``AdaptiveAvgPool2d((1, 1))``), Flatten(axis=1), ``fc``
      Gemm 512*expansion -> 1000 (``transB=1``, weight [1000, C] as in PyTorch).

    BatchNormalization uses epsilon 1e-5 (torchvision's default).  Initializers carry
    torchvision's ``state_dict`` names (``conv1.weight``, ``layer1.0.bn1.running_mean``,
    ``layer2.0.downsample.0.weight``, ``fc.bias``...), in ``state_dict`` order;
    ``num_batches_tracked`` is not stored.  The input is ImageNet-normalised RGB,
    NCHW; N is a symbolic dim.  The only deviation from torchvision's graph is the
    feature normalisation above; its 2 x C constants are not counted as parameters.
    To keep ResNet-152 affordable the calibration does not rerun the network from the
    input for every BN: the activations at each block boundary are cached and only
    the part of the graph between the last boundary and the BN is run.

Caffe2 flavour (``--caffe2``)
    Source: ``onnx/backend/test/data/light/light_resnet50.onnx`` (located through
    ``onnx.__file__``), opset 9, input ``gpu_0/data_0`` [1,3,224,224], output
    ``gpu_0/softmax_1`` [1,1000], last op Softmax, whose 239 weight tensors are
    ``ConstantOfShape`` fills of 0.02, so every output probability is exactly 0.001
    whatever the input.  Its conv1/res2 batch-norm parameters (28 tensors) are real
    trained values, but they belong to weights that no longer exist.  Changes:

    1. Every ``ConstantOfShape`` fill becomes a float32 initializer of the same shape,
       drawn as above; the real conv1/res2 batch-norm tensors are redrawn the same way,
       so that all 53 batch-norm layers are treated alike.  One session over a copy
       that exposes every BN's statistics as inputs and every BN input as an output
       calibrates the 53 layers.
    2. The feature normalisation nodes go between the Reshape (``r173``) and the fc.
    3. Dynamic batch: input and output get the symbolic dim "N"; the Reshape target
       before the fc (initializer ``OC2_DUMMY_1``) changes from [1,2048] to [-1,2048].
    4. Cleanup: the ConstantOfShape nodes, their ``__SHAPE`` initializers and one
       unused initializer are dropped; IR version 3 -> 4 so that initializers no
       longer have to be listed as graph inputs (the model's only input is
       ``gpu_0/data_0``).  The final Softmax is kept.

Output
    The script writes OUT.onnx, checks it (``onnx.checker`` full_check, ONNX Runtime
    at batch 1 and 3 on fresh synthetic images: row 0 of batch 3 equals batch 1, the
    three top-5s are distinct and not near-tied, min softmax probability > 1e-30) and
    prints a summary; for the torchvision flavour also the parameter count (the
    torchvision-comparable count of trainable parameters, and the total including BN
    running statistics and the normalisation constants) and the multiply-accumulates
    of the Conv and Gemm nodes for one 224x224 image (GMACs, the unit of torchvision's
    "GFLOPS" column) and GFLOPs = 2 x GMACs.  The Caffe2 ResNet-50 takes about 45 s on
    one core.  The calibration uses ONNX Runtime's own arithmetic, so the bytes of a
    model are reproducible for a given seed, onnx + onnxruntime version and CPU kind
    (byte-identical files); other versions may differ in the last bits of the
    calibrated statistics, so compare a runtime against reference outputs
    (tests/reference/classify.py) computed from the same model file, not a stored one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

NUM_CLASSES = 1000
LOGIT_STD = 4.0
FEAT_MEAN = "feat_mean"
FEAT_INV_STD = "feat_inv_std"
CALIB_IMAGES = 16
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

# torchvision flavour
OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; readable by older runtimes
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
FEATURES_NAME = "features"  # Flatten output [N, C]
BN_EPS = 1e-5
# depth -> (block kind, blocks per stage); torchvision.models.resnet
ARCH = {
    18: ("basic", [2, 2, 2, 2]),
    34: ("basic", [3, 4, 6, 3]),
    50: ("bottleneck", [3, 4, 6, 3]),
    101: ("bottleneck", [3, 4, 23, 3]),
    152: ("bottleneck", [3, 8, 36, 3]),
}
EXPANSION = {"basic": 1, "bottleneck": 4}
# torchvision's published parameter counts (sum of p.numel() for p in parameters())
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032,
                      101: 44_549_160, 152: 60_192_808}
TORCHVISION_GFLOPS = {18: 1.81, 34: 3.66, 50: 4.09, 101: 7.80, 152: 11.51}

# Caffe2 flavour
CAFFE2_SOURCE_REL = os.path.join("backend", "test", "data", "light", "light_resnet50.onnx")
CAFFE2_INPUT_NAME = "gpu_0/data_0"
CAFFE2_OUTPUT_NAME = "gpu_0/softmax_1"
CAFFE2_FEATURES_NAME = "r173"  # output of the Reshape to [N, 2048], input of the fc Gemm
CAFFE2_RESHAPE_CONST = "OC2_DUMMY_1"
CAFFE2_FEATURE_DIM = 2048

# producer_name of each flavour's files: the paths of the two scripts this one replaced
# (before the generators moved to scripts/gen/), kept so that a seed still gives files
# byte-identical to the models written before.
PRODUCER = {"torchvision": "streamclassd scripts/make_resnet.py",
            "caffe2": "streamclassd scripts/make_resnet50.py"}


# --------------------------------------------------------------------------- shared

def calibration_images(seed: int, count: int) -> np.ndarray:
    """Deterministic synthetic RGB scenes, ImageNet-normalised, NCHW float32.

    Pure numpy, so the set depends only on the seed.  Each image mixes the kinds of
    content test videos have: a smooth multi-scale noise background (a crude 1/f
    spectrum) or a colour gradient, flat rectangles and ellipses in saturated or
    muted colours with hard edges, stripe / checkerboard patches of several
    frequencies, and sometimes fine grain noise.  Batch-norm statistics measured on
    it therefore cover both smooth and edge-rich frames.
    """
    rng = np.random.default_rng([seed, 1])
    size = 224
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    images = []
    for _ in range(count):
        # background: smooth noise or a gradient
        img = np.zeros((size, size, 3))
        if rng.random() < 0.6:
            for cells in (2, 4, 8, 16, 32):
                coarse = rng.normal(0.0, 1.0 / cells ** 0.5, (cells + 1, cells + 1, 3))
                pos = np.linspace(0, cells, size)
                i0 = np.minimum(pos.astype(int), cells - 1)
                f = (pos - i0)[:, None]
                rows = coarse[i0] * (1 - f)[:, :, None] + coarse[i0 + 1] * f[:, :, None]
                img += rows[:, i0] * (1 - f.T)[:, :, None] + rows[:, i0 + 1] * f.T[:, :, None]
            img = 0.5 + 0.18 * img / (img.std() + 1e-9)
        else:
            c0, c1 = rng.uniform(0, 1, (2, 3))
            t = (np.cos(rng.uniform(0, np.pi)) * xx + np.sin(rng.uniform(0, np.pi)) * yy) / size
            t = (t - t.min()) / (t.max() - t.min() + 1e-9)
            img = c0 + (c1 - c0) * t[:, :, None]
        # hard-edged shapes, stripes and checkerboards
        for _ in range(rng.integers(2, 9)):
            cy, cx = rng.uniform(0, size, 2)
            hy, hx = rng.uniform(8, size / 3, 2)
            kind = rng.integers(0, 4)
            if kind == 0:
                mask = (abs(yy - cy) < hy) & (abs(xx - cx) < hx)
            elif kind == 1:
                mask = ((yy - cy) / hy) ** 2 + ((xx - cx) / hx) ** 2 < 1
            else:
                mask = (abs(yy - cy) < hy) & (abs(xx - cx) < hx)
                period = rng.uniform(2, 24)
                if kind == 2:
                    ang = rng.uniform(0, np.pi)
                    phase = (np.cos(ang) * xx + np.sin(ang) * yy) / period
                    mask &= (np.floor(phase) % 2) == 0
                else:
                    mask &= ((np.floor(xx / period) + np.floor(yy / period)) % 2) == 0
            colour = rng.uniform(0, 1, 3)
            if rng.random() < 0.5:
                colour = np.round(colour)  # saturated primaries, like test patterns
            img[mask] = colour
        if rng.random() < 0.4:
            img += rng.normal(0.0, rng.uniform(0.01, 0.08), img.shape)
        rgb = np.clip(img, 0.0, 1.0).astype(np.float32)
        images.append(((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(images), dtype=np.float32)


def session(model: onnx.ModelProto, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )


def feature_norm_nodes(features: str) -> list[onnx.NodeProto]:
    """Sub / Mul / LpNormalization from `features` to "feat_unit", the fc's input."""
    return [
        helper.make_node("Sub", [features, FEAT_MEAN], ["feat_centered"],
                         name="feat_center"),
        helper.make_node("Mul", ["feat_centered", FEAT_INV_STD], ["feat_standardized"],
                         name="feat_standardize"),
        helper.make_node("LpNormalization", ["feat_standardized"], ["feat_unit"],
                         name="feat_l2normalize", axis=1, p=2),
    ]


def feature_normalisation(feats: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """(feat_mean, feat_inv_std, scaled fc weight) from the calibration features.

    u = l2normalize((features - mean) / std), so the logit magnitude no longer depends
    on how much contrast / high-frequency energy a frame has; the fc weight w
    ([classes, C], transB=1) is scaled so that the per-image logit std is LOGIT_STD.
    """
    feats = feats.astype(np.float64)
    f_mean = feats.mean(axis=0)
    f_std = feats.std(axis=0)
    f_std = np.maximum(f_std, 1e-3 * np.median(f_std) + 1e-12)
    f_inv_std = 1.0 / f_std
    u = (feats - f_mean) * f_inv_std
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = w * (LOGIT_STD / (u @ w.T).std(axis=1).mean())
    return f_mean, f_inv_std, w


# --------------------------------------------------------------------------- torchvision

class Builder:
    """Accumulates nodes and initializers (torchvision names, state_dict order)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.params: dict[str, np.ndarray] = {}  # float64 until written
        self.bn_nodes: list[onnx.NodeProto] = []
        self.checkpoints: list[str] = []  # block-boundary tensors, in order

    def conv(self, name: str, x: str, cin: int, cout: int, k: int, stride: int) -> str:
        w = f"{name}.weight"
        fan_in = cin * k * k
        self.params[w] = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), (cout, cin, k, k))
        pad = k // 2
        self.nodes.append(helper.make_node(
            "Conv", [x, w], [name], name=name, kernel_shape=[k, k],
            strides=[stride, stride], pads=[pad, pad, pad, pad], dilations=[1, 1], group=1))
        return name

    def bn(self, name: str, x: str, ch: int) -> str:
        names = [f"{name}.{s}" for s in ("weight", "bias", "running_mean", "running_var")]
        self.params[names[0]] = 1.0 + 0.1 * self.rng.standard_normal(ch)
        self.params[names[1]] = 0.1 * self.rng.standard_normal(ch)
        self.params[names[2]] = np.zeros(ch)  # calibrated later
        self.params[names[3]] = np.ones(ch)  # calibrated later
        node = helper.make_node("BatchNormalization", [x, *names], [name], name=name,
                                epsilon=BN_EPS, momentum=0.9)
        self.nodes.append(node)
        self.bn_nodes.append(node)
        return name

    def op(self, op_type: str, inputs: list[str], out: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def residual(b: Builder, p: str, x: str, y: str, cin: int, cout: int, stride: int) -> str:
    """torchvision's shortcut: identity, or a strided 1x1 conv + BN when the shape
    changes; added to the block's output, then ReLU."""
    idn = x
    if stride != 1 or cin != cout:
        idn = b.conv(f"{p}.downsample.0", x, cin, cout, 1, stride)
        idn = b.bn(f"{p}.downsample.1", idn, cout)
    y = b.op("Add", [y, idn], f"{p}.add")
    return b.op("Relu", [y], f"{p}.relu")


def basic_block(b: Builder, p: str, x: str, cin: int, planes: int, stride: int) -> tuple[str, int]:
    cout = planes  # expansion 1
    y = b.conv(f"{p}.conv1", x, cin, planes, 3, stride)
    y = b.bn(f"{p}.bn1", y, planes)
    y = b.op("Relu", [y], f"{p}.relu1")
    y = b.conv(f"{p}.conv2", y, planes, planes, 3, 1)
    y = b.bn(f"{p}.bn2", y, planes)
    return residual(b, p, x, y, cin, cout, stride), cout


def bottleneck_block(b: Builder, p: str, x: str, cin: int, planes: int, stride: int) -> tuple[str, int]:
    width = planes  # groups 1, base_width 64
    cout = planes * 4
    y = b.conv(f"{p}.conv1", x, cin, width, 1, 1)
    y = b.bn(f"{p}.bn1", y, width)
    y = b.op("Relu", [y], f"{p}.relu1")
    y = b.conv(f"{p}.conv2", y, width, width, 3, stride)  # v1.5: stride on the 3x3
    y = b.bn(f"{p}.bn2", y, width)
    y = b.op("Relu", [y], f"{p}.relu2")
    y = b.conv(f"{p}.conv3", y, width, cout, 1, 1)
    y = b.bn(f"{p}.bn3", y, cout)
    return residual(b, p, x, y, cin, cout, stride), cout


def build_graph(depth: int, seed: int) -> Builder:
    kind, layers = ARCH[depth]
    block = basic_block if kind == "basic" else bottleneck_block
    b = Builder(np.random.default_rng(seed))
    x = b.conv("conv1", INPUT_NAME, 3, 64, 7, 2)
    x = b.bn("bn1", x, 64)
    x = b.op("Relu", [x], "relu")
    x = b.op("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2],
             pads=[1, 1, 1, 1])
    b.checkpoints.append(x)
    ch = 64
    for i, (planes, n_blocks) in enumerate(zip((64, 128, 256, 512), layers)):
        for j in range(n_blocks):
            stride = 2 if (i > 0 and j == 0) else 1
            x, ch = block(b, f"layer{i + 1}.{j}", x, ch, planes, stride)
            b.checkpoints.append(x)
    x = b.op("GlobalAveragePool", [x], "avgpool")
    x = b.op("Flatten", [x], FEATURES_NAME, axis=1)
    assert ch == 512 * EXPANSION[kind]
    w = "fc.weight"
    b.params[w] = b.rng.normal(0.0, np.sqrt(2.0 / ch), (NUM_CLASSES, ch))  # rescaled later
    b.params["fc.bias"] = np.zeros(NUM_CLASSES)
    b.params[FEAT_MEAN] = np.zeros(ch)  # set after calibration
    b.params[FEAT_INV_STD] = np.ones(ch)
    b.nodes += feature_norm_nodes(FEATURES_NAME) + [
        helper.make_node("Gemm", ["feat_unit", w, "fc.bias"], [OUTPUT_NAME], name="fc",
                         alpha=1.0, beta=1.0, transB=1),
    ]
    b.feature_dim = ch
    return b


def make_model(nodes, inputs, outputs, params: dict[str, np.ndarray], doc: str = "") -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "resnet", inputs, outputs,
        initializer=[numpy_helper.from_array(np.asarray(v, np.float32), k)
                     for k, v in params.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              doc_string=doc)
    model.ir_version = IR_VERSION
    return model


def run_subgraph(b: Builder, producer: dict[str, int], available: dict[str, np.ndarray],
                 target: str, threads: int) -> np.ndarray:
    """Value of `target`, computing only the nodes between `available` and it."""
    needed, feeds, inits, stack = set(), set(), set(), [target]
    while stack:
        t = stack.pop()
        if t in available:
            feeds.add(t)
        elif t in b.params:
            inits.add(t)
        elif producer[t] not in needed:
            needed.add(producer[t])
            stack.extend(i for i in b.nodes[producer[t]].input if i)
    model = make_model(
        [b.nodes[i] for i in sorted(needed)],
        [helper.make_tensor_value_info(f, TensorProto.FLOAT, list(available[f].shape))
         for f in sorted(feeds)],
        [helper.make_tensor_value_info(target, TensorProto.FLOAT, None)],
        {k: v for k, v in b.params.items() if k in inits})
    sess = session(model, threads)
    (out,) = sess.run([target], {f: available[f] for f in feeds})
    return out


def calibrate(b: Builder, seed: int, threads: int) -> None:
    producer = {n.output[0]: i for i, n in enumerate(b.nodes)}
    available = {INPUT_NAME: calibration_images(seed, CALIB_IMAGES)}
    bn_by_pos = {producer[bn.output[0]]: bn for bn in b.bn_nodes}
    boundaries = {producer[c]: c for c in b.checkpoints}
    for pos in range(len(b.nodes)):
        if pos in bn_by_pos:
            bn = bn_by_pos[pos]
            act = run_subgraph(b, producer, available, bn.input[0], threads).astype(np.float64)
            b.params[bn.input[3]] = act.mean(axis=(0, 2, 3))
            b.params[bn.input[4]] = np.maximum(act.var(axis=(0, 2, 3)), 1e-4)
        if pos in boundaries:  # every BN before it is calibrated: move the cache up
            name = boundaries[pos]
            available = {name: run_subgraph(b, producer, available, name, threads)}
    feats = run_subgraph(b, producer, available, FEATURES_NAME, threads)
    f_mean, f_inv_std, w = feature_normalisation(feats, b.params["fc.weight"])
    b.params["fc.weight"] = w
    b.params[FEAT_MEAN] = f_mean
    b.params[FEAT_INV_STD] = f_inv_std


def build_torchvision(depth: int, seed: int, threads: int) -> onnx.ModelProto:
    b = build_graph(depth, seed)
    calibrate(b, seed, threads)
    x_info = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", 3, 224, 224])
    y_info = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", NUM_CLASSES])
    model = make_model(
        b.nodes, [x_info], [y_info], b.params,
        doc=(f"Randomly initialised ResNet-{depth} (not trained; for tests/benchmarks only) "
             f"with torchvision's resnet{depth} architecture and parameter names, seed "
             f"{seed}, BN statistics and fc scale calibrated on synthetic images. Only "
             "deviation from torchvision: Sub/Mul/LpNormalization on the pooled features "
             "before fc. Input: ImageNet-normalised RGB NCHW; output: logits (no softmax)."))
    model.graph.name = f"resnet{depth}"
    model.producer_name = PRODUCER["torchvision"]
    for key, value in (("architecture", f"torchvision resnet{depth}"), ("seed", str(seed)),
                       ("trained", "false"), ("output", "logits")):
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    return model


def stats(model: onnx.ModelProto) -> dict:
    """Parameter counts by kind, and Conv/Gemm MACs for one 224x224 image."""
    count = {"trainable": 0, "bn_buffers": 0, "added": 0}
    for t in model.graph.initializer:
        n = int(np.prod(t.dims))
        if t.name in (FEAT_MEAN, FEAT_INV_STD):
            count["added"] += n
        elif t.name.endswith((".running_mean", ".running_var")):
            count["bn_buffers"] += n
        else:
            count["trainable"] += n
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in (m.graph.input[0], m.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_value = 1  # replaces dim_param "N"
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
    shapes = {vi.name: [d.dim_value for d in vi.type.tensor_type.shape.dim]
              for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    dims = {t.name: list(t.dims) for t in model.graph.initializer}
    macs = 0
    for node in model.graph.node:
        if node.op_type == "Conv":
            cout_elems = int(np.prod(shapes[node.output[0]]))
            macs += cout_elems * int(np.prod(dims[node.input[1]][1:]))  # Cin/group*kh*kw
        elif node.op_type == "Gemm":
            macs += int(np.prod(dims[node.input[1]]))  # batch 1: out x in
    count["macs"] = macs
    return count


# --------------------------------------------------------------------------- Caffe2

def caffe2_source_path() -> str:
    path = os.path.join(os.path.dirname(onnx.__file__), CAFFE2_SOURCE_REL)
    if not os.path.isfile(path):
        sys.exit(f"error: {path} not found; is the PyPI 'onnx' package installed?")
    return path


def build_caffe2(seed: int, threads: int) -> tuple[onnx.ModelProto, dict]:
    src = onnx.load(caffe2_source_path())
    graph = src.graph
    inits = {t.name: t for t in graph.initializer}

    fills = {}  # tensor name -> shape, for every ConstantOfShape output
    for node in graph.node:
        if node.op_type == "ConstantOfShape":
            fills[node.output[0]] = tuple(
                int(d) for d in numpy_helper.to_array(inits[node.input[0]])
            )
    ends_in_softmax = graph.node[-1].op_type == "Softmax"

    # --- random parameters, drawn in node order ------------------------------------
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    bn_nodes = []
    for node in graph.node:
        if node.op_type == "Conv":
            name = node.input[1]
            shape = fills[name]
            fan_in = int(np.prod(shape[1:]))
            params[name] = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            if len(node.input) > 2 and node.input[2]:
                raise SystemExit(f"unexpected conv bias on {node.name}")
        elif node.op_type == "BatchNormalization":
            bn_nodes.append(node)
            scale, bias, mean, var = node.input[1:5]
            n_ch = (fills.get(scale) or numpy_helper.to_array(inits[scale]).shape)[0]
            params[scale] = 1.0 + 0.1 * rng.standard_normal(n_ch)
            params[bias] = 0.1 * rng.standard_normal(n_ch)
            params[mean] = np.zeros(n_ch)  # calibrated below
            params[var] = np.ones(n_ch)  # calibrated below
        elif node.op_type == "Gemm":
            w_name, b_name = node.input[1], node.input[2]
            shape = fills[w_name]
            trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
            fan_in = shape[1] if trans_b else shape[0]
            params[w_name] = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
            params[b_name] = np.zeros(fills[b_name])  # calibrated below
            gemm = node
    missing = set(fills) - set(params)
    if missing:
        raise SystemExit(f"unhandled ConstantOfShape outputs: {sorted(missing)}")

    # --- rebuild the graph ---------------------------------------------------------
    model = onnx.ModelProto()
    model.CopyFrom(src)
    g = model.graph
    keep_nodes = [n for n in g.node if n.op_type != "ConstantOfShape"]
    del g.node[:]
    g.node.extend(keep_nodes)
    used = {name for n in keep_nodes for name in n.input}
    new_inits = []
    for t in src.graph.initializer:
        if t.name not in used or t.name in params:
            continue
        if t.name == CAFFE2_RESHAPE_CONST:
            old = numpy_helper.to_array(t).tolist()
            if old != [1, CAFFE2_FEATURE_DIM]:
                raise SystemExit(f"unexpected reshape target {old}")
            t = numpy_helper.from_array(np.array([-1, CAFFE2_FEATURE_DIM], np.int64), t.name)
        new_inits.append(t)
    for name, value in params.items():
        new_inits.append(numpy_helper.from_array(value.astype(np.float32), name))
    del g.initializer[:]
    g.initializer.extend(new_inits)
    data_in = next(i for i in src.graph.input if i.name == CAFFE2_INPUT_NAME)
    del g.input[:]
    g.input.extend([data_in])
    g.input[0].type.tensor_type.shape.dim[0].ClearField("dim_value")
    g.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    g.output[0].type.tensor_type.shape.dim[0].ClearField("dim_value")
    g.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.ir_version = 4

    # --- batch-norm calibration, layer by layer -------------------------------------
    # A calibration copy exposes the BN statistics as (overridable) graph inputs and
    # every BN input as an extra output, so one session serves all 53 layers.
    calib = onnx.ModelProto()
    calib.CopyFrom(model)
    stat_names = [n for bn in bn_nodes for n in bn.input[3:5]]
    for bn in bn_nodes:
        for name in bn.input[3:5]:
            calib.graph.input.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, [len(params[name])])
            )
        calib.graph.output.append(
            helper.make_tensor_value_info(bn.input[0], TensorProto.FLOAT, None)
        )
    calib.graph.output.append(
        helper.make_tensor_value_info(CAFFE2_FEATURES_NAME, TensorProto.FLOAT, None)
    )
    sess = session(calib, threads)
    x = calibration_images(seed, CALIB_IMAGES)

    def feeds():
        f = {CAFFE2_INPUT_NAME: x}
        f.update({n: params[n].astype(np.float32) for n in stat_names})
        return f

    for bn in bn_nodes:
        (act,) = sess.run([bn.input[0]], feeds())
        act = act.astype(np.float64)
        params[bn.input[3]] = act.mean(axis=(0, 2, 3))
        params[bn.input[4]] = np.maximum(act.var(axis=(0, 2, 3)), 1e-4)
    (feats,) = sess.run([CAFFE2_FEATURES_NAME], feeds())
    del sess

    # --- feature normalisation and classifier calibration --------------------------
    w_name, b_name = gemm.input[1], gemm.input[2]
    f_mean, f_inv_std, w = feature_normalisation(feats, params[w_name])  # transB=1
    params[w_name] = w
    params[b_name] = np.zeros(w.shape[0])
    params[FEAT_MEAN] = f_mean
    params[FEAT_INV_STD] = f_inv_std
    g.initializer.extend([
        numpy_helper.from_array(np.zeros(CAFFE2_FEATURE_DIM, np.float32), FEAT_MEAN),
        numpy_helper.from_array(np.zeros(CAFFE2_FEATURE_DIM, np.float32), FEAT_INV_STD),
    ])
    g_gemm_pos = next(i for i, n in enumerate(g.node) if n.name == gemm.name)
    g_gemm = g.node[g_gemm_pos]
    assert g_gemm.input[0] == CAFFE2_FEATURES_NAME
    g_gemm.input[0] = "feat_unit"
    nodes = list(g.node)
    nodes[g_gemm_pos:g_gemm_pos] = feature_norm_nodes(CAFFE2_FEATURES_NAME)
    rebuilt = [onnx.NodeProto() for _ in nodes]
    for dst, src_node in zip(rebuilt, nodes):
        dst.CopyFrom(src_node)
    del g.node[:]
    g.node.extend(rebuilt)

    for t in g.initializer:
        if t.name in params:
            t.CopyFrom(numpy_helper.from_array(params[t.name].astype(np.float32), t.name))

    model.producer_name = PRODUCER["caffe2"]
    model.doc_string = (
        "Randomly initialised ResNet-50 (not trained; for tests/benchmarks only), "
        f"from onnx's light_resnet50.onnx, seed {seed}, BN and fc calibrated on "
        "synthetic images, L2-normalised features before the fc, dynamic batch N, "
        "output = softmax probabilities."
    )
    del model.metadata_props[:]
    source = "onnx/" + CAFFE2_SOURCE_REL.replace(os.sep, "/")
    for key, value in (("seed", str(seed)), ("source", source), ("trained", "false")):
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    return model, {"ends_in_softmax": ends_in_softmax, "fills": len(fills),
                   "bn_layers": len(bn_nodes)}


# --------------------------------------------------------------------------- checks

def verify(path: str, seed: int, threads: int, caffe2: bool) -> str:
    """Checks the written model; returns a one-line summary of its scores."""
    in_name, out_name = ((CAFFE2_INPUT_NAME, CAFFE2_OUTPUT_NAME) if caffe2
                         else (INPUT_NAME, OUTPUT_NAME))
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    sess = session(model, threads)
    (inp,) = sess.get_inputs()
    (out,) = sess.get_outputs()
    assert inp.name == in_name and inp.shape == ["N", 3, 224, 224], inp
    assert out.name == out_name and out.shape == ["N", NUM_CLASSES], out
    x = calibration_images(seed + 1, 3)  # fresh images, not the calibration set
    (y3,) = sess.run(None, {in_name: x})
    (y1,) = sess.run(None, {in_name: x[:1]})
    assert y3.shape == (3, NUM_CLASSES) and y1.shape == (1, NUM_CLASSES)
    atol = 1e-6 if caffe2 else 1e-4  # probabilities / logits
    assert np.allclose(y1[0], y3[0], rtol=1e-4, atol=atol), "batch 1 != row 0 of batch 3"
    z = y3.astype(np.float64)
    if caffe2:  # softmax probabilities
        assert np.all(z >= 0) and np.allclose(z.sum(axis=1), 1.0, atol=1e-4)
        p = z
        logp = np.log(z)
    else:  # logits
        logp = z - z.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        p = np.exp(logp)
    assert p.min() > 1e-30, f"softmax probability {p.min()} too small"
    top5 = [tuple(int(i) for i in np.argsort(-row, kind="stable")[:5]) for row in z]
    assert len(set(top5)) == 3, f"top-5 not distinct across inputs: {top5}"
    srt = np.sort(logp, axis=1)[:, ::-1]
    min_gap = float((srt[:, :5] - srt[:, 1:6]).min())
    assert min_gap > 1e-4, f"near-tie among top-5 (log-prob gap {min_gap})"
    return (f"logit std {logp.std(axis=1).mean():.2f}, "
            f"top1 p={p.max(1).min():.3f}..{p.max(1).max():.3f}, "
            f"top5 mass={np.sort(p, 1)[:, -5:].sum(1).mean():.3f}, min p={p.min():.1e}, "
            f"min top-6 log-prob gap={min_gap:.3f}, top5 {[list(t) for t in top5]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", type=int, required=True, choices=sorted(ARCH))
    ap.add_argument("--caffe2", action="store_true",
                    help="ResNet-50 from the onnx package's Caffe2 light_resnet50.onnx "
                         "(input gpu_0/data_0, softmax output; models/resnet50-random.onnx) "
                         "instead of torchvision's graph; needs --depth 50")
    ap.add_argument("out", help="output .onnx path")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--threads", type=int, default=1,
                    help="ONNX Runtime intra-op threads for calibration (default 1)")
    args = ap.parse_args()
    if args.caffe2 and args.depth != 50:
        ap.error("--caffe2 is a ResNet-50: use it with --depth 50")

    t0 = time.perf_counter()
    if args.caffe2:
        model, info = build_caffe2(args.seed, args.threads)
    else:
        model = build_torchvision(args.depth, args.seed, args.threads)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp"
    onnx.save(model, tmp)
    os.replace(tmp, args.out)
    t_build = time.perf_counter() - t0
    summary = verify(args.out, args.seed, args.threads, args.caffe2)
    size = f"{os.path.getsize(args.out) / 1e6:.1f} MB"
    if args.caffe2:
        print(f"wrote {args.out} ({size}) in {t_build:.0f} s: ResNet-50 (Caffe2, from onnx's "
              f"light_resnet50.onnx) seed {args.seed}, {info['fills']} fills replaced, "
              f"{info['bn_layers']} BN calibrated, input {CAFFE2_INPUT_NAME}[N,3,224,224] -> "
              f"{CAFFE2_OUTPUT_NAME}[N,{NUM_CLASSES}] "
              f"({'softmax probs' if info['ends_in_softmax'] else 'logits'})")
        print(f"verified: full_check OK, batch 1 == row 0 of batch 3, {summary}")
        return
    s = stats(model)
    tv = TORCHVISION_PARAMS[args.depth]
    total = s["trainable"] + s["bn_buffers"] + s["added"]
    print(f"wrote {args.out} ({size}) in {t_build:.0f} s: "
          f"ResNet-{args.depth} (torchvision architecture) seed {args.seed}, "
          f"input {INPUT_NAME}[N,3,224,224] -> {OUTPUT_NAME}[N,{NUM_CLASSES}]")
    print(f"depth {args.depth}: parameters {s['trainable']:,} "
          f"({'= ' if s['trainable'] == tv else '!= '}torchvision {tv:,}); "
          f"+ BN running stats {s['bn_buffers']:,} + added feature-normalisation "
          f"constants {s['added']:,} = {total:,} stored floats")
    print(f"depth {args.depth}: Conv+Gemm multiply-accumulates at 224x224: "
          f"{s['macs'] / 1e9:.3f} GMACs (torchvision's 'GFLOPS' {TORCHVISION_GFLOPS[args.depth]}) "
          f"= {2 * s['macs'] / 1e9:.2f} GFLOPs counting multiply and add separately")
    print(f"verified: full_check OK, batch 1 == row 0 of batch 3, {summary}")
    if s["trainable"] != tv:
        sys.exit(f"error: parameter count {s['trainable']} != torchvision {tv}")


if __name__ == "__main__":
    main()
