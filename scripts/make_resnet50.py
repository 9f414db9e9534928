#!/usr/bin/env python3
"""Build a discriminative, randomly initialised ResNet-50 ONNX model for tests.

Usage::

    make_resnet50.py OUT.onnx [--seed 20261126] [--threads 1]

Source
    ``onnx/backend/test/data/light/light_resnet50.onnx``, shipped inside the PyPI
    ``onnx`` package (located through ``onnx.__file__``).  It is a Caffe2-exported
    ResNet-50 (opset 9, input ``gpu_0/data_0`` [1,3,224,224], output
    ``gpu_0/softmax_1`` [1,1000], last op Softmax) whose 239 weight tensors are
    ``ConstantOfShape`` fills of 0.02, so every output probability is exactly 0.001
    whatever the input.  Its conv1/res2 batch-norm parameters (28 tensors) are real
    trained values, but they belong to weights that no longer exist.

What this script changes
    1. Every ``ConstantOfShape`` weight fill becomes a float32 initializer of the same
       shape drawn from ``numpy.random.default_rng(seed)`` (drawn in graph-node order,
       so the result is a pure function of the seed):

       * Conv weights and the final Gemm (fc) weight: He-normal, std = sqrt(2/fan_in).
       * BatchNormalization scale: 1 + 0.1*N(0,1); bias: 0.1*N(0,1).
       * BatchNormalization running mean / variance: *calibrated*, see 2.
       * Gemm bias: zero (the features are centred before the fc, see 3).

       The real conv1/res2 batch-norm tensors are redrawn the same way, so that all
       53 batch-norm layers are treated alike.
    2. Batch-norm calibration.  With random weights and fixed "mean 0, var 1" running
       statistics, every channel carries a large input-independent offset (post-ReLU
       inputs are all positive), activations double at every residual block, and the
       final 2048-d features of any two images have cosine similarity > 0.9997: the
       classifier then returns the same top-5 for everything.  So, layer by layer in
       topological order, each BN's running mean/var is set to the per-channel
       mean/variance of its input measured (with ONNX Runtime, 1 thread) on a small
       deterministic set of synthetic calibration images derived from the seed.  This
       is exactly what training would make those statistics; it keeps every BN output
       at roughly zero mean / unit variance and makes the network input-sensitive.
    3. Feature normalisation and classifier scale.  Three small nodes are inserted
       between the Reshape and the fc Gemm: ``Sub`` (minus the per-channel mean of
       the 2048-d pooled features over the calibration set, initializer
       ``feat_mean``), ``Mul`` (times 1/std, ``feat_inv_std``) and
       ``LpNormalization`` (p=2, axis=1).  A ReLU network with fixed batch-norm is
       close to positively homogeneous, so without the L2 normalisation a frame with
       more contrast or high-frequency detail than the calibration images (e.g.
       ``ffmpeg -f lavfi -i cellauto``) gets logits 20-100x larger and a one-hot
       softmax with probabilities that underflow to exactly 0 (ties).  With it, the
       logit spread is the same for every input: the He-normal fc weight is scaled by
       one scalar so that the per-image std of the logits over the 1000 classes is
       ``LOGIT_STD`` (4.0).  Top-1 probabilities then range over roughly 0.1-0.95
       and the top-5 logits are well separated (typically by tenths of a unit).
    4. Dynamic batch: input ``gpu_0/data_0`` becomes [N,3,224,224] and output
       ``gpu_0/softmax_1`` [N,1000] with the symbolic dim "N"; the Reshape target
       before the fc (initializer ``OC2_DUMMY_1``) changes from [1,2048] to [-1,2048].
    5. Cleanup: the ConstantOfShape nodes, their ``__SHAPE`` initializers and one
       unused initializer are dropped; IR version 3 -> 4 so that initializers no longer
       have to be listed as graph inputs (the model's only input is ``gpu_0/data_0``).
       The final Softmax is kept, so the output is a probability distribution.

After writing, the model is checked with ``onnx.checker`` and run with ONNX Runtime at
batch 1 and batch 3 on distinct inputs; a one-line summary is printed.  The whole run
takes about 45 s on one core.  The calibration uses ONNX Runtime's own arithmetic, so
the bytes of the model are reproducible for a given onnx + onnxruntime version and
CPU kind (two runs here gave identical files); other versions may differ in the last
bits of the calibrated statistics, so compare a runtime against reference outputs
(tests/reference/classify.py) computed from the same model file, not a stored one.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

SOURCE_REL = os.path.join("backend", "test", "data", "light", "light_resnet50.onnx")
INPUT_NAME = "gpu_0/data_0"
OUTPUT_NAME = "gpu_0/softmax_1"
FEATURES_NAME = "r173"  # output of the Reshape to [N, 2048], input of the fc Gemm
RESHAPE_CONST = "OC2_DUMMY_1"
FEATURE_DIM = 2048
LOGIT_STD = 4.0
FEAT_MEAN = "feat_mean"
FEAT_INV_STD = "feat_inv_std"
CALIB_IMAGES = 16
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def source_model_path() -> str:
    path = os.path.join(os.path.dirname(onnx.__file__), SOURCE_REL)
    if not os.path.isfile(path):
        sys.exit(f"error: {path} not found; is the PyPI 'onnx' package installed?")
    return path


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


def build(seed: int, threads: int) -> tuple[onnx.ModelProto, dict]:
    src = onnx.load(source_model_path())
    graph = src.graph
    inits = {t.name: t for t in graph.initializer}
    consumers = collections.defaultdict(list)
    for node in graph.node:
        for idx, name in enumerate(node.input):
            consumers[name].append((node, idx))

    fills = {}  # tensor name -> shape, for every ConstantOfShape output
    for node in graph.node:
        if node.op_type == "ConstantOfShape":
            fills[node.output[0]] = tuple(
                int(d) for d in numpy_helper.to_array(inits[node.input[0]])
            )
    ends_in_softmax = graph.node[-1].op_type == "Softmax"

    # --- 1. random parameters, drawn in node order --------------------------------
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
        if t.name == RESHAPE_CONST:
            old = numpy_helper.to_array(t).tolist()
            if old != [1, FEATURE_DIM]:
                raise SystemExit(f"unexpected reshape target {old}")
            t = numpy_helper.from_array(np.array([-1, FEATURE_DIM], np.int64), t.name)
        new_inits.append(t)
    for name, value in params.items():
        new_inits.append(numpy_helper.from_array(value.astype(np.float32), name))
    del g.initializer[:]
    g.initializer.extend(new_inits)
    data_in = next(i for i in src.graph.input if i.name == INPUT_NAME)
    del g.input[:]
    g.input.extend([data_in])
    g.input[0].type.tensor_type.shape.dim[0].ClearField("dim_value")
    g.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    g.output[0].type.tensor_type.shape.dim[0].ClearField("dim_value")
    g.output[0].type.tensor_type.shape.dim[0].dim_param = "N"
    model.ir_version = 4

    # --- 2. batch-norm calibration, layer by layer ----------------------------------
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
        helper.make_tensor_value_info(FEATURES_NAME, TensorProto.FLOAT, None)
    )
    sess = session(calib, threads)
    x = calibration_images(seed, CALIB_IMAGES)

    def feeds():
        f = {INPUT_NAME: x}
        f.update({n: params[n].astype(np.float32) for n in stat_names})
        return f

    for bn in bn_nodes:
        (act,) = sess.run([bn.input[0]], feeds())
        act = act.astype(np.float64)
        params[bn.input[3]] = act.mean(axis=(0, 2, 3))
        params[bn.input[4]] = np.maximum(act.var(axis=(0, 2, 3)), 1e-4)
    (feats,) = sess.run([FEATURES_NAME], feeds())
    del sess

    # --- 3. feature normalisation and classifier calibration ----------------------
    # Inserted before the fc: u = l2normalize((features - mean) / std), so the logit
    # magnitude no longer depends on how much contrast / high-frequency energy a
    # frame has (a ReLU network with fixed BN is close to positively homogeneous, so
    # without this a noisy frame gives logits 20x larger and a one-hot softmax).
    feats = feats.astype(np.float64)
    f_mean = feats.mean(axis=0)
    f_std = feats.std(axis=0)
    f_std = np.maximum(f_std, 1e-3 * np.median(f_std) + 1e-12)
    f_inv_std = 1.0 / f_std
    w_name, b_name = gemm.input[1], gemm.input[2]
    u = (feats - f_mean) * f_inv_std
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    w = params[w_name]  # [1000, 2048], transB=1
    w = w * (LOGIT_STD / (u @ w.T).std(axis=1).mean())
    params[w_name] = w
    params[b_name] = np.zeros(w.shape[0])
    params[FEAT_MEAN] = f_mean
    params[FEAT_INV_STD] = f_inv_std
    g.initializer.extend([
        numpy_helper.from_array(np.zeros(FEATURE_DIM, np.float32), FEAT_MEAN),
        numpy_helper.from_array(np.zeros(FEATURE_DIM, np.float32), FEAT_INV_STD),
    ])
    g_gemm_pos = next(i for i, n in enumerate(g.node) if n.name == gemm.name)
    g_gemm = g.node[g_gemm_pos]
    assert g_gemm.input[0] == FEATURES_NAME
    norm_nodes = [
        helper.make_node("Sub", [FEATURES_NAME, FEAT_MEAN], ["feat_centered"],
                         name="feat_center"),
        helper.make_node("Mul", ["feat_centered", FEAT_INV_STD], ["feat_standardized"],
                         name="feat_standardize"),
        helper.make_node("LpNormalization", ["feat_standardized"], ["feat_unit"],
                         name="feat_l2normalize", axis=1, p=2),
    ]
    g_gemm.input[0] = "feat_unit"
    nodes = list(g.node)
    nodes[g_gemm_pos:g_gemm_pos] = norm_nodes
    rebuilt = [onnx.NodeProto() for _ in nodes]
    for dst, src_node in zip(rebuilt, nodes):
        dst.CopyFrom(src_node)
    del g.node[:]
    g.node.extend(rebuilt)

    for t in g.initializer:
        if t.name in params:
            t.CopyFrom(numpy_helper.from_array(params[t.name].astype(np.float32), t.name))

    model.producer_name = "streamclassd scripts/make_resnet50.py"
    model.doc_string = (
        "Randomly initialised ResNet-50 (not trained; for tests/benchmarks only), "
        f"from onnx's light_resnet50.onnx, seed {seed}, BN and fc calibrated on "
        "synthetic images, L2-normalised features before the fc, dynamic batch N, "
        "output = softmax probabilities."
    )
    del model.metadata_props[:]
    for key, value in (("seed", str(seed)), ("source", "onnx/" + SOURCE_REL.replace(os.sep, "/")),
                       ("trained", "false")):
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    return model, {"ends_in_softmax": ends_in_softmax, "fills": len(fills),
                   "bn_layers": len(bn_nodes)}


def verify(path: str, seed: int, threads: int) -> str:
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    sess = session(model, threads)
    (inp,) = sess.get_inputs()
    (out,) = sess.get_outputs()
    assert inp.name == INPUT_NAME and inp.shape == ["N", 3, 224, 224], inp
    assert out.name == OUTPUT_NAME and out.shape == ["N", 1000], out
    # fresh inputs, not the calibration images: a different sub-seed
    x = calibration_images(seed + 1, 3)
    (p3,) = sess.run(None, {INPUT_NAME: x})
    (p1,) = sess.run(None, {INPUT_NAME: x[:1]})
    assert p3.shape == (3, 1000) and p1.shape == (1, 1000)
    assert np.allclose(p1[0], p3[0], rtol=1e-4, atol=1e-6), "batch 1 != row 0 of batch 3"
    assert np.all(p3 >= 0) and np.allclose(p3.sum(axis=1), 1.0, atol=1e-4)
    top5 = [tuple(np.argsort(-row, kind="stable")[:5]) for row in p3]
    assert len(set(top5)) == 3, f"top-5 not distinct across inputs: {top5}"
    logp = np.log(p3.astype(np.float64))
    srt = np.sort(logp, axis=1)[:, ::-1]
    min_gap = float((srt[:, :5] - srt[:, 1:6]).min())
    assert min_gap > 1e-4, f"near-tie among top-5 (log-prob gap {min_gap})"
    return (f"top1 p={p3.max(axis=1).min():.3f}..{p3.max(axis=1).max():.3f}, "
            f"top5 mass={np.sort(p3, 1)[:, -5:].sum(1).mean():.3f}, "
            f"min top-6 log-prob gap={min_gap:.3f}, top5 {[list(map(int, t)) for t in top5]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output .onnx path")
    ap.add_argument("--seed", type=int, default=20261126)
    ap.add_argument("--threads", type=int, default=1,
                    help="ONNX Runtime intra-op threads for calibration (default 1)")
    args = ap.parse_args()

    model, info = build(args.seed, args.threads)
    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp"
    onnx.save(model, tmp)
    os.replace(tmp, args.out)
    summary = verify(args.out, args.seed, args.threads)
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB): ResNet-50 seed "
          f"{args.seed}, {info['fills']} fills replaced, {info['bn_layers']} BN calibrated, "
          f"input {INPUT_NAME}[N,3,224,224] -> {OUTPUT_NAME}[N,1000] "
          f"({'softmax probs' if info['ends_in_softmax'] else 'logits'}); batch 1+3 OK; {summary}")


if __name__ == "__main__":
    main()
