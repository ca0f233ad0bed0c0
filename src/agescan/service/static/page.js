// agescan age-check page. Everything identifying stays in this browser: the face is found here (a YuNet-family
// detector, run by the small ONNX interpreter below from the very file agescan ships, configured by the card inside
// it), the eyes are covered here, and only the covered photo (re-encoded, so no metadata) is sent, after the user
// has seen it and pressed Send. No third-party code, no fonts, no network but this server.

// ---------------------------------------------------------------------------------------------------------------
// Protocol Buffers, as much as an ONNX file needs.
class Reader {
  constructor(bytes) { this.b = bytes; this.p = 0; this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength); }
  get done() { return this.p >= this.b.length; }
  varint() { // BigInt: int64 fields may be negative (ten bytes)
    let result = 0n, shift = 0n;
    for (;;) {
      const byte = this.b[this.p++];
      if (byte === undefined) throw new Error("truncated ONNX file");
      result |= BigInt(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return result;
      shift += 7n;
    }
  }
  int() { return Number(BigInt.asIntN(64, this.varint())); }
  bytes() { const n = this.int(); const out = this.b.subarray(this.p, this.p + n); this.p += n; return out; }
  f32() { const v = this.view.getFloat32(this.p, true); this.p += 4; return v; }
  skip(wire) {
    if (wire === 0) this.varint();
    else if (wire === 1) this.p += 8;
    else if (wire === 2) { const n = this.int(); this.p += n; } // (not `this.p += this.int()`: p is read first)
    else if (wire === 5) this.p += 4;
    else throw new Error(`unsupported protobuf wire type ${wire}`);
  }
  *fields() { while (!this.done) { const key = this.int(); yield [key >>> 3, key & 7]; } }
}
const utf8 = new TextDecoder();
const text = (r) => utf8.decode(r.bytes());
function packed(r, wire, one) { // a repeated scalar, packed (wire 2) or not
  if (wire !== 2) return [one(r)];
  const sub = new Reader(r.bytes()), out = [];
  while (!sub.done) out.push(one(sub));
  return out;
}

const FLOAT = 1, INT32 = 6, INT64 = 7, DOUBLE = 11;
export class Tensor {
  constructor(shape, data, isInt = false) { this.shape = shape; this.data = data; this.isInt = isInt; }
  get size() { return this.shape.reduce((a, b) => a * b, 1); }
  get ints() { return Array.from(this.data); }
}

function parseTensor(bytes) {
  const r = new Reader(bytes);
  let dims = [], type = FLOAT, raw = null, floats = [], ints = [], doubles = [], name = "";
  for (const [field, wire] of r.fields()) {
    if (field === 1) dims.push(...packed(r, wire, (x) => x.int()));
    else if (field === 2) type = r.int();
    else if (field === 4) floats.push(...packed(r, wire, (x) => x.f32()));
    else if (field === 5 || field === 7) ints.push(...packed(r, wire, (x) => x.int()));
    else if (field === 8) name = text(r);
    else if (field === 9) raw = r.bytes();
    else if (field === 10) doubles.push(...packed(r, wire, (x) => { const v = x.view.getFloat64(x.p, true); x.p += 8; return v; }));
    else r.skip(wire);
  }
  const size = dims.reduce((a, b) => a * b, 1);
  let data, isInt = false;
  if (type === FLOAT) {
    data = raw ? new Float32Array(raw.slice().buffer) : Float32Array.from(floats);
  } else if (type === INT64 || type === INT32) {
    isInt = true;
    if (raw) {
      const v = new DataView(raw.buffer, raw.byteOffset, raw.byteLength), step = type === INT64 ? 8 : 4;
      data = new Float64Array(size);
      for (let i = 0; i < size; i++) data[i] = step === 8 ? Number(v.getBigInt64(i * 8, true)) : v.getInt32(i * 4, true);
    } else data = Float64Array.from(ints);
  } else if (type === DOUBLE) {
    data = raw ? Float32Array.from(new Float64Array(raw.slice().buffer)) : Float32Array.from(doubles);
  } else throw new Error(`unsupported ONNX tensor type ${type} (${name})`);
  if (data.length !== size) throw new Error(`tensor ${name}: ${data.length} values for shape [${dims}]`);
  return { name, tensor: new Tensor(dims, data, isInt) };
}

