"""The learned triage model at run time: features and prediction in plain numpy, no scikit-learn.

Features of a transcript (the same code builds them for training, routing/training.py):

* character n-grams (2-5) of every word, lower case without diacritics, padded with spaces — robust to
  misrecognised, cut and inflected words ("nedycha", "nedíchá", "dýchat" share most of them);
* the word itself, its simplemma lemma, and word pairs (folded);
* the protocol's signals as heard by the rules ("s:" present, "n:" negated), the dialled number, the language.

Each feature is hashed (CRC-32) into 2^HASH_BITS buckets; training keeps the most informative buckets
(`keep`, sorted). A vector is sublinear term frequency x idf over the kept buckets, L2-normalised; every head
is a linear model (weights W, bias b) with a temperature fitted on out-of-fold predictions, so its
probabilities are calibrated. The file is a gzip of a JSON header and raw little-endian arrays: loading it
cannot run code (no pickle), and the same training input gives the same bytes (version = content hash).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import simplemma

from routing.text import _WORD_RE, fold

HASH_BITS = 20
NGRAMS = (2, 3, 4, 5)
MAGIC = b"IZSTRIAGEMODEL1\n"
DEFAULT_MODEL_FILE = Path(__file__).with_name("data") / "model" / "triage-model.bin.gz"
_LEMMA_LANGS = frozenset({"cs", "sk", "de", "en", "ru", "uk", "pl"})
_MASK = (1 << HASH_BITS) - 1

F32 = npt.NDArray[np.float32]


class ModelError(ValueError):
    """A model file that is missing, damaged or not a triage model."""

    error_id = "triage_model_invalid"


@lru_cache(maxsize=50_000)
def _lemma(word: str, language: str) -> str:
    try:
        return simplemma.lemmatize(word, lang=language)
    except (ValueError, KeyError):
        return word


def _h(feature: str) -> int:
    return zlib.crc32(feature.encode("utf-8")) & _MASK


@dataclass(frozen=True, slots=True)
class Features:
    """Hashed feature counts of one transcript, with the character span of the word behind each."""

    counts: Mapping[int, float]
    spans: Mapping[int, tuple[tuple[int, int], ...]]  # bucket -> word spans it came from (for explaining)


def extract(
    text: str,
    language: str,
    dialled: str,
    signals: Sequence[str] = (),
    negated: Sequence[str] = (),
    with_spans: bool = False,
) -> Features:
    counts: dict[int, float] = {}
    spans: dict[int, list[tuple[int, int]]] = {}

    def add(feature: str, span: tuple[int, int] | None) -> None:
        bucket = _h(feature)
        counts[bucket] = counts.get(bucket, 0.0) + 1.0
        if with_spans and span is not None:
            spans.setdefault(bucket, []).append(span)

    previous: tuple[str, int] | None = None
    lemma_language = language if language in _LEMMA_LANGS else ""
    for match in _WORD_RE.finditer(text):
        word = match.group(0)
        folded = fold(word).replace("'", "")
        span = (match.start(), match.end())
        padded = f" {folded} "
        for n in NGRAMS:
            for i in range(0, len(padded) - n + 1):
                add("c" + padded[i : i + n], span)
        add("w" + folded, span)
        if lemma_language:
            lemma = fold(_lemma(word.lower(), lemma_language))
            if lemma != folded:
                add("l" + lemma, span)
        if previous is not None:
            add("b" + previous[0] + " " + folded, (previous[1], match.end()))
        previous = (folded, match.start())
    for signal in signals:
        add("s" + signal, None)
    for signal in negated:
        add("n" + signal, None)
    add("d" + dialled.strip(), None)
    add("g" + (language or "").lower(), None)
    return Features(counts, {k: tuple(v) for k, v in spans.items()})


@dataclass(frozen=True, slots=True)
class Head:
    """One linear head: classes, weights (kept features x classes), bias, temperature."""

    name: str
    classes: tuple[str, ...]
    weights: F32
    bias: F32
    temperature: float
    multilabel: bool = False  # independent sigmoids (agency membership) instead of one softmax

    def probabilities(self, x_index: npt.NDArray[np.intp], x_value: F32) -> F32:
        logits = (
            x_value @ self.weights[x_index] if x_index.size else np.zeros(len(self.classes), np.float32)
        ) + self.bias
        logits = logits / self.temperature
        if self.multilabel:
            sigmoid: F32 = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
            return sigmoid
        logits = logits - logits.max()
        e = np.exp(logits)
        softmax: F32 = (e / e.sum()).astype(np.float32)
        return softmax


@dataclass(frozen=True, slots=True)
class Vector:
    index: npt.NDArray[np.intp]  # positions in `keep`
    value: F32
    buckets: npt.NDArray[np.int64]  # the hashed bucket of each position


class TriageModel:
    """A loaded model: vectorise a transcript, run every head, explain a class by word spans."""

    def __init__(
        self,
        keep: npt.NDArray[np.int64],
        idf: F32,
        heads: Mapping[str, Head],
        meta: Mapping[str, Any],
        digest: str,
    ) -> None:
        self.keep = keep
        self.idf = idf
        self.heads = dict(heads)
        self.meta = dict(meta)
        self.digest = digest

    @property
    def version(self) -> str:
        return f"model:{self.digest}"

    def vector(self, features: Features) -> Vector:
        if not features.counts:
            return Vector(np.zeros(0, np.intp), np.zeros(0, np.float32), np.zeros(0, np.int64))
        buckets = np.fromiter(features.counts.keys(), np.int64, len(features.counts))
        counts = np.fromiter(features.counts.values(), np.float32, len(features.counts))
        pos = np.searchsorted(self.keep, buckets)
        pos = np.minimum(pos, self.keep.size - 1)
        found = self.keep[pos] == buckets
        index = pos[found].astype(np.intp)
        value = ((1.0 + np.log(counts[found])) * self.idf[index]).astype(np.float32)
        norm = float(np.sqrt((value * value).sum()))
        if norm > 0:
            value = value / norm
        return Vector(index, value, buckets[found])

    def predict(self, vector: Vector) -> dict[str, dict[str, float]]:
        return {
            name: dict(
                zip(
                    head.classes,
                    (float(p) for p in head.probabilities(vector.index, vector.value)),
                    strict=True,
                )
            )
            for name, head in self.heads.items()
        }

    def explain(
        self, vector: Vector, features: Features, head: str, cls: str, top: int = 3
    ) -> list[tuple[tuple[int, int], float]]:
        """The word spans that weighed most for `cls`: each feature's weight for the class (against the mean of
        the other classes) times its value, shared over the words it came from; best `top` spans first."""
        h = self.heads[head]
        if cls not in h.classes or vector.index.size == 0:
            return []
        c = h.classes.index(cls)
        w = h.weights[vector.index]
        if len(h.classes) > 1 and not h.multilabel:
            margin = w[:, c] - (w.sum(axis=1) - w[:, c]) / (len(h.classes) - 1)
        else:
            margin = w[:, c]
        contribution = margin * vector.value
        by_span: dict[tuple[int, int], float] = {}
        for bucket, amount in zip(vector.buckets.tolist(), contribution.tolist(), strict=True):
            origins = features.spans.get(bucket, ())
            for span in origins:
                by_span[span] = by_span.get(span, 0.0) + amount / len(origins)
        best = sorted((item for item in by_span.items() if item[1] > 0), key=lambda kv: (-kv[1], kv[0]))
        # a word pair span overlapping a stronger single word adds nothing new to show
        out: list[tuple[tuple[int, int], float]] = []
        for span, amount in best:
            if any(s[0] < span[1] and span[0] < s[1] for s, _ in out):
                continue
            out.append((span, amount))
            if len(out) == top:
                break
        return out

    # ---------------------------------------------------------------------------------------- storage

    def to_bytes(self) -> bytes:
        arrays: list[tuple[str, np.ndarray]] = [
            ("keep", self.keep.astype("<i8")),
            ("idf", self.idf.astype("<f4")),
        ]
        heads_meta = []
        for name in sorted(self.heads):
            head = self.heads[name]
            arrays.append((f"{name}.weights", head.weights.astype("<f2")))
            arrays.append((f"{name}.bias", head.bias.astype("<f4")))
            heads_meta.append(
                {
                    "name": name,
                    "classes": list(head.classes),
                    "temperature": round(head.temperature, 4),
                    "multilabel": head.multilabel,
                }
            )
        layout = []
        offset = 0
        blobs = []
        for name, array in arrays:
            raw = np.ascontiguousarray(array).tobytes()
            layout.append(
                {"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset}
            )
            offset += len(raw)
            blobs.append(raw)
        header = json.dumps(
            {
                "hash_bits": HASH_BITS,
                "ngrams": list(NGRAMS),
                "heads": heads_meta,
                "arrays": layout,
                "meta": self.meta,
            },
            ensure_ascii=False,
            sort_keys=True,
        ).encode("utf-8")
        body = MAGIC + struct.pack("<I", len(header)) + header + b"".join(blobs)
        return gzip.compress(body, compresslevel=9, mtime=0)

    def save(self, path: Path) -> str:
        data = self.to_bytes()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return hashlib.sha256(data).hexdigest()[:12]

    @classmethod
    def load(cls, path: Path | None = None) -> TriageModel:
        path = path or DEFAULT_MODEL_FILE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelError(f"cannot read the triage model {path}: {exc.strerror or exc}") from exc
        return cls.from_bytes(data, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, where: str = "model") -> TriageModel:
        digest = hashlib.sha256(data).hexdigest()[:12]
        try:
            body = gzip.decompress(data)
            if not body.startswith(MAGIC):
                raise ModelError(f"{where}: not a triage model file")
            (size,) = struct.unpack_from("<I", body, len(MAGIC))
            start = len(MAGIC) + 4
            header = json.loads(body[start : start + size].decode("utf-8"))
            if not isinstance(header, dict):
                raise ModelError(f"{where}: the model header is not an object")
            if header.get("hash_bits") != HASH_BITS or tuple(header.get("ngrams", ())) != NGRAMS:
                raise ModelError(f"{where}: built with other features (hash_bits/ngrams) than this code")
            blob = memoryview(body)[start + size :]
            arrays: dict[str, np.ndarray] = {}
            for item in header["arrays"]:
                dtype = np.dtype(item["dtype"])
                count = int(np.prod(item["shape"])) if item["shape"] else 1
                end = int(item["offset"]) + count * dtype.itemsize
                if end > len(blob):
                    raise ModelError(f"{where}: array {item['name']} runs past the end of the file")
                arrays[item["name"]] = np.frombuffer(blob[int(item["offset"]) : end], dtype=dtype).reshape(
                    item["shape"]
                )
            heads = {}
            for meta in header["heads"]:
                name = str(meta["name"])
                weights = arrays[f"{name}.weights"].astype(np.float32)
                bias = arrays[f"{name}.bias"].astype(np.float32)
                classes = tuple(str(c) for c in meta["classes"])
                if weights.shape != (arrays["keep"].size, len(classes)) or bias.shape != (len(classes),):
                    raise ModelError(f"{where}: head {name} has the wrong shape")
                temperature = float(meta["temperature"])
                if not math.isfinite(temperature) or temperature <= 0:
                    raise ModelError(f"{where}: head {name} has a bad temperature")
                heads[name] = Head(
                    name, classes, weights, bias, temperature, bool(meta.get("multilabel", False))
                )
            keep = arrays["keep"].astype(np.int64)
            idf = arrays["idf"].astype(np.float32)
            if idf.shape != keep.shape or np.any(np.diff(keep) <= 0):
                raise ModelError(f"{where}: feature table damaged")
        except (
            OSError,
            EOFError,
            zlib.error,
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            IndexError,
            struct.error,
        ) as exc:
            if isinstance(exc, ModelError):
                raise
            raise ModelError(f"{where}: damaged triage model: {exc}") from exc
        return cls(keep, idf, heads, header.get("meta", {}), digest)
