#!/usr/bin/env bash
# GPU check: bare ONNX Runtime on the CPU, CUDA and TensorRT (FP16), then streamclassd end
# to end on media/demo.mp4 with execution_provider = "cuda", as one table.
# Needs a GPU ONNX Runtime build (the onnxruntime-gpu wheel's libonnxruntime.so with its
# provider libraries beside it, and CUDA/cuDNN of the major version it was built for):
#   ORT_DYLIB_PATH=/path/to/onnxruntime/capi/libonnxruntime.so.1.xx scripts/gpu-check.sh [MODEL]
# MODEL defaults to models/resnet50.onnx (torchvision's ResNet-50 with seeded random weights,
# which scripts/bench writes with scripts/gen/make_resnet.py --depth 50).
# Built binaries are used as they are (target/release): build them first on a machine
# with the toolchain (cargo build --release --bin streamclassd --example ort_throughput).
set -euo pipefail
cd "$(dirname "$0")/.."
model=${1:-models/resnet50.onnx}
: "${ORT_DYLIB_PATH:?set ORT_DYLIB_PATH to a GPU build of libonnxruntime}"
export ORT_DYLIB_PATH
bin=target/release/streamclassd
bench=target/release/examples/ort_throughput
[ -x "$bin" ] && [ -x "$bench" ] || { echo "gpu-check: build $bin and $bench first" >&2; exit 2; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
echo "| provider | bare ONNX Runtime frames/s |"
echo "|---|---|"
for p in cpu cuda tensorrt; do
  line=$("$bench" "$model" 2 200 3 "$p" 2>&1 | tail -n 1) || true
  rate=$(sed -nE 's/.*: ([0-9.]+) frames\/s.*/\1/p' <<<"$line")
  echo "| $p | ${rate:-failed: $line} |"
done
work=$(mktemp -d)
trap 'kill ${broker:-0} 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if command -v mosquitto >/dev/null; then
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/m.conf"
  mosquitto -c "$work/m.conf" >/dev/null 2>&1 & broker=$!
  sleep 0.5
  cat > "$work/c.toml" <<TOML
[mqtt]
port = $port
[model]
path = "$PWD/$model"
execution_provider = "cuda"
[[camera]]
id = "c"
source = "$PWD/media/demo.mp4"
TOML
  rate=$("$bin" run -c "$work/c.toml" 2>&1 | sed -nE 's/.*frames_per_s="([0-9.]+)".*/\1/p')
  echo "| streamclassd end to end (cuda, 720p) | ${rate:-failed} |"
else
  echo "gpu-check: no mosquitto here: end-to-end run skipped" >&2
fi