function parseAttribute(bytes) {
  const r = new Reader(bytes);
  const a = { name: "", value: undefined };
  const floats = [], ints = [];
  let type = 0;
  for (const [field, wire] of r.fields()) {
    if (field === 1) a.name = text(r);
    else if (field === 2) a.value = r.f32();
    else if (field === 3) a.value = r.int();
    else if (field === 4) a.value = text(r);
    else if (field === 5) a.value = parseTensor(r.bytes()).tensor;
    else if (field === 7) floats.push(...packed(r, wire, (x) => x.f32()));
    else if (field === 8) ints.push(...packed(r, wire, (x) => x.int()));
    else if (field === 20) type = r.int();
    else r.skip(wire);
  }
  // AttributeProto.type: 1 FLOAT, 2 INT (a zero may be left out), 6 FLOATS, 7 INTS
  if (a.value === undefined) a.value = type === 1 || type === 2 ? 0 : type === 6 || floats.length ? floats : ints;
  return a;
}

function parseNode(bytes) {
  const r = new Reader(bytes);
  const n = { inputs: [], outputs: [], op: "", attrs: {} };
  for (const [field, wire] of r.fields()) {
    if (field === 1) n.inputs.push(text(r));
    else if (field === 2) n.outputs.push(text(r));
    else if (field === 4) n.op = text(r);
    else if (field === 5) { const a = parseAttribute(r.bytes()); n.attrs[a.name] = a.value; }
    else r.skip(wire);
  }
  return n;
}

function valueName(bytes) { const r = new Reader(bytes); for (const [f, w] of r.fields()) { if (f === 1) return text(r); r.skip(w); } return ""; }

/** An ONNX model's graph: nodes in order, initialisers, input and output names. */
export function parseOnnx(buffer) {
  const r = new Reader(new Uint8Array(buffer));
  let graph = null;
  for (const [field, wire] of r.fields()) {
    if (field === 7) graph = r.bytes(); else r.skip(wire);
  }
  if (!graph) throw new Error("not an ONNX model (no graph)");
  const g = new Reader(graph), out = { nodes: [], init: new Map(), inputs: [], outputs: [] };
  for (const [field, wire] of g.fields()) {
    if (field === 1) out.nodes.push(parseNode(g.bytes()));
    else if (field === 5) { const t = parseTensor(g.bytes()); out.init.set(t.name, t.tensor); }
    else if (field === 11) out.inputs.push(valueName(g.bytes()));
    else if (field === 12) out.outputs.push(valueName(g.bytes()));
    else g.skip(wire);
  }
  const unsupported = [...new Set(out.nodes.map((n) => n.op))].filter((op) => !(op in OPS));
  if (unsupported.length) throw new Error(`the detector uses ONNX operators this page cannot run: ${unsupported}`);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Operators (NCHW float32; shapes as int64 tensors). SUPPORTED_OPS must match agescan.service.page.BROWSER_OPS.
function stridesOf(shape) { const s = new Array(shape.length).fill(1); for (let i = shape.length - 2; i >= 0; i--) s[i] = s[i + 1] * shape[i + 1]; return s; }

function broadcast(a, b, f) {
  if (a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i])) {
    const out = new Float32Array(a.data.length);
    for (let i = 0; i < out.length; i++) out[i] = f(a.data[i], b.data[i]);
    return new Tensor(a.shape.slice(), out, a.isInt && b.isInt);
  }
  const rank = Math.max(a.shape.length, b.shape.length);
  const pad = (s) => [...new Array(rank - s.length).fill(1), ...s];
  const sa = pad(a.shape), sb = pad(b.shape), shape = sa.map((d, i) => Math.max(d, sb[i]));
  const ta = stridesOf(sa).map((s, i) => (sa[i] === 1 ? 0 : s)), tb = stridesOf(sb).map((s, i) => (sb[i] === 1 ? 0 : s));
  const to = stridesOf(shape), n = shape.reduce((x, y) => x * y, 1), out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let ia = 0, ib = 0, rest = i;
    for (let d = 0; d < rank; d++) { const k = Math.floor(rest / to[d]); rest -= k * to[d]; ia += k * ta[d]; ib += k * tb[d]; }
    out[i] = f(a.data[ia], b.data[ib]);
  }
  return new Tensor(shape, a.isInt && b.isInt ? out : Float32Array.from(out), a.isInt && b.isInt);
}

