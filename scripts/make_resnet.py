#!/usr/bin/env python3
"""Build a discriminative, randomly initialised torchvision-architecture ResNet as ONNX.

Usage::

    make_resnet.py --depth {18,34,50,101,152} OUT.onnx [--seed 20261126] [--threads 1]

Graph
    Built from scratch with ``onnx.helper`` (opset 17, IR version 8), with exactly
    the layers of ``torchvision.models.resnet{depth}`` (v1.5):

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

    BatchNormalization uses epsilon 1e-5 (torchvision's default).  Initializers
    carry torchvision's ``state_dict`` names (``conv1.weight``,
    ``layer1.0.bn1.running_mean``, ``layer2.0.downsample.0.weight``, ``fc.bias``...),
    in ``state_dict`` order; ``num_batches_tracked`` is not stored.  Input
    ``input`` float32 [N,3,224,224] (ImageNet-normalised RGB, NCHW), output
    ``logits`` float32 [N,1000] (no Softmax), N a symbolic dim.

Only deviation from torchvision's graph
    Three nodes between Flatten and ``fc``: ``Sub`` (``feat_mean``), ``Mul``
    (``feat_inv_std``) and ``LpNormalization`` (p=2, axis=1), exactly as in
    ``make_resnet50.py`` (see its docstring, point 3): they standardise the pooled
    features with statistics measured on the calibration images and put them on the
    unit sphere, so the logit spread does not grow with a frame's contrast and the
    softmax never degenerates into a one-hot with exact zeros.  The fc weight is
    scaled so that the per-image std of the logits over the 1000 classes is about
    ``LOGIT_STD`` (4.0).  These 2 x C constants are not counted as parameters.

Weights (seeded, not trained)
    ``numpy.random.default_rng(seed)``, drawn in ``state_dict`` order: conv and fc
    weights He-normal (std = sqrt(2/fan_in)), BN scale 1 + 0.1*N(0,1), BN bias
    0.1*N(0,1), fc bias 0.  Batch-norm running mean / variance are *calibrated*, as
    in ``make_resnet50.py`` (point 2): in topological order each BN gets the
    per-channel mean / variance of its input measured with ONNX Runtime (1 thread
    by default) on ``make_resnet50.calibration_images(seed, 16)``, the earlier BNs
    already calibrated.  To keep ResNet-152 affordable the network is not rerun
    from the input for every BN: the activations at each block boundary are cached
    and only the part of the graph between the last boundary and the BN is run.

Output
    The script checks the model (``onnx.checker`` full_check, ONNX Runtime at batch
    1 and 3 on fresh synthetic images: row 0 of batch 3 equals batch 1, the three
    top-5s are distinct, min softmax probability > 1e-30) and prints the depth, the
    parameter count (the torchvision-comparable count of trainable parameters, and
    the total including BN running statistics and the added normalisation
    constants), and the multiply-accumulates of the Conv and Gemm nodes for one
    224x224 image (GMACs, the unit of torchvision's "GFLOPS" column) and GFLOPs =
    2 x GMACs.  Same seed, onnx, onnxruntime and CPU kind -> byte-identical file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no scripts/__pycache__ (not gitignored)
import make_resnet50 as base  # noqa: E402  (calibration_images, session, constants)

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; readable by older runtimes
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
FEATURES_NAME = "features"  # Flatten output [N, C]
NUM_CLASSES = 1000
BN_EPS = 1e-5
LOGIT_STD = base.LOGIT_STD
CALIB_IMAGES = base.CALIB_IMAGES
FEAT_MEAN = base.FEAT_MEAN
FEAT_INV_STD = base.FEAT_INV_STD

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
    b.nodes += [
        helper.make_node("Sub", [FEATURES_NAME, FEAT_MEAN], ["feat_centered"],
                         name="feat_center"),
        helper.make_node("Mul", ["feat_centered", FEAT_INV_STD], ["feat_standardized"],
                         name="feat_standardize"),
        helper.make_node("LpNormalization", ["feat_standardized"], ["feat_unit"],
                         name="feat_l2normalize", axis=1, p=2),
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
    sess = base.session(model, threads)
    (out,) = sess.run([target], {f: available[f] for f in feeds})
    return out


def calibrate(b: Builder, seed: int, threads: int) -> None:
    producer = {n.output[0]: i for i, n in enumerate(b.nodes)}
    available = {INPUT_NAME: base.calibration_images(seed, CALIB_IMAGES)}
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
    feats = run_subgraph(b, producer, available, FEATURES_NAME, threads).astype(np.float64)

    # feature normalisation + classifier scale, as in make_resnet50.py
    f_mean = feats.mean(axis=0)
    f_std = feats.std(axis=0)
    f_std = np.maximum(f_std, 1e-3 * np.median(f_std) + 1e-12)
    f_inv_std = 1.0 / f_std
    u = (feats - f_mean) * f_inv_std
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = b.params["fc.weight"]
    b.params["fc.weight"] = w * (LOGIT_STD / (u @ w.T).std(axis=1).mean())
    b.params[FEAT_MEAN] = f_mean
    b.params[FEAT_INV_STD] = f_inv_std


def build(depth: int, seed: int, threads: int) -> onnx.ModelProto:
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
    model.producer_name = "streamclassd scripts/make_resnet.py"
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


def verify(path: str, seed: int, threads: int) -> str:
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    sess = base.session(model, threads)
    (inp,) = sess.get_inputs()
    (out,) = sess.get_outputs()
    assert inp.name == INPUT_NAME and inp.shape == ["N", 3, 224, 224], inp
    assert out.name == OUTPUT_NAME and out.shape == ["N", NUM_CLASSES], out
    x = base.calibration_images(seed + 1, 3)  # fresh images, not the calibration set
    (y3,) = sess.run(None, {INPUT_NAME: x})
    (y1,) = sess.run(None, {INPUT_NAME: x[:1]})
    assert y3.shape == (3, NUM_CLASSES) and y1.shape == (1, NUM_CLASSES)
    assert np.allclose(y1[0], y3[0], rtol=1e-4, atol=1e-4), "batch 1 != row 0 of batch 3"
    z = y3.astype(np.float64)
    logp = z - z.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    assert p.min() > 1e-30, f"softmax probability {p.min()} too small"
    top5 = [tuple(int(i) for i in np.argsort(-row, kind="stable")[:5]) for row in z]
    assert len(set(top5)) == 3, f"top-5 not distinct across inputs: {top5}"
    srt = np.sort(z, axis=1)[:, ::-1]
    min_gap = float((srt[:, :5] - srt[:, 1:6]).min())
    assert min_gap > 1e-4, f"near-tie among top-5 (logit gap {min_gap})"
    return (f"logit std {z.std(axis=1).mean():.2f}, top1 p={p.max(1).min():.3f}..{p.max(1).max():.3f}, "
            f"min p={p.min():.1e}, min top-6 logit gap={min_gap:.3f}, "
            f"top5 {[list(t) for t in top5]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", type=int, required=True, choices=sorted(ARCH))
    ap.add_argument("out", help="output .onnx path")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--threads", type=int, default=1,
                    help="ONNX Runtime intra-op threads for calibration (default 1)")
    args = ap.parse_args()

    t0 = time.perf_counter()
    model = build(args.depth, args.seed, args.threads)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp"
    onnx.save(model, tmp)
    os.replace(tmp, args.out)
    t_build = time.perf_counter() - t0
    summary = verify(args.out, args.seed, args.threads)
    s = stats(model)
    tv = TORCHVISION_PARAMS[args.depth]
    total = s["trainable"] + s["bn_buffers"] + s["added"]
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB) in {t_build:.0f} s: "
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
