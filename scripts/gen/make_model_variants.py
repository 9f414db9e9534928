#!/usr/bin/env python3
"""Write I/O variants of a float32 NCHW ONNX classifier, to exercise streamclassd's model handling.

Usage::

    make_model_variants.py SRC.onnx OUTDIR [--no-verify]

``SRC.onnx`` must have one float32 input ``[N, 3, H, W]`` (NCHW) and a float32 first
output ``[N, classes]`` of logits (e.g. models/efficientnet-lite0.onnx: ``input`` ->
``logits``).  With ``<stem>`` the file name of SRC without ``.onnx``, OUTDIR receives:

``<stem>-nhwc.onnx``
    Input renamed ``images``, shape ``[N, H, W, 3]`` float32 (NHWC, channels last),
    followed by ``Transpose(perm=[0, 3, 1, 2])`` into the original graph.  Same outputs.
``<stem>-fp16.onnx``
    Input (same name) ``[N, 3, H, W]`` ``tensor(float16)`` -> ``Cast(to=float)`` ->
    original graph -> ``Cast(to=float16)`` -> output (same name) ``tensor(float16)``.
    The weights stay float32 inside; only the I/O is float16, as in an fp16 export seen
    from the outside.
``<stem>-softmax.onnx``
    The original graph with ``Softmax(axis=-1)`` appended to the first output; the only
    output is ``probs`` (already a probability distribution).
``<stem>-bad-input.onnx``
    A tiny, unrelated model with a 1-channel input ``input`` ``[N, 1, 28, 28]`` float32
    (``Flatten`` + ``MatMul`` [784, 10] + ``Add``) -> ``logits`` ``[N, 10]``: for the clear
    "not a 3-channel image" error.
``<stem>-bad-output.onnx``
    A tiny model with an acceptable input ``input`` ``[N, 3, H, W]`` float32 but a rank-4
    output ``logits`` ``[N, 10, H/32, W/32]`` (one ``Conv`` 3 -> 10, kernel 32, stride 32:
    a conv head without pooling): for the "output is not [N, classes]" error.

The wrappers keep SRC's opset and IR version; every file passes ``onnx.checker``
(full check, with strict shape inference).  The tiny models' weights come from
``numpy.random.default_rng(0)``, so every run writes byte-identical files.

Verification (unless ``--no-verify``): the five labelled photos of
tests/reference/photos.py (``load_photos``), prepared with its ``preprocess``
(tf-efficientnet-lite preprocessing at the model's H; for other model families this
is only a common input, which is all an equivalence check needs), are run through SRC
and the nhwc / fp16 / softmax variants with ONNX Runtime (CPU, 1 thread).  Required:
nhwc logits equal to SRC's within 1e-4 and the same top-5; softmax probabilities equal
to softmax(SRC logits) within 1e-5 and the same top-5; fp16 logits within 0.05 of
SRC's (the input and output are rounded to float16: ~3 significant digits) and the
same top-1, its top-5 equal except for swaps between classes whose SRC logits differ
by less than that tolerance.  The bad models are only checked to load and to run on a
zero input with the stated output shape.  Exit status 1 when a check fails.

Prints one summary line (files written, verification result) on success.
"""

from __future__ import annotations

import argparse
import copy
import pathlib
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = pathlib.Path(__file__).resolve().parents[2]  # the repository root, two folders up
FP16_LOGIT_TOL = 0.05


# --------------------------------------------------------------------------- helpers