function conv(x, w, b, at) {
  const [N, C, H, W] = x.shape, [M, Cg, kh, kw] = w.shape;
  const g = at.group ?? 1, [sh, sw] = at.strides ?? [1, 1], [dh, dw] = at.dilations ?? [1, 1];
  const [pt, pl, pb, pr] = at.pads ?? [0, 0, 0, 0];
  if (at.auto_pad && at.auto_pad !== "NOTSET") throw new Error("Conv auto_pad is not supported");
  const OH = Math.floor((H + pt + pb - dh * (kh - 1) - 1) / sh) + 1, OW = Math.floor((W + pl + pr - dw * (kw - 1) - 1) / sw) + 1;
  const out = new Float32Array(N * M * OH * OW), Mg = M / g, X = x.data, Wt = w.data;
  for (let n = 0; n < N; n++) for (let m = 0; m < M; m++) {
    const o = out.subarray((n * M + m) * OH * OW, (n * M + m + 1) * OH * OW);
    if (b) o.fill(b.data[m]);
    const gi = Math.floor(m / Mg);
    for (let c = 0; c < Cg; c++) {
      const base = (n * C + gi * Cg + c) * H * W;
      for (let ky = 0; ky < kh; ky++) for (let kx = 0; kx < kw; kx++) {
        const wv = Wt[((m * Cg + c) * kh + ky) * kw + kx];
        if (wv === 0) continue;
        const offX = kx * dw - pl;
        const ox0 = Math.max(0, Math.ceil(-offX / sw)), ox1 = Math.min(OW, Math.floor((W - 1 - offX) / sw) + 1);
        for (let oy = 0; oy < OH; oy++) {
          const iy = oy * sh - pt + ky * dh;
          if (iy < 0 || iy >= H) continue;
          const row = base + iy * W + offX, orow = oy * OW;
          if (sw === 1) for (let ox = ox0; ox < ox1; ox++) o[orow + ox] += wv * X[row + ox];
          else for (let ox = ox0; ox < ox1; ox++) o[orow + ox] += wv * X[row + ox * sw];
        }
      }
    }
  }
  return new Tensor([N, M, OH, OW], out);
}

function maxPool(x, at) {
  const [N, C, H, W] = x.shape, [kh, kw] = at.kernel_shape, [sh, sw] = at.strides ?? [1, 1];
  const [pt, pl, pb, pr] = at.pads ?? [0, 0, 0, 0];
  const round = at.ceil_mode ? Math.ceil : Math.floor;
  const OH = round((H + pt + pb - kh) / sh) + 1, OW = round((W + pl + pr - kw) / sw) + 1;
  const out = new Float32Array(N * C * OH * OW);
  for (let p = 0; p < N * C; p++) for (let oy = 0; oy < OH; oy++) for (let ox = 0; ox < OW; ox++) {
    let m = -Infinity;
    for (let ky = 0; ky < kh; ky++) {
      const iy = oy * sh - pt + ky;
      if (iy < 0 || iy >= H) continue;
      for (let kx = 0; kx < kw; kx++) {
        const ix = ox * sw - pl + kx;
        if (ix >= 0 && ix < W) m = Math.max(m, x.data[(p * H + iy) * W + ix]);
      }
    }
    out[(p * OH + oy) * OW + ox] = m;
  }
  return new Tensor([N, C, OH, OW], out);
}

function resize(x, scales, sizes, at) {
  if ((at.mode ?? "nearest") !== "nearest") throw new Error(`Resize mode ${at.mode} is not supported`);
  const ctm = at.coordinate_transformation_mode ?? "half_pixel", nm = at.nearest_mode ?? "round_prefer_floor";
  const [N, C, H, W] = x.shape;
  const OH = sizes ? sizes.data[2] : Math.floor(H * scales.data[2]), OW = sizes ? sizes.data[3] : Math.floor(W * scales.data[3]);
  const fy = sizes ? OH / H : scales.data[2], fx = sizes ? OW / W : scales.data[3];
  const src = (o, f, n) => {
    let v = ctm === "asymmetric" ? o / f : ctm === "half_pixel" ? (o + 0.5) / f - 0.5
      : ctm === "align_corners" ? (n === 1 ? 0 : o * (n - 1) / (Math.round(n * f) - 1)) : NaN;
    if (Number.isNaN(v)) throw new Error(`Resize ${ctm} is not supported`);
    v = nm === "floor" ? Math.floor(v) : nm === "ceil" ? Math.ceil(v) : nm === "round_prefer_ceil" ? Math.round(v)
      : (v % 1 === 0.5 ? Math.floor(v) : Math.round(v));
    return Math.min(n - 1, Math.max(0, v));
  };
  const ys = Array.from({ length: OH }, (_, o) => src(o, fy, H)), xs = Array.from({ length: OW }, (_, o) => src(o, fx, W));
  const out = new Float32Array(N * C * OH * OW);
  for (let p = 0; p < N * C; p++) for (let oy = 0; oy < OH; oy++) {
    const row = (p * H + ys[oy]) * W, orow = (p * OH + oy) * OW;
    for (let ox = 0; ox < OW; ox++) out[orow + ox] = x.data[row + xs[ox]];
  }
  return new Tensor([N, C, OH, OW], out);
}

