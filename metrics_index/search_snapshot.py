"""A namespace's search corpus in one file beside the stores, so that a one-shot search (`metrics-index search`)
answers without importing Chroma or reading and indexing every document of the namespace.

The index run writes it (`refreshing`, around the Chroma sync): before it writes to Chroma it sets the namespace's
snapshot aside, so no reader can take it for the new version; once the sync is done and the revision bumped it
reads the namespace back as a search would (search.load_corpus: only the documents whose hash is new, the others
from the snapshot set aside) and writes the corpus, BM25 indexes included, tagged with that revision, by an atomic
rename. A reader uses it only when it is current: with a Redis server, when the namespace's revision in Redis is
the one the snapshot was written at; with the embedded Redis of a home folder, when it is there at all (every
writer of the home's stores is a process on this machine using the same folder, which sets it aside first).
Anything else (no file, another revision, model or collection, other code, an unreadable file) makes the caller
read Chroma as before, so the answer is the one the store gives, never an older one. "Other code" matters because
the snapshot keeps derived fields (search terms, traits) and the next index run reuses them for unchanged
documents: a snapshot written before an upgrade or a new cue rule would otherwise answer as the old code did.

One .npz (no pickles): the unit vectors, each BM25 index's score matrix, and a JSON header with the documents'
names, hashes, kept fields, search terms and traits, in the corpus's (name) order.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from metrics_index.search import CorpusParts, NamespaceCorpus, bm25_from_scores, load_corpus

if TYPE_CHECKING:
    import bm25s

    from metrics_index.stores.semantic_index import SemanticIndex

log = logging.getLogger(__name__)

FORMAT = 1
SUFFIX = ".npz"
_ASIDE = ".aside"
_INDEXES = ("name", "text")


@functools.cache
def code_fingerprint() -> str:
    """The code that derived a snapshot's terms and traits: a hash of this package's Python sources (a few ms)."""
    digest = hashlib.sha256()
    package = Path(__file__).parent
    for source in sorted(package.rglob("*.py")):
        digest.update(source.relative_to(package).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()[:16]


def snapshot_file(folder: str | Path, namespace: str) -> Path:
    return Path(folder) / f"{namespace}{SUFFIX}"


def write(path: Path, corpus: NamespaceCorpus, revision: int, model: str, collection: str) -> None:
    """The corpus as one file, replaced atomically (a reader sees the old file or the new one, never a part)."""
    parts = corpus.parts
    header: dict[str, Any] = {
        "format": FORMAT,
        "code": code_fingerprint(),
        "revision": revision,
        "model": model,
        "collection": collection,
        "names": parts.names,
        "hashes": parts.hashes,
        "rows": parts.rows,
        "name_terms": parts.name_terms,
        "text_terms": parts.text_terms,
        "traits": [sorted(traits) for traits in parts.traits],
    }
    arrays = {"vectors": parts.vectors}
    for name, index in zip(_INDEXES, (corpus.name_index, corpus.text_index), strict=True):
        num_docs = int(index.scores["num_docs"])
        header[f"{name}_index"] = {"k1": index.k1, "b": index.b, "vocab": index.vocab_dict, "num_docs": num_docs}
        for key in ("data", "indices", "indptr"):
            arrays[f"{name}_{key}"] = np.asarray(index.scores[key])
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with partial.open("wb") as out:
        np.savez(out, **arrays)
    partial.replace(path)


def read(path: Path, revision: int | None, model: str, collection: str) -> NamespaceCorpus | None:
    """The snapshot's corpus, or None when its header says it is of another revision (None: any), model, collection
    or code; checked before the vectors and indexes are read. OSError or ValueError when unreadable."""
    with np.load(path, allow_pickle=False) as stored:
        header = json.loads(stored["header"].tobytes())
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} is a snapshot of format {header.get('format')}, not {FORMAT}")
        if revision is not None and header["revision"] != revision:
            return None
        if header["model"] != model or header["collection"] != collection or header.get("code") != code_fingerprint():
            return None
        parts = CorpusParts(
            names=header["names"],
            hashes=header["hashes"],
            rows=header["rows"],
            vectors=stored["vectors"],
            name_terms=header["name_terms"],
            text_terms=header["text_terms"],
            traits=[frozenset(traits) for traits in header["traits"]],
        )
        indexes = [_bm25(stored, header, name) for name in _INDEXES]
    return NamespaceCorpus.assemble(parts, *indexes, model=model)


def _bm25(stored: Any, header: dict[str, Any], name: str) -> bm25s.BM25:
    kept = header[f"{name}_index"]
    scores = {key: stored[f"{name}_{key}"] for key in ("data", "indices", "indptr")}
    return bm25_from_scores({**scores, "num_docs": kept["num_docs"]}, kept["vocab"], kept["k1"], kept["b"])


def current(path: Path, revision: int | None, model: str, collection: str) -> NamespaceCorpus | None:
    """The snapshot's corpus when it is of `revision` (None: whatever revision it has), `model`, `collection` and this
    code; None when it is missing, of something else, or unreadable (then the caller reads the store)."""
    try:
        return read(path, revision, model, collection)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError) as error:
        log.warning("search snapshot %s is unreadable (%s); reading the store instead", path, error)
        return None


@contextlib.contextmanager
def refreshing(
    folder: str, index: SemanticIndex, namespace: str, notify: Callable[[str], None]
) -> Iterator[Callable[[int], None]]:
    """Around a namespace's Chroma sync: sets its snapshot aside first; the caller calls the function it gets with
    the revision it recorded once the sync is done, which writes the new snapshot. A snapshot that cannot be written
    is a warning, not a failure: searches then read the store. Nothing happens without a folder."""
    if not folder:
        yield lambda revision: None
        return
    path = snapshot_file(folder, namespace)
    aside = path.with_name(path.name + _ASIDE)
    with contextlib.suppress(FileNotFoundError):
        path.replace(aside)

    def record(revision: int) -> None:
        try:
            held = current(aside, None, index.embedder.model_id, index.collection_name)
            corpus = load_corpus(index, namespace, held)
            if corpus is not None:
                write(path, corpus, revision, index.embedder.model_id, index.collection_name)
        except Exception as error:  # the index itself is done: a missing snapshot only makes the CLI slower
            notify(f"the search snapshot of {namespace} was not written ({type(error).__name__}: {error})")

    try:
        yield record
    finally:
        aside.unlink(missing_ok=True)
