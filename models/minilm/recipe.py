"""Build all-MiniLM-L6-v2 as ONNX straight from its safetensors weights: no torch, no hub.

The graph is the BERT encoder of `config.json` followed by sentence-transformers' mean pooling
and L2 normalisation, so the model's one output is the sentence embedding. It is written in
plain opset-12 ops laid out the way a PyTorch export lays them out, because that is what
onnxruntime's graph optimizer recognises when it loads the model: it fuses the embeddings, every
attention block, every LayerNorm with its residual Add and every GELU with its bias
(EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu). Its Attention fusion
matches op versions up to opset 12 only (Add 7/13, Unsqueeze 1/11, Cast 9, LayerNormalization
1): at opset 17 with the standard LayerNormalization it fuses no attention at all. The file
stays standard ONNX; the fusing happens on the device, in onnxruntime-web as in onnxruntime.

Reproducible: node and tensor names are fixed, initializers are raw little-endian bytes, and
the quantizer's version stamp is removed, so the same inputs give the same bytes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from onnx import ModelProto

OPSET = 12  # see the module docstring: the newest opset whose BERT pattern onnxruntime fuses
IR_VERSION = 7  # what opset 12 needs; onnx 1.23 writes a newer one that ORT 1.30 refuses
MASK_BIAS = -10000.0  # added to the scores of padding: what the optimizer's Attention fusion expects
POOLING_EPS = 1e-9  # sentence-transformers clamps the token count of mean pooling to this
NORM_EPS = 1e-12  # torch.nn.functional.normalize's default eps
FILES = {"encoder_fp32": "minilm-fp32.onnx", "encoder_int8": "minilm-int8.onnx", "tokenizer": "tokenizer.json"}
# Chosen by measuring the worst cosine to sentence-transformers over tests/fixtures/minilm_reference.json
# with every MatMul quantized: per-tensor weights 0.86, per-channel 0.98, reduce_range (7-bit) 0.66 and
# 0.98 (it guards against u8s8 overflow on AVX2 without VNNI, at a cost in accuracy everywhere else).
# quant_pre_process changed nothing (same worst cosine), so it is not run.
#
# Weights are uint8, not int8: with int8 weights onnxruntime's x86 kernels (u8s8) saturate on CPUs
# with AVX2 but no VNNI (vpmaddubsw adds pairs into 16 bits), which brought the worst reference
# cosine in a padded batch of 25 down to 0.978 on such a machine (AMD EPYC, 2026-12-02) while
# VNNI machines gave 0.994. u8u8 cannot overflow there: 0.996 single / 0.993 batched on that
# machine, reduce_range 0.995 / 0.991; onnxruntime-web (wasm) ran all three at the same speed
# (13.8 ms at batch 1, 420 ms at batch 32, Node, 1 thread).
QUANT_OPTIONS = {"per_channel": True, "reduce_range": False}
WEIGHT_TYPE = "QUInt8"
# A channel whose peak is this many times the median channel's is computed apart, in float (_quantize).
# Worst reference cosine single / in a batch of 25: 8 -> 0.994 / 0.989 (13 channels), 4 -> 0.996 / 0.994
# (72 channels, 4% slower in onnxruntime-web than 8).
OUTLIER_RATIO = 4.0


def build(out_dir: Path, progress: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Write the fp32 and int8 encoders and the tokenizer into `out_dir`; return their paths."""
    say = progress or (lambda _msg: None)
    source = _weights_module().model_dir()
    config = json.loads((source / "config.json").read_text())
    _check_pooling(source)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: out_dir / name for key, name in FILES.items()}

    say(f"building the {config['num_hidden_layers']}-layer encoder graph from {source / 'model.safetensors'}")
    model = encoder_model(_load_weights(source / "model.safetensors"), config)
    _save(model, paths["encoder_fp32"])
    say(f"wrote {paths['encoder_fp32'].name} ({paths['encoder_fp32'].stat().st_size / 1e6:.1f} MB)")

    say("quantizing to int8 (dynamic)")
    vocab = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))["model"]["vocab"]
    _quantize(model, paths["encoder_int8"], vocab)
    say(f"wrote {paths['encoder_int8'].name} ({paths['encoder_int8'].stat().st_size / 1e6:.1f} MB)")

    shutil.copyfile(source / "tokenizer.json", paths["tokenizer"])
    return paths