function transpose(x, perm) {
  const rank = x.shape.length;
  perm = perm && perm.length ? perm : [...Array(rank).keys()].reverse();
  const shape = perm.map((p) => x.shape[p]), si = stridesOf(x.shape), so = stridesOf(shape);
  const out = new x.data.constructor(x.data.length);
  for (let i = 0; i < out.length; i++) {
    let rest = i, src = 0;
    for (let d = 0; d < rank; d++) { const k = Math.floor(rest / so[d]); rest -= k * so[d]; src += k * si[perm[d]]; }
    out[i] = x.data[src];
  }
  return new Tensor(shape, out, x.isInt);
}

function concat(ts, axis) {
  const rank = ts[0].shape.length, ax = axis < 0 ? axis + rank : axis;
  const shape = ts[0].shape.slice();
  shape[ax] = ts.reduce((s, t) => s + t.shape[ax], 0);
  const outer = shape.slice(0, ax).reduce((a, b) => a * b, 1), inner = shape.slice(ax + 1).reduce((a, b) => a * b, 1);
  const isInt = ts.every((t) => t.isInt), out = isInt ? new Float64Array(outer * shape[ax] * inner) : new Float32Array(outer * shape[ax] * inner);
  let off = 0;
  for (let o = 0; o < outer; o++) for (const t of ts) {
    const n = t.shape[ax] * inner;
    out.set(t.data.subarray(o * n, (o + 1) * n), off); off += n;
  }
  return new Tensor(shape, out, isInt);
}

function gather(x, idx, axis = 0) {
  const rank = x.shape.length, ax = axis < 0 ? axis + rank : axis;
  const outer = x.shape.slice(0, ax).reduce((a, b) => a * b, 1), inner = x.shape.slice(ax + 1).reduce((a, b) => a * b, 1);
  const ids = Array.from(idx.data, (i) => (i < 0 ? i + x.shape[ax] : i));
  const out = new x.data.constructor(outer * ids.length * inner);
  let off = 0;
  for (let o = 0; o < outer; o++) for (const i of ids) {
    out.set(x.data.subarray((o * x.shape[ax] + i) * inner, (o * x.shape[ax] + i + 1) * inner), off); off += inner;
  }
  return new Tensor([...x.shape.slice(0, ax), ...idx.shape, ...x.shape.slice(ax + 1)], out, x.isInt);
}

function reshape(x, shapeT) {
  const want = Array.from(shapeT.data, (d, i) => (d === 0 ? x.shape[i] : d));
  const known = want.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const shape = want.map((d) => (d === -1 ? x.data.length / known : d));
  return new Tensor(shape, x.data, x.isInt);
}

function unsqueeze(x, axes) {
  const rank = x.shape.length + axes.length, shape = [], ax = axes.map((a) => (a < 0 ? a + rank : a));
  let k = 0;
  for (let d = 0; d < rank; d++) shape.push(ax.includes(d) ? 1 : x.shape[k++]);
  return new Tensor(shape, x.data, x.isInt);
}

const unary = (f) => (n, [x]) => { const out = new Float32Array(x.data.length); for (let i = 0; i < out.length; i++) out[i] = f(x.data[i], n.attrs); return new Tensor(x.shape.slice(), out); };
const OPS = {
  Add: (n, [a, b]) => broadcast(a, b, (p, q) => p + q),
  BatchNormalization: (n, [x, s, bias, mean, v]) => {
    const [N, C, H, W] = x.shape, eps = n.attrs.epsilon ?? 1e-5, out = new Float32Array(x.data.length);
    for (let p = 0; p < N * C; p++) {
      const c = p % C, k = s.data[c] / Math.sqrt(v.data[c] + eps), o = bias.data[c] - mean.data[c] * k;
      for (let i = p * H * W; i < (p + 1) * H * W; i++) out[i] = x.data[i] * k + o;
    }
    return new Tensor(x.shape.slice(), out);
  },
  Concat: (n, ts) => concat(ts, n.attrs.axis),
  Constant: (n) => n.attrs.value,
  Conv: (n, [x, w, b]) => conv(x, w, b, n.attrs),
  Gather: (n, [x, i]) => gather(x, i, n.attrs.axis ?? 0),
  LeakyRelu: unary((v, at) => (v >= 0 ? v : v * (at.alpha ?? 0.01))),
  MaxPool: (n, [x]) => maxPool(x, n.attrs),
  Mul: (n, [a, b]) => broadcast(a, b, (p, q) => p * q),
  Relu: unary((v) => (v > 0 ? v : 0)),
  Reshape: (n, [x, s]) => reshape(x, s),
  Resize: (n, [x, roi, scales, sizes]) => resize(x, scales && scales.size ? scales : null, sizes, n.attrs),
  Shape: (n, [x]) => new Tensor([x.shape.length], Float64Array.from(x.shape), true),
  Sigmoid: unary((v) => 1 / (1 + Math.exp(-v))),
  Transpose: (n, [x]) => transpose(x, n.attrs.perm),
  Unsqueeze: (n, [x, axes]) => unsqueeze(x, axes ? axes.ints : n.attrs.axes),
};
export const SUPPORTED_OPS = Object.keys(OPS);