def _rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename every use of value `old` (node inputs/outputs, graph outputs) to `new`.

    Subgraphs (If/Loop bodies) that capture `old` from the outer scope are handled too.
    Graph inputs are left alone: callers replace them themselves.
    """
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                _rename_value(attr.g, old, new)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    _rename_value(g, old, new)
    for out in graph.output:
        if out.name == old:
            out.name = new


def _unique(graph: onnx.GraphProto, base: str) -> str:
    """A value name not used anywhere in `graph` (top level), derived from `base`."""
    used = {v.name for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
    used |= {t.name for t in graph.initializer}
    for n in graph.node:
        used.update(n.input)
        used.update(n.output)
    name, k = base, 0
    while name in used:
        k += 1
        name = f"{base}_{k}"
    return name


def _dims(vi: onnx.ValueInfoProto) -> list:
    """Shape of a value info as a list of int (dim_value) or str (dim_param / '?')."""
    out = []
    for d in vi.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return out


def _finish(model: onnx.ModelProto, src: onnx.ModelProto, doc: str) -> onnx.ModelProto:
    """Drop stale value_info, re-run shape inference, check, keep SRC's metadata."""
    del model.graph.value_info[:]
    model.ir_version = src.ir_version
    # this script's path before scripts/gen/, kept so that the variants stay byte-identical
    model.producer_name = "streamclassd/scripts/make_model_variants.py"
    model.producer_version = "1"
    model.doc_string = doc
    model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model


def _load_src(path: str) -> onnx.ModelProto:
    src = onnx.load(path)
    g = src.graph
    inits = {t.name for t in g.initializer}
    real_inputs = [i for i in g.input if i.name not in inits]
    if len(real_inputs) != 1:
        raise SystemExit(f"error: {path}: expected exactly one input, got {len(real_inputs)}")
    inp = real_inputs[0]
    if inp.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise SystemExit(f"error: {path}: input {inp.name!r} is not float32")
    d = _dims(inp)
    if len(d) != 4 or d[1] != 3 or not isinstance(d[2], int) or not isinstance(d[3], int):
        raise SystemExit(f"error: {path}: input {inp.name!r} is {d}, expected [N, 3, H, W] "
                         "with fixed H, W")
    if g.output[0].type.tensor_type.elem_type != TensorProto.FLOAT:
        raise SystemExit(f"error: {path}: output {g.output[0].name!r} is not float32")
    return src


def _opset(src: onnx.ModelProto) -> int:
    return next(o.version for o in src.opset_import if o.domain in ("", "ai.onnx"))


# --------------------------------------------------------------------------- variants

def make_nhwc(src: onnx.ModelProto) -> onnx.ModelProto:
    m = copy.deepcopy(src)
    g = m.graph
    inits = {t.name for t in g.initializer}
    idx = next(i for i, v in enumerate(g.input) if v.name not in inits)
    old = g.input[idx]
    n, _, h, w = _dims(old)
    internal = _unique(g, old.name + "_nchw")
    _rename_value(g, old.name, internal)
    new_in = helper.make_tensor_value_info("images", TensorProto.FLOAT, [n, h, w, 3])
    g.input.remove(old)
    g.input.insert(idx, new_in)
    g.node.insert(0, helper.make_node("Transpose", ["images"], [internal], perm=[0, 3, 1, 2],
                                      name="nhwc_to_nchw"))
    return _finish(m, src, "NHWC-input variant: images [N,H,W,3] -> Transpose(0,3,1,2) -> "
                           "original NCHW graph.")


def make_fp16(src: onnx.ModelProto) -> onnx.ModelProto:
    m = copy.deepcopy(src)
    g = m.graph
    inits = {t.name for t in g.initializer}
    idx = next(i for i, v in enumerate(g.input) if v.name not in inits)
    old_in = g.input[idx]
    in_name, in_dims = old_in.name, _dims(old_in)
    in_f32 = _unique(g, in_name + "_f32")
    _rename_value(g, in_name, in_f32)
    g.input.remove(old_in)
    g.input.insert(idx, helper.make_tensor_value_info(in_name, TensorProto.FLOAT16, in_dims))
    g.node.insert(0, helper.make_node("Cast", [in_name], [in_f32], to=TensorProto.FLOAT,
                                      name="input_to_float"))
    # Every float32 graph output becomes float16 through a Cast.
    outs = list(g.output)
    for k, out in enumerate(outs):
        if out.type.tensor_type.elem_type != TensorProto.FLOAT:
            continue
        name, dims = out.name, _dims(out)
        f32 = _unique(g, name + "_f32")
        _rename_value(g, name, f32)  # also renames the graph output entry; replaced below
        g.output.remove(g.output[k])
        g.output.insert(k, helper.make_tensor_value_info(name, TensorProto.FLOAT16, dims))
        g.node.append(helper.make_node("Cast", [f32], [name], to=TensorProto.FLOAT16,
                                       name=f"{name}_to_float16"))
    return _finish(m, src, "float16-I/O variant: Cast(float16->float) -> original float32 "
                           "graph -> Cast(float->float16).")