def encoder_model(weights: dict[str, np.ndarray], config: dict):
    """The ONNX model: (input_ids, attention_mask, token_type_ids) -> sentence_embedding."""
    import onnx
    from onnx import TensorProto, helper

    g = _Graph(weights)
    hidden = _embeddings(g, config)
    mask_bias = _mask_bias(g)
    for i in range(config["num_hidden_layers"]):
        hidden = _layer(g, f"encoder.layer.{i}", hidden, mask_bias, config)
    _mean_pool_and_normalise(g, hidden)

    dims = ["batch", "sequence"]
    names = ("input_ids", "attention_mask", "token_type_ids")
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in names]
    outputs = [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", config["hidden_size"]])]
    graph = helper.make_graph(g.nodes, "all_minilm_l6_v2", inputs, outputs, initializer=g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="waystation")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


class _Graph:
    """Nodes and initializers, each node named after its one output: fixed names, same bytes."""

    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights = weights
        self.nodes: list = []
        self.initializers: list = []
        self._constants: dict[str, str] = {}

    def op(self, op_type: str, inputs: list[str], output: str, **attrs) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def tensor(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def const(self, value, dtype=np.float32) -> str:
        """A shared constant initializer, named after its value."""
        array = np.asarray(value, dtype=dtype)
        key = f"const_{array.dtype}_{'_'.join(str(v) for v in array.ravel())}".replace("-", "m")
        if key not in self._constants:
            self._constants[key] = self.tensor(key, array)
        return self._constants[key]

    def weight(self, name: str, transpose: bool = False) -> str:
        """A weight of the checkpoint; Linear weights are [out, in], MatMul wants [in, out]."""
        value = self.weights[name]
        return self.tensor(name, value.T if transpose else value)

    def linear(self, x: str, prefix: str) -> str:
        product = self.op("MatMul", [x, self.weight(f"{prefix}.weight", transpose=True)], f"{prefix}/MatMul")
        return self.op("Add", [product, self.weight(f"{prefix}.bias")], f"{prefix}/Add")

    def layer_norm(self, x: str, prefix: str, eps: float) -> str:
        """LayerNorm over the last axis, spelt out as PyTorch exports it; ORT fuses it back."""
        mean = self.op("ReduceMean", [x], f"{prefix}/mean", axes=[-1])
        centred = self.op("Sub", [x, mean], f"{prefix}/centred")
        squared = self.op("Pow", [centred, self.const(2.0)], f"{prefix}/squared")
        variance = self.op("ReduceMean", [squared], f"{prefix}/variance", axes=[-1])
        std = self.op("Sqrt", [self.op("Add", [variance, self.const(eps)], f"{prefix}/variance_eps")], f"{prefix}/std")
        normed = self.op("Div", [centred, std], f"{prefix}/normed")
        scaled = self.op("Mul", [normed, self.weight(f"{prefix}.weight")], f"{prefix}/scaled")
        return self.op("Add", [scaled, self.weight(f"{prefix}.bias")], f"{prefix}/LayerNorm")


def _embeddings(g: _Graph, config: dict) -> str:
    """LayerNorm(word + position + token type), in the layout ORT fuses into EmbedLayerNormalization."""
    words = g.op("Gather", [g.weight("embeddings.word_embeddings.weight"), "input_ids"], "embeddings/words")
    shape = g.op("Shape", ["input_ids"], "embeddings/shape")
    length = g.op("Gather", [shape, g.const(1, np.int64)], "embeddings/length")
    position_ids = g.op("Range", [g.const(0, np.int64), length, g.const(1, np.int64)], "embeddings/range")
    position_ids = g.op("Unsqueeze", [position_ids], "embeddings/range_2d", axes=[0])
    position_ids = g.op("Expand", [position_ids, shape], "embeddings/position_ids")
    positions = g.op("Gather", [g.weight("embeddings.position_embeddings.weight"), position_ids], "embeddings/positions")
    types = g.op("Gather", [g.weight("embeddings.token_type_embeddings.weight"), "token_type_ids"], "embeddings/types")
    summed = g.op("Add", [g.op("Add", [words, positions], "embeddings/words_positions"), types], "embeddings/sum")
    return g.layer_norm(summed, "embeddings.LayerNorm", config["layer_norm_eps"])


def _mask_bias(g: _Graph) -> str:
    """[B, 1, 1, S]: 0 where attention_mask is 1, MASK_BIAS where it is 0 (padding)."""
    from onnx import TensorProto

    mask = g.op("Unsqueeze", ["attention_mask"], "mask/unsqueeze_1", axes=[1])
    mask = g.op("Unsqueeze", [mask], "mask/unsqueeze_2", axes=[2])
    mask = g.op("Cast", [mask], "mask/float", to=TensorProto.FLOAT)
    inverted = g.op("Sub", [g.const(1.0), mask], "mask/inverted")
    return g.op("Mul", [inverted, g.const(MASK_BIAS)], "mask/bias")


def _layer(g: _Graph, prefix: str, x: str, mask_bias: str, config: dict) -> str:
    attention = _self_attention(g, f"{prefix}.attention", x, mask_bias, config)
    h = g.layer_norm(g.op("Add", [attention, x], f"{prefix}.attention.output/residual"),
                     f"{prefix}.attention.output.LayerNorm", config["layer_norm_eps"])
    inner = _gelu(g, g.linear(h, f"{prefix}.intermediate.dense"), f"{prefix}.intermediate")
    out = g.linear(inner, f"{prefix}.output.dense")
    return g.layer_norm(g.op("Add", [out, h], f"{prefix}.output/residual"),
                        f"{prefix}.output.LayerNorm", config["layer_norm_eps"])


def _self_attention(g: _Graph, prefix: str, x: str, mask_bias: str, config: dict) -> str:
    heads = config["num_attention_heads"]
    head_size = config["hidden_size"] // heads
    split = g.const([0, 0, heads, head_size], np.int64)

    def project(name: str, perm: list[int]) -> str:
        y = g.linear(x, f"{prefix}.self.{name}")
        y = g.op("Reshape", [y, split], f"{prefix}.self.{name}/Reshape")
        return g.op("Transpose", [y], f"{prefix}.self.{name}/Transpose", perm=perm)

    q, k, v = project("query", [0, 2, 1, 3]), project("key", [0, 2, 3, 1]), project("value", [0, 2, 1, 3])
    scores = g.op("MatMul", [q, k], f"{prefix}.self/scores")
    scores = g.op("Div", [scores, g.const(math.sqrt(head_size))], f"{prefix}.self/scaled")
    scores = g.op("Add", [scores, mask_bias], f"{prefix}.self/masked")
    probs = g.op("Softmax", [scores], f"{prefix}.self/probs", axis=3)
    context = g.op("MatMul", [probs, v], f"{prefix}.self/context")
    context = g.op("Transpose", [context], f"{prefix}.self/context_t", perm=[0, 2, 1, 3])
    context = g.op("Reshape", [context, g.const([0, 0, config["hidden_size"]], np.int64)], f"{prefix}.self/merged")
    return g.linear(context, f"{prefix}.output.dense")


def _gelu(g: _Graph, x: str, prefix: str) -> str:
    """Exact GELU, x * 0.5 * (1 + erf(x / sqrt(2))), in the form onnxruntime fuses into Gelu."""
    erf = g.op("Erf", [g.op("Div", [x, g.const(math.sqrt(2.0))], f"{prefix}/gelu_div")], f"{prefix}/gelu_erf")
    one_plus = g.op("Add", [erf, g.const(1.0)], f"{prefix}/gelu_add")
    return g.op("Mul", [g.op("Mul", [x, one_plus], f"{prefix}/gelu_mul"), g.const(0.5)], f"{prefix}/gelu")


def _mean_pool_and_normalise(g: _Graph, hidden: str) -> str:
    """sentence-transformers' Pooling(mean) then Normalize, over the real (unmasked) tokens."""
    from onnx import TensorProto

    mask = g.op("Unsqueeze", ["attention_mask"], "pool/mask_3d", axes=[2])
    mask = g.op("Cast", [mask], "pool/mask", to=TensorProto.FLOAT)
    summed = g.op("ReduceSum", [g.op("Mul", [hidden, mask], "pool/masked")], "pool/sum", axes=[1], keepdims=0)
    count = g.op("ReduceSum", [mask], "pool/count_raw", axes=[1], keepdims=0)
    mean = g.op("Div", [summed, g.op("Max", [count, g.const(POOLING_EPS)], "pool/count")], "pool/mean")
    norm = g.op("ReduceL2", [mean], "pool/norm_raw", axes=[1], keepdims=1)
    return g.op("Div", [mean, g.op("Max", [norm, g.const(NORM_EPS)], "pool/norm")], "sentence_embedding")


def _quantize(fp32: ModelProto, int8_path: Path, vocab: dict[str, int]) -> None:
    """Dynamic int8 quantization of every weight, with the activations' outlier channels split off.

    A few hidden channels carry massive activations (channel 99 of the attention LayerNorm
    output reaches ~30 while the median channel stays under 2; one GELU channel reaches 14-25),
    and DynamicQuantizeLinear has one scale per tensor, so quantizing them as they are brought
    the worst reference sentence down to cosine 0.980. Each MatMul that reads such a tensor
    instead reads it with those channels zeroed, and a small float MatMul adds their exact
    contribution back: 0.996 per sentence, 0.994 in a padded batch of all 25. The channels are
    found by running the float model on random words of the vocabulary, not on any test text.
    Keeping the feed-forward MatMuls float instead reached 0.995 too, but ran 1.7x slower in
    onnxruntime-web (wasm, batch 32).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = ModelProto()
    model.CopyFrom(fp32)
    exact = _split_outliers(model, _outlier_channels(model, vocab))
    with tempfile.TemporaryDirectory(prefix="minilm-quant-") as tmp:
        split, raw = Path(tmp) / "split.onnx", Path(tmp) / "int8.onnx"
        split.write_bytes(model.SerializeToString())
        quantize_dynamic(split, raw, weight_type=getattr(QuantType, WEIGHT_TYPE), nodes_to_exclude=exact, **QUANT_OPTIONS)
        _save(onnx.load(raw), int8_path)


def _weight_matmuls(model: ModelProto) -> dict[str, list]:
    """MatMuls with a weight, grouped by the activation they read, in graph order."""
    weights = {t.name for t in model.graph.initializer}
    groups: dict[str, list] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def _outlier_channels(model: ModelProto, vocab: dict[str, int]) -> dict[str, np.ndarray]:
    """Channels of each MatMul input whose peak is over OUTLIER_RATIO times the median channel's."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    names = list(_weight_matmuls(model))
    probe = ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.extend(helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    found = {}
    for name, value in zip(names, session.run(names, _calibration_feeds(vocab))):
        peak = np.abs(value).max(axis=(0, 1))
        channels = np.flatnonzero(peak > OUTLIER_RATIO * np.median(peak))
        if channels.size:
            found[name] = channels
    return found


def _calibration_feeds(vocab: dict[str, int]) -> dict[str, np.ndarray]:
    """16 sequences of 46 random whole words from the vocabulary between [CLS] and [SEP]."""
    words = np.array(sorted(i for t, i in vocab.items() if t.isascii() and t.isalpha()), dtype=np.int64)
    ids = np.random.default_rng(0).choice(words, size=(16, 48))
    ids[:, 0], ids[:, -1] = vocab["[CLS]"], vocab["[SEP]"]
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def _split_outliers(model: ModelProto, outliers: dict[str, np.ndarray]) -> list[str]:
    """x @ W  ->  (x * inlier_mask) @ W[inliers] + x[..., outliers] @ W[outliers]. Returns the
    names of the small outlier MatMuls, which stay float."""
    from onnx import helper, numpy_helper

    groups = _weight_matmuls(model)
    weights = {t.name: t for t in model.graph.initializer}
    nodes, exact = [], []
    for node in model.graph.node:
        x = node.input[0] if node.op_type == "MatMul" else None
        if x not in outliers or node not in groups[x]:
            nodes.append(node)
            continue
        channels = outliers[x]
        if node is groups[x][0]:  # the first reader of x also splits it, once for all its readers
            mask = np.ones(weights[node.input[1]].dims[0], dtype=np.float32)
            mask[channels] = 0
            model.graph.initializer.extend([numpy_helper.from_array(mask, f"{x}_inlier_mask"),
                                            numpy_helper.from_array(channels.astype(np.int64), f"{x}_outlier_index")])
            nodes += [helper.make_node("Mul", [x, f"{x}_inlier_mask"], [f"{x}_inliers"], name=f"{x}_inliers"),
                      helper.make_node("Gather", [x, f"{x}_outlier_index"], [f"{x}_outliers"], name=f"{x}_outliers", axis=-1)]
        weight = numpy_helper.to_array(weights[node.input[1]]).copy()
        model.graph.initializer.append(numpy_helper.from_array(weight[channels], f"{node.input[1]}_outliers"))
        weight[channels] = 0
        weights[node.input[1]].CopyFrom(numpy_helper.from_array(weight, node.input[1]))
        out = node.output[0]
        exact.append(f"{node.name}_outliers")
        nodes.append(helper.make_node("MatMul", [f"{x}_outliers", f"{node.input[1]}_outliers"], [exact[-1]], name=exact[-1]))
        node.input[0], node.output[0] = f"{x}_inliers", f"{out}_inliers"
        nodes += [node, helper.make_node("Add", [node.output[0], exact[-1]], [out], name=f"{node.name}_split_sum")]
    _replace_nodes(model, nodes)
    return exact


def _replace_nodes(model: ModelProto, nodes: list) -> None:
    """Make `nodes` the graph's node list (copied first: some of them are in the list being cleared)."""
    from onnx import NodeProto

    copies = []
    for node in nodes:
        copies.append(NodeProto())
        copies[-1].CopyFrom(node)
    model.graph.ClearField("node")
    model.graph.node.extend(copies)


def _save(model, path: Path) -> None:
    """Serialise with no version stamps, so the bytes depend on the inputs alone."""
    model.producer_name = "waystation"
    model.producer_version = ""
    model.doc_string = ""
    path.write_bytes(model.SerializeToString(deterministic=True))


def _load_weights(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def _check_pooling(source: Path) -> None:
    """The pooling baked into the graph is mean pooling: refuse a checkpoint that says otherwise."""
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text())
    modes = sorted(k for k, v in pooling.items() if k.startswith("pooling_mode_") and v)
    if modes != ["pooling_mode_mean_tokens"]:
        raise ValueError(f"{source / '1_Pooling/config.json'}: expected mean pooling only, got {modes}")


def _weights_module():
    """models/ is not a package: load the sibling weights.py by path, under a name of its own."""
    path = Path(__file__).with_name("weights.py")
    spec = importlib.util.spec_from_file_location("waystation_minilm_weights", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