/** Run a parsed graph on named input tensors; returns its outputs by name. */
export function runGraph(graph, feeds) {
  const values = new Map([...graph.init, ...Object.entries(feeds)]);
  const lastUse = new Map();
  graph.nodes.forEach((n, i) => n.inputs.forEach((name) => lastUse.set(name, i)));
  graph.nodes.forEach((n, i) => {
    const inputs = n.inputs.map((name) => (name === "" ? null : values.get(name)));
    if (inputs.some((t, k) => t === undefined && n.inputs[k] !== "")) throw new Error(`ONNX node ${n.op}: missing input`);
    const result = OPS[n.op](n, inputs);
    values.set(n.outputs[0], result);
    n.inputs.forEach((name) => { if (lastUse.get(name) === i && !graph.init.has(name) && !graph.outputs.includes(name)) values.delete(name); });
  });
  return Object.fromEntries(graph.outputs.map((name) => [name, values.get(name)]));
}

// ---------------------------------------------------------------------------------------------------------------
// The face detector: the decoding, thresholds and non-maximum suppression of agescan.detect.yunet, configured by
// the card; a cascade of two as agescan.detect.cascade merges them.
const LANDMARK_NAMES = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"];
const MAX_DETECT_SIDE = 640; // the finest pass looks at the photo with its longer side at most this

export class BrowserDetector {
  constructor(card, graph) {
    this.card = card; this.graph = graph;
    this.order = LANDMARK_NAMES.map((n) => card.landmark_order.indexOf(n));
    this.align = Math.max(...card.strides);
    this.sizeThresholds = card.size_thresholds || []; // [[max height at the input, threshold], ...] ascending
    this.minThreshold = Math.min(card.score_threshold, ...this.sizeThresholds.map((p) => p[1]));
  }

  thresholdFor(height) { // as DetectorCard.threshold_for: the first size class the box is smaller than
    for (const [maxHeight, t] of this.sizeThresholds) if (height < maxHeight) return t;
    return this.card.score_threshold;
  }

  static async load(info, headers = {}) {
    const res = await fetch(info.url, { headers });
    if (!res.ok) throw new Error(`the face detector could not be loaded (${res.status})`);
    const buf = await res.arrayBuffer();
    if (globalThis.crypto && crypto.subtle) { // secure contexts (https, localhost): check the file's integrity
      const hex = [...new Uint8Array(await crypto.subtle.digest("SHA-256", buf))].map((b) => b.toString(16).padStart(2, "0")).join("");
      if (hex !== info.sha256) throw new Error("the face detector's file does not match its sha256");
    }
    return new BrowserDetector(info.card, parseOnnx(buf));
  }

  scales(h, w) { // as YuNetDetector.scales: a finer pass, and coarser ones while faces could exceed max_face_px
    const out = [Math.min(1, MAX_DETECT_SIDE / Math.max(h, w))];
    while (Math.min(h, w) * out[out.length - 1] > this.card.max_face_px) out.push(out[out.length - 1] * this.card.min_face_px / this.card.max_face_px * 2);
    return out;
  }

  /** Faces in a canvas: [{box: [x1, y1, x2, y2], landmarks: [[x, y] x 5], score}], best first. */
  detect(canvas) {
    const h = canvas.height, w = canvas.width, rows = [];
    for (const s of this.scales(h, w)) rows.push(...this.pass(canvas, s));
    return this.finish(rows, h, w);
  }

