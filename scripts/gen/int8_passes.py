"""Graph passes of scripts/gen/quantize_int8.py around ONNX Runtime's ``quantize_static``.

``weight_bias_shift``: bias correction. Rounding a layer's weights to 8 bits moves the mean
of its output: for a Conv, output channel ``o`` shifts by ``sum((Wq - W)[o] * E[x])``,
with ``E[x]`` the per-channel mean of the layer's input (taken as that mean everywhere,
padding included), and the shift accumulates over the blocks. The pass measures
``E[x]`` on the calibration frames with the float model, reads ``Wq`` from a first
quantization (the weights ONNX Runtime actually wrote), and returns a float model whose
biases are lowered by the shift; quantizing that model gives layers whose outputs have
the float model's means (Nagel et al., "Data-Free Quantization Through Weight
Equalization and Bias Correction", 2019, the empirical variant).

``keep_float``: the nodes named stay float *at run time*. ONNX Runtime's graph
optimizer (``WeightBiasQuantization``, basic level) rewrites a float Conv/Gemm whose
input comes from a DequantizeLinear and whose output goes to a QuantizeLinear: it
quantizes the float weights per tensor (one scale for all channels: far worse than the
per-channel weights the quantizer would have written). It only does so when the bias is
an initializer, so the pass feeds each kept node's bias through a DequantizeLinear of an
int32 copy (scale ``max|b| / 2**30``: within 1e-9 of the float bias).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

LAYERS = ("Conv", "Gemm")


def _dequantized(q: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Float value of every DequantizeLinear output of a constant, by output name."""
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    out = {}
    for n in q.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits:
            continue
        x = inits[n.input[0]].astype(np.float64)
        scale = inits[n.input[1]].astype(np.float64)
        zp = inits[n.input[2]].astype(np.float64) if len(n.input) > 2 and n.input[2] else 0.0
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if np.ndim(scale) == 1 and x.ndim > 1:
            shape = [1] * x.ndim
            shape[axis] = -1
            scale = scale.reshape(shape)
            zp = np.reshape(zp, shape) if np.ndim(zp) == 1 else zp
        out[n.output[0]] = (x - zp) * scale
    return out


def _input_means(model_path: str, input_name: str, tensors: list, names: list[str]) -> dict:
    """Per-channel mean (axis 1) of each tensor in `names` over the frames, float model."""
    m = onnx.load(model_path)
    have = {o.name for o in m.graph.output}
    inner = [n for n in names if n != input_name]
    for n in inner:
        if n not in have:
            m.graph.output.append(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    sums: dict[str, np.ndarray] = {}
    for x in tensors:
        got = dict(zip(inner, sess.run(inner, {input_name: x}))) if inner else {}
        got[input_name] = x
        for n in names:
            a = got[n]
            v = a.mean(axis=tuple(i for i in range(a.ndim) if i != 1)).astype(np.float64)
            sums[n] = sums.get(n, 0) + v
    return {n: s / len(tensors) for n, s in sums.items()}


def _shift(node: onnx.NodeProto, err: np.ndarray, mean: np.ndarray) -> np.ndarray | None:
    """Output mean shift of `node` caused by weight error `err`, for input mean `mean`."""
    attrs = {a.name: a for a in node.attribute}
    if node.op_type == "Conv":
        groups = attrs["group"].i if "group" in attrs else 1
        out_ch, in_per_group = err.shape[0], err.shape[1]
        e = err.reshape(groups, out_ch // groups, in_per_group, -1).sum(axis=3)
        mu = mean.reshape(groups, in_per_group)
        return np.einsum("goi,gi->go", e, mu).reshape(out_ch)
    trans_a = attrs["transA"].i if "transA" in attrs else 0
    alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
    if trans_a or err.ndim != 2:
        return None
    trans_b = attrs["transB"].i if "transB" in attrs else 0
    return alpha * (err @ mean if trans_b else mean @ err)


def weight_bias_shift(float_path: str, quant_path: str, out_path: str, input_name: str,
                      tensors: list, skip: set[str]) -> int:
    """Writes `float_path` with each quantized Conv/Gemm's bias lowered by the shift its
    weight rounding in `quant_path` causes (nodes in `skip` untouched); returns how many
    layers were corrected."""
    model = onnx.load(float_path)
    q = onnx.load(quant_path)
    deq = _dequantized(q)
    qnodes = {n.name: n for n in q.graph.node}
    inits = {i.name: i for i in model.graph.initializer}
    layers = []
    for n in model.graph.node:
        if n.op_type not in LAYERS or n.name in skip or n.name not in qnodes:
            continue
        w_deq = qnodes[n.name].input[1]
        if n.input[1] not in inits or w_deq not in deq:
            continue
        layers.append((n, w_deq))
    means = _input_means(float_path, input_name, tensors,
                         sorted({n.input[0] for n, _ in layers}))
    done = 0
    for n, w_deq in layers:
        w = numpy_helper.to_array(inits[n.input[1]]).astype(np.float64)
        shift = _shift(n, deq[w_deq] - w, means[n.input[0]])
        if shift is None:
            continue
        if len(n.input) > 2 and n.input[2] in inits:
            b = inits[n.input[2]]
            value = numpy_helper.to_array(b).astype(np.float64) - shift
            b.CopyFrom(numpy_helper.from_array(value.astype(np.float32), b.name))
        elif len(n.input) < 3 or not n.input[2]:
            name = f"{n.name}_bias_corrected"
            model.graph.initializer.append(
                numpy_helper.from_array((-shift).astype(np.float32), name))
            del n.input[2:]
            n.input.append(name)
        else:
            continue
        done += 1
    onnx.save(model, out_path)
    return done


def keep_float(path: str, names: set[str]) -> int:
    """Rewrites the QDQ model at `path` so that the Conv/Gemm nodes in `names` keep their
    float weights when ONNX Runtime loads it; returns how many were protected."""
    if not names:
        return 0
    m = onnx.load(path)
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    shapes = {i.name: list(i.dims) for i in g.initializer}
    nodes, done = [], 0
    for n in g.node:
        if n.name in names and n.op_type in LAYERS and n.input[1] in inits:
            if len(n.input) > 2 and n.input[2] in inits:
                bias = numpy_helper.to_array(inits[n.input[2]]).astype(np.float64)
                if sum(n.input[2] in other.input for other in g.node) == 1:
                    g.initializer.remove(inits[n.input[2]])
            else:
                w = shapes[n.input[1]]
                trans_b = next((a.i for a in n.attribute if a.name == "transB"), 0)
                out_ch = w[0] if n.op_type == "Conv" or trans_b else w[1]
                bias = np.zeros(out_ch)
            scale = float(np.abs(bias).max()) / 2**30 or 1.0
            q_name, s_name, out = (f"{n.name}_bias_kept_float_{k}" for k in ("q", "scale", "dq"))
            g.initializer.extend([
                numpy_helper.from_array(np.round(bias / scale).astype(np.int32), q_name),
                numpy_helper.from_array(np.array(scale, np.float32), s_name)])
            nodes.append(helper.make_node("DequantizeLinear", [q_name, s_name], [out],
                                          name=f"{n.name}_bias_kept_float"))
            del n.input[2:]
            n.input.append(out)
            done += 1
        nodes.append(n)
    del g.node[:]
    g.node.extend(nodes)
    onnx.save(m, path)
    return done
