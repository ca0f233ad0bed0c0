"""Convert the MTCNN P/R/O-Net weights shipped in the `mtcnn` 1.0.0 wheel (MIT) to ONNX.

Run once by a developer; the outputs are committed as package data under
``src/agescan/detect/weights/`` so that agescan needs neither TensorFlow, joblib (pickle) nor
the ``mtcnn`` package at run time.

    pip download --no-deps mtcnn==1.0.0 -d /tmp/mtcnn && unzip -q /tmp/mtcnn/*.whl -d /tmp/mtcnn
    pip install joblib lz4 onnx
    python tools/convert_mtcnn.py /tmp/mtcnn/mtcnn/assets/weights src/agescan/detect/weights

The graphs mirror mtcnn/network/{pnet,rnet,onet}.py (Keras, NHWC) in NCHW: Keras conv kernels
(kh, kw, in, out) become ONNX (out, in, kh, kw); Keras "same" pooling is ONNX SAME_UPPER; the
Keras Permute((2, 1, 3)) before Flatten becomes Transpose(0, 3, 2, 1) on NCHW.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import joblib  # dev-time only: the wheel stores weights as lz4-compressed joblib pickles
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


class _Graph:
    def __init__(self, name: str, weights: list[np.ndarray]):
        self.name = name
        self.w = list(weights)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.i = 0

    def _take(self) -> np.ndarray:
        return np.asarray(self.w.pop(0), dtype=np.float32)

    def _init(self, arr: np.ndarray) -> str:
        self.i += 1
        name = f"{self.name}_w{self.i}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(arr, dtype=np.float32), name))
        return name

    def _out(self, tag: str) -> str:
        self.i += 1
        return f"{tag}_{self.i}"

    def conv(self, x: str) -> str:
        k = self._take().transpose(3, 2, 0, 1)
        b = self._take()
        y = self._out("conv")
        self.nodes.append(helper.make_node("Conv", [x, self._init(k), self._init(b)], [y],
                                           kernel_shape=list(k.shape[2:])))
        return y

    def prelu(self, x: str, spatial: bool = True) -> str:
        a = self._take()
        slope = a.reshape(-1, 1, 1) if spatial else a.reshape(-1)
        y = self._out("prelu")
        self.nodes.append(helper.make_node("PRelu", [x, self._init(slope)], [y]))
        return y

    def pool(self, x: str, k: int, s: int, same: bool) -> str:
        y = self._out("pool")
        kw = {"auto_pad": "SAME_UPPER"} if same else {}
        self.nodes.append(helper.make_node("MaxPool", [x], [y], kernel_shape=[k, k], strides=[s, s], **kw))
        return y

    def flatten_whc(self, x: str) -> str:
        t = self._out("perm")
        self.nodes.append(helper.make_node("Transpose", [x], [t], perm=[0, 3, 2, 1]))
        y = self._out("flat")
        self.nodes.append(helper.make_node("Flatten", [t], [y], axis=1))
        return y

    def dense(self, x: str, out: str | None = None) -> str:
        w = self._take()
        b = self._take()
        y = out or self._out("fc")
        self.nodes.append(helper.make_node("Gemm", [x, self._init(w), self._init(b)], [y]))
        return y

    def softmax(self, x: str, out: str, axis: int) -> str:
        self.nodes.append(helper.make_node("Softmax", [x], [out], axis=axis))
        return out

    def model(self, input_hw: tuple, outputs: list[tuple[str, list]]) -> onnx.ModelProto:
        if self.w:
            raise RuntimeError(f"{self.name}: {len(self.w)} weight arrays left unused")
        inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, *input_hw])
        outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n, shape in outputs]
        graph = helper.make_graph(self.nodes, self.name, [inp], outs, self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="agescan")
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def pnet(weights: list[np.ndarray]) -> onnx.ModelProto:
    g = _Graph("pnet", weights)
    x = g.prelu(g.conv("input"))
    x = g.pool(x, 2, 2, same=True)
    x = g.prelu(g.conv(x))
    x = g.prelu(g.conv(x))
    # conv4-1 (box regression, 4 ch) then conv4-2 (face logits, 2 ch), both 1x1 on the same map.
    for out in ("reg", "logits"):
        k = g._take().transpose(3, 2, 0, 1)
        b = g._take()
        g.nodes.append(helper.make_node("Conv", [x, g._init(k), g._init(b)], [out], kernel_shape=[1, 1]))
    g.softmax("logits", "prob", axis=1)
    return g.model(("H", "W"), [("reg", ["N", 4, "h", "w"]), ("prob", ["N", 2, "h", "w"])])


def rnet(weights: list[np.ndarray]) -> onnx.ModelProto:
    g = _Graph("rnet", weights)
    x = g.pool(g.prelu(g.conv("input")), 3, 2, same=True)
    x = g.pool(g.prelu(g.conv(x)), 3, 2, same=False)
    x = g.flatten_whc(g.prelu(g.conv(x)))
    x = g.prelu(g.dense(x), spatial=False)
    g.dense(x, "reg")
    g.softmax(g.dense(x), "prob", axis=1)
    return g.model((24, 24), [("reg", ["N", 4]), ("prob", ["N", 2])])


def onet(weights: list[np.ndarray]) -> onnx.ModelProto:
    g = _Graph("onet", weights)
    x = g.pool(g.prelu(g.conv("input")), 3, 2, same=True)
    x = g.pool(g.prelu(g.conv(x)), 3, 2, same=False)
    x = g.pool(g.prelu(g.conv(x)), 2, 2, same=True)
    x = g.flatten_whc(g.prelu(g.conv(x)))
    x = g.prelu(g.dense(x), spatial=False)
    g.dense(x, "reg")
    g.dense(x, "landmarks")
    g.softmax(g.dense(x), "prob", axis=1)
    return g.model((48, 48), [("reg", ["N", 4]), ("landmarks", ["N", 10]), ("prob", ["N", 2])])


def main(src: str, dst: str) -> None:
    out = Path(dst)
    out.mkdir(parents=True, exist_ok=True)
    for name, build in (("pnet", pnet), ("rnet", rnet), ("onet", onet)):
        model = build(joblib.load(Path(src) / f"{name}.lz4"))
        path = out / f"mtcnn_{name}.onnx"
        onnx.save(model, path)
        print(path, hashlib.sha256(path.read_bytes()).hexdigest())


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