  pass(canvas, scale) {
    const card = this.card, h = canvas.height, w = canvas.width;
    const nh = Math.max(1, Math.round(h * scale)), nw = Math.max(1, Math.round(w * scale));
    const ph = Math.ceil(nh / this.align) * this.align, pw = Math.ceil(nw / this.align) * this.align;
    const small = document.createElement("canvas");
    small.width = nw; small.height = nh;
    const ctx = small.getContext("2d", { willReadFrequently: true });
    ctx.imageSmoothingQuality = "high";
    ctx.drawImage(canvas, 0, 0, nw, nh);
    const px = ctx.getImageData(0, 0, nw, nh).data, input = new Float32Array(3 * ph * pw);
    const chan = card.colour_order === "BGR" ? [2, 1, 0] : [0, 1, 2];
    for (let y = 0; y < nh; y++) for (let x = 0; x < nw; x++) {
      const i = (y * nw + x) * 4, o = y * pw + x;
      for (let c = 0; c < 3; c++) input[c * ph * pw + o] = px[i + chan[c]] * card.scale;
    }
    const out = runGraph(this.graph, { [card.input_name]: new Tensor([1, 3, ph, pw], input) });
    const sx = w / nw, sy = h / nh, found = [];
    for (const stride of card.strides) {
      const cls = out[`cls_${stride}`].data, obj = out[`obj_${stride}`].data;
      const bbox = out[`bbox_${stride}`].data, kps = out[`kps_${stride}`].data, cols = pw / stride;
      for (let k = 0; k < cls.length; k++) {
        const score = Math.sqrt(Math.min(Math.max(cls[k], 0), 1) * Math.min(Math.max(obj[k], 0), 1));
        if (score < this.minThreshold) continue;
        const bh = Math.exp(bbox[k * 4 + 3]) * stride; // the box's height at the network input
        if (score < this.thresholdFor(bh)) continue;
        const gx = k % cols, gy = Math.floor(k / cols);
        const cx = (gx + bbox[k * 4]) * stride, cy = (gy + bbox[k * 4 + 1]) * stride;
        const bw = Math.exp(bbox[k * 4 + 2]) * stride;
        const lm = [];
        for (let j = 0; j < 5; j++) lm.push([(kps[k * 10 + 2 * j] + gx) * stride * sx, (kps[k * 10 + 2 * j + 1] + gy) * stride * sy]);
        found.push({ box: [(cx - bw / 2) * sx, (cy - bh / 2) * sy, (cx + bw / 2) * sx, (cy + bh / 2) * sy], landmarks: lm, score });
      }
    }
    return found;
  }

  finish(rows, h, w) {
    rows.sort((a, b) => b.score - a.score);
    const area = (b) => Math.max(0, b[2] - b[0]) * Math.max(0, b[3] - b[1]);
    const inter = (a, b) => Math.max(0, Math.min(a[2], b[2]) - Math.max(a[0], b[0]))
      * Math.max(0, Math.min(a[3], b[3]) - Math.max(a[1], b[1]));
    // greedy NMS by overlap over union, then the survivors by overlap over the smaller box (a box mostly inside a
    // higher-scored one, or around it: the card's nms_containment), as agescan's YuNetDetector
    const greedy = (list, overlap, limit) => {
      const keep = [];
      for (const r of list) if (!keep.some((k) => overlap(r.box, k.box) > limit)) keep.push(r);
      return keep;
    };
    const iou = (a, b) => { const i = inter(a, b); return i / Math.max(area(a) + area(b) - i, 1e-12); };
    const iomin = (a, b) => inter(a, b) / Math.max(Math.min(area(a), area(b)), 1e-12);
    const keep = greedy(greedy(rows, iou, this.card.nms_iou), iomin, this.card.nms_containment);
    return keep.map((r) => {
      const box = [Math.max(0, r.box[0]), Math.max(0, r.box[1]), Math.min(w, r.box[2]), Math.min(h, r.box[3])];
      return { box, landmarks: this.order.map((i) => r.landmarks[i]), score: Math.min(Math.max(r.score, 0), 1) };
    }).filter((f) => f.box[2] - f.box[0] >= 2 && f.box[3] - f.box[1] >= 2);
  }
}

/** The page's detector: one YuNet-family detector, or a cascade whose first member's faces are kept and whose
 * second adds the faces the first does not find (a face whose centre lies in no kept box, and no kept box's
 * centre in it): agescan.detect.cascade's rule. */
export class PageDetector {
  constructor(members) { this.members = members; }

  static async load(info) {
    return new PageDetector(await Promise.all(info.members.map((m) => BrowserDetector.load(m))));
  }