def make_softmax(src: onnx.ModelProto) -> onnx.ModelProto:
    m = copy.deepcopy(src)
    g = m.graph
    first = g.output[0]
    dims = _dims(first)
    del g.output[:]
    g.node.append(helper.make_node("Softmax", [first.name], ["probs"], axis=-1,
                                   name="probs_softmax"))
    g.output.append(helper.make_tensor_value_info("probs", TensorProto.FLOAT, dims))
    return _finish(m, src, f"Softmax variant: original graph -> Softmax(axis=-1) -> probs "
                           f"(was {first.name}).")


def make_bad_input(src: onnx.ModelProto) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((784, 10)) * 0.05).astype(np.float32)
    b = np.zeros(10, np.float32)
    nodes = [
        helper.make_node("Flatten", ["input"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "fc.weight"], ["mm"]),
        helper.make_node("Add", ["mm", "fc.bias"], ["logits"]),
    ]
    g = helper.make_graph(
        nodes, "bad_input_1ch",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 28, 28])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w, "fc.weight"), numpy_helper.from_array(b, "fc.bias")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", _opset(src))])
    return _finish(m, src, "Test model with a 1-channel input [N,1,28,28] (MNIST-like): "
                           "must be rejected as not a 3-channel image.")


def make_bad_output(src: onnx.ModelProto) -> onnx.ModelProto:
    inits = {t.name for t in src.graph.initializer}
    _, _, h, w_ = _dims(next(i for i in src.graph.input if i.name not in inits))
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((10, 3, 32, 32)) * 0.01).astype(np.float32)
    b = np.zeros(10, np.float32)
    nodes = [helper.make_node("Conv", ["input", "head.weight", "head.bias"], ["logits"],
                              kernel_shape=[32, 32], strides=[32, 32])]
    g = helper.make_graph(
        nodes, "bad_output_rank4",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, h, w_])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                       ["N", 10, h // 32, w_ // 32])],
        [numpy_helper.from_array(k, "head.weight"), numpy_helper.from_array(b, "head.bias")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", _opset(src))])
    return _finish(m, src, "Test model with a fine input [N,3,H,W] but a rank-4 output "
                           "[N,10,H/32,W/32] (conv head without pooling): must be rejected.")


# --------------------------------------------------------------------------- verification

def _session(path: pathlib.Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _top5(row: np.ndarray) -> list[int]:
    return [int(i) for i in np.argsort(-row.astype(np.float64), kind="stable")[:5]]


def verify(src_path: str, paths: dict) -> tuple[list[str], list[str]]:
    """Returns (failures, notes)."""
    sys.path.insert(0, str(ROOT / "tests" / "reference"))
    sys.dont_write_bytecode = True  # no tests/reference/__pycache__ in the tree
    from photos import load_photos, preprocess  # noqa: E402

    src = _session(pathlib.Path(src_path))
    size = src.get_inputs()[0].shape[2]
    sess = {k: _session(p) for k, p in paths.items()}
    failures, notes = [], []
    worst = {"nhwc": 0.0, "softmax": 0.0, "fp16": 0.0}
    for name, rgb, _ in load_photos():
        x = preprocess(rgb, size)[None]  # [1, 3, H, W] float32
        (ref,) = src.run(None, {src.get_inputs()[0].name: x})[:1]
        ref = ref[0]
        t_ref = _top5(ref)

        s = sess["nhwc"]
        out = s.run(None, {"images": np.ascontiguousarray(x.transpose(0, 2, 3, 1))})[0][0]
        d = float(np.abs(out - ref).max())
        worst["nhwc"] = max(worst["nhwc"], d)
        if d > 1e-4 or _top5(out) != t_ref:
            failures.append(f"nhwc {name}: max |dlogit| {d:.2e}, top5 {_top5(out)} vs {t_ref}")

        s = sess["softmax"]
        out = s.run(["probs"], {s.get_inputs()[0].name: x})[0][0]
        d = float(np.abs(out.astype(np.float64) - _softmax(ref)).max())
        worst["softmax"] = max(worst["softmax"], d)
        if d > 1e-5 or _top5(out) != t_ref or abs(float(out.sum()) - 1) > 1e-4:
            failures.append(f"softmax {name}: max |dp| {d:.2e}, top5 {_top5(out)} vs {t_ref}")

        s = sess["fp16"]
        out = s.run(None, {s.get_inputs()[0].name: x.astype(np.float16)})[0][0]
        if out.dtype != np.float16:
            failures.append(f"fp16 {name}: output dtype {out.dtype}")
        out32 = out.astype(np.float32)
        d = float(np.abs(out32 - ref).max())
        worst["fp16"] = max(worst["fp16"], d)
        t16 = _top5(out32)
        if d > FP16_LOGIT_TOL or t16[0] != t_ref[0]:
            failures.append(f"fp16 {name}: max |dlogit| {d:.3f}, top5 {t16} vs {t_ref}")
        elif t16 != t_ref:
            # Allowed only where the swapped classes are a near-tie in the fp32 logits.
            for a, b in zip(t16, t_ref):
                if a != b and abs(float(ref[a]) - float(ref[b])) > FP16_LOGIT_TOL:
                    failures.append(f"fp16 {name}: top5 {t16} vs {t_ref} (not a near-tie)")
                    break
            else:
                notes.append(f"fp16 {name}: near-tie reorder in top-5")

    for key, path, shape in (("bad-input", paths["bad-input"], (1, 1, 28, 28)),
                             ("bad-output", paths["bad-output"], (1, 3, size, size))):
        s = _session(path)
        out = s.run(None, {"input": np.zeros(shape, np.float32)})[0]
        want = (1, 10) if key == "bad-input" else (1, 10, size // 32, size // 32)
        if out.shape != want:
            failures.append(f"{key}: output shape {out.shape}, expected {want}")
    notes.insert(0, "max |diff| vs SRC: nhwc logits {nhwc:.1e}, softmax probs {softmax:.1e}, "
                    "fp16 logits {fp16:.3f}".format(**worst))
    return failures, notes


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", help="float32 NCHW classifier, e.g. models/efficientnet-lite0.onnx")
    ap.add_argument("outdir")
    ap.add_argument("--no-verify", action="store_true",
                    help="skip the ONNX Runtime check on the reference photos")
    args = ap.parse_args()

    src = _load_src(args.src)
    stem = pathlib.Path(args.src).name.removesuffix(".onnx")
    outdir = pathlib.Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    makers = {"nhwc": make_nhwc, "fp16": make_fp16, "softmax": make_softmax,
              "bad-input": make_bad_input, "bad-output": make_bad_output}
    paths = {}
    for key, make in makers.items():
        path = outdir / f"{stem}-{key}.onnx"
        onnx.save(make(src), str(path))
        paths[key] = path

    verdict = "not verified"
    if not args.no_verify:
        failures, notes = verify(args.src, paths)
        for line in failures:
            print(f"FAIL {line}", file=sys.stderr)
        if failures:
            return 1
        verdict = "verified on 5 photos (same top-5; " + "; ".join(notes) + ")"
    print(f"wrote {len(paths)} variants of {args.src} to {outdir}/ "
          f"({', '.join(p.name for p in paths.values())}); {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