  detect(canvas) {
    const [first, ...others] = this.members.map((m) => m.detect(canvas));
    const centre = (f) => [(f.box[0] + f.box[2]) / 2, (f.box[1] + f.box[3]) / 2];
    const inside = (f, [x, y]) => f.box[0] <= x && x <= f.box[2] && f.box[1] <= y && y <= f.box[3];
    const added = others.flat().filter((d) => !first.some((f) => inside(f, centre(d)) || inside(d, centre(f))));
    return [...first, ...added].sort((a, b) => b.score - a.score);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Covering the eyes: the geometry of agescan.privacy (band 25% of the face box's height, 95% of its width, centred
// between the eyes and turned along them); the mosaic (eye-band-mosaic) fills the band with blocks of a quarter of
// its height.
export function bandGeometry(face, heightFrac = 0.25, widthFrac = 0.95) {
  const [[lx, ly], [rx, ry]] = face.landmarks, [x1, y1, x2, y2] = face.box;
  const cx = (lx + rx) / 2, cy = (ly + ry) / 2, ang = Math.atan2(ry - ly, rx - lx);
  const halfW = (widthFrac * (x2 - x1)) / 2, halfH = (heightFrac * (y2 - y1)) / 2;
  const u = [Math.cos(ang), Math.sin(ang)], v = [-Math.sin(ang), Math.cos(ang)];
  const corner = (a, b) => [cx + a * halfW * u[0] + b * halfH * v[0], cy + a * halfW * u[1] + b * halfH * v[1]];
  return { cx, cy, u, v, halfW, halfH, corners: [corner(-1, -1), corner(1, -1), corner(1, 1), corner(-1, 1)] };
}

export function coverEyes(canvas, faces, how) {
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  for (const face of faces) {
    const g = bandGeometry(face);
    if (how === "eye-band-mosaic") mosaic(ctx, canvas, g, face);
    else {
      ctx.beginPath();
      g.corners.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
      ctx.closePath();
      ctx.fillStyle = "#000";
      ctx.fill();
    }
  }
}

function mosaic(ctx, canvas, g, face) {
  const block = Math.max(2, Math.round((0.25 * (face.box[3] - face.box[1])) / 4));
  const xs = g.corners.map((c) => c[0]), ys = g.corners.map((c) => c[1]);
  const x0 = Math.max(0, Math.floor(Math.min(...xs))), y0 = Math.max(0, Math.floor(Math.min(...ys)));
  const x1 = Math.min(canvas.width, Math.ceil(Math.max(...xs)) + 1), y1 = Math.min(canvas.height, Math.ceil(Math.max(...ys)) + 1);
  if (x1 <= x0 || y1 <= y0) return;
  const img = ctx.getImageData(x0, y0, x1 - x0, y1 - y0), d = img.data, rw = x1 - x0, rh = y1 - y0;
  const nbx = Math.ceil(rw / block), nby = Math.ceil(rh / block), sums = new Float64Array(nbx * nby * 4);
  for (let y = 0; y < rh; y++) for (let x = 0; x < rw; x++) {
    const b = (Math.floor(y / block) * nbx + Math.floor(x / block)) * 4, i = (y * rw + x) * 4;
    sums[b] += d[i]; sums[b + 1] += d[i + 1]; sums[b + 2] += d[i + 2]; sums[b + 3] += 1;
  }
  for (let y = 0; y < rh; y++) for (let x = 0; x < rw; x++) {
    const dx = x0 + x + 0.5 - g.cx, dy = y0 + y + 0.5 - g.cy;
    if (Math.abs(dx * g.u[0] + dy * g.u[1]) > g.halfW || Math.abs(dx * g.v[0] + dy * g.v[1]) > g.halfH) continue;
    const b = (Math.floor(y / block) * nbx + Math.floor(x / block)) * 4, i = (y * rw + x) * 4;
    for (let c = 0; c < 3; c++) d[i + c] = Math.round(sums[b + c] / sums[b + 3]);
  }
  ctx.putImageData(img, x0, y0);
}

// ---------------------------------------------------------------------------------------------------------------
// The page.
const MAX_UPLOAD_SIDE = 1280; // the photo sent is at most this large (faces stay far above what the model needs)
const $ = (id) => document.getElementById(id);
const state = { info: null, detector: null, blob: null, faces: null, stream: null };

function status(msg) { $("status").textContent = msg; }
function show(id, on = true) { $(id).hidden = !on; }
function headers() { const k = $("api-key").value.trim(); return k ? { "X-API-Key": k } : {}; }

async function detector() {
  if (!state.detector) {
    status("Loading the face finder (it runs in this browser)…");
    state.detector = await PageDetector.load(state.info.browser_detector);
  }
  return state.detector;
}

function toCanvas(source, w, h) {
  const scale = Math.min(1, MAX_UPLOAD_SIDE / Math.max(w, h));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(w * scale); canvas.height = Math.round(h * scale);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(source, 0, 0, canvas.width, canvas.height);
  return canvas;
}

async function process(canvas) {
  show("result", false);
  const det = await detector();
  status("Finding faces in this browser…");
  await new Promise((r) => setTimeout(r, 0)); // let the status paint before the work
  const faces = det.detect(canvas);
  if (!faces.length) {
    show("review", false);
    status("No face was found in this photo, so nothing can be sent. Try a photo facing the camera, in good light.");
    return;
  }
  coverEyes(canvas, faces, document.querySelector("input[name=cover]:checked").value);
  state.faces = faces;
  state.blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", 0.92));
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(state.blob);
  $("preview").src = state.previewUrl; // the very bytes that Send uploads
  $("review-h").textContent = "2. This is what would be sent";
  show("review-actions");
  $("review-note").textContent = `${faces.length === 1 ? "One face was" : `${faces.length} faces were`} found and the eyes ` +
    `covered, here in this browser. This photo (${Math.round(state.blob.size / 1024)} KB, ${canvas.width}x${canvas.height}, ` +
    "without the original file's metadata) is exactly what Send uploads. Nothing has been sent yet.";
  show("review");
  status("");
  $("review-h").focus();
}

async function send() {
  $("send").disabled = true;
  status("Sending the covered photo…");
  const form = new FormData();
  form.append("image", state.blob, "photo.jpg");
  form.append("faces", JSON.stringify(state.faces.map((f) => ({ box: f.box, landmarks: f.landmarks, score: f.score }))));
  const threshold = $("threshold").value;
  try {
    const res = await fetch(`/v1/age-check?threshold=${encodeURIComponent(threshold)}`, { method: "POST", body: form, headers: headers() });
    const body = await res.json();
    if (res.status === 401) { show("key-box"); status(body.error.message); return; }
    if (!res.ok) { status(`The check could not be made: ${body.error ? body.error.message : res.status}`); return; }
    showResult(body, threshold);
  } catch (e) {
    status(`The check could not be made: ${e.message}`);
  } finally {
    $("send").disabled = false;
  }
}

function showResult(r, threshold) {
  const d = $("decision");
  d.className = `decision ${r.decision}`;
  d.textContent = r.decision === "pass" ? `Passed: over ${threshold}` : r.decision === "fail" ? `Not passed: under ${threshold}` : "Not decided: another check is needed";
  const est = r.age === null ? "" : ` Estimated age ${Math.round(r.age)} (90% between ${Math.round(r.interval[0])} and ${Math.round(r.interval[1])}); ` +
    `probability of being under ${threshold}: ${(100 * r.p_under).toFixed(1)}%.`;
  $("detail").textContent = `${r.message}${est}`;
  $("review-h").textContent = "2. This is what was sent";
  $("review-note").textContent = "This covered photo is exactly what was sent. The server held it in memory for the " +
    "check only and kept nothing.";
  show("review-actions", false);
  show("result");
  status("");
  $("result-h").focus();
}

async function startCamera() {
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "user", width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false });
  } catch (e) {
    status(`The camera cannot be used (${e.name}); choose a photo instead.`);
    return;
  }
  const video = $("video");
  video.srcObject = state.stream;
  await video.play();
  show("camera");
  $("camera-take").focus();
}

function stopCamera() {
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  $("video").srcObject = null;
  show("camera", false);
}

async function takePhoto() {
  const video = $("video");
  const canvas = toCanvas(video, video.videoWidth, video.videoHeight);
  stopCamera(); // the camera is off as soon as the photo is taken
  await process(canvas);
}

async function chooseFile(file) {
  if (!file) return;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (e) {
    status("This file cannot be read as an image.");
    return;
  }
  const canvas = toCanvas(bitmap, bitmap.width, bitmap.height);
  bitmap.close();
  await process(canvas);
}

function discard() {
  state.blob = null; state.faces = null;
  $("preview").removeAttribute("src");
  $("file").value = "";
  show("review", false); show("result", false);
  status("Discarded; nothing was sent.");
}

async function init() {
  $("camera-start").addEventListener("click", startCamera);
  $("camera-take").addEventListener("click", () => takePhoto().catch((e) => status(e.message)));
  $("camera-stop").addEventListener("click", stopCamera);
  $("file").addEventListener("change", (e) => chooseFile(e.target.files[0]).catch((err) => status(err.message)));
  $("send").addEventListener("click", send);
  $("key-box").addEventListener("submit", (e) => { e.preventDefault(); send(); });
  $("discard").addEventListener("click", discard);
  $("again").addEventListener("click", () => { discard(); status(""); $("camera-start").focus(); });
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) $("camera-start").hidden = true;
  const res = await fetch("/v1/models");
  state.info = await res.json();
  if (state.info.api_key_required) show("key-box");
  document.body.dataset.ready = "1";
}

if (typeof document !== "undefined" && $("choose")) init().catch((e) => status(`This page cannot start: ${e.message}`));
