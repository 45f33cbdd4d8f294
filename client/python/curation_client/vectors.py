"""Client vectors from numpy arrays: one array for a whole ingest instead of lists in records.

Layout, row i for the i-th record of the ingest:
  pairs datasets     (N, 2, dim): [i, 0] is record i's chosen vector, [i, 1] its rejected one
  unpaired datasets  (N, dim): row i is record i's completion vector
float32 or float16 (float64 is narrowed to float32, as the server stores float32).

A row reaches the message as the wire bytes of a packed repeated float field, merged into
it: the row is copied (and widened from float16) once, never turned into Python floats; on
4096-d pairs that is over 30x (float32) and 10x (float16) faster than extend(row.tolist())
(bench/vectors_bench.py). The array itself is not copied, so a memory-mapped .npy
(np.load(..., mmap_mode="r")) larger than memory works.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from curation_client._stubs import curation_pb2 as pb
from curation_client.records import RecordError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

FIELD = "embeddings"


def _numpy() -> Any:
    try:
        import numpy
    except ImportError as e:  # pragma: no cover - Debian's python3-numpy is a test dependency
        raise ImportError("ingest(..., embeddings=...) needs numpy (pip install "
                          "'curation-client[numpy]', Debian: python3-numpy)") from e
    return numpy


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _tag(message: Any, field: str) -> bytes:
    # Wire type 2 (length-delimited): a packed repeated float.
    return _varint(message.DESCRIPTOR.fields_by_name[field].number << 3 | 2)


_CHOSEN = _tag(pb.PreferencePair, "chosen_embedding")
_REJECTED = _tag(pb.PreferencePair, "rejected_embedding")
_UNPAIRED = _tag(pb.UnpairedExample, "embedding")


def _packed(tag: bytes, row: np.ndarray) -> bytes:
    data = row.astype("<f4", copy=False).tobytes()
    return tag + _varint(len(data)) + data


class Vectors:
    """A validated (N, 2, dim) or (N, dim) array for one ingest into one dataset."""

    def __init__(self, array: npt.ArrayLike, *, dataset: str, pairs: bool, dim: int) -> None:
        np = _numpy()
        try:
            a = np.asarray(array)
        except Exception as e:  # noqa: BLE001 - whatever the object's __array__ raises
            raise RecordError(FIELD, f"is not an array ({type(array).__name__}: {e})") from e
        if a.dtype.kind != "f":
            raise RecordError(FIELD, f"must be float32 or float16, got {a.dtype}")
        if dim <= 0:
            raise RecordError(FIELD, f"dataset \"{dataset}\" embeds its texts itself (it was "
                              "created without dim); vectors go only to a dataset created "
                              "with create_dataset(..., dim=D)")
        want = f"(N, 2, {dim}): [i, 0] chosen, [i, 1] rejected" if pairs else f"(N, {dim})"
        what = "pairs" if pairs else "unpaired examples"
        shape = (2, dim) if pairs else (dim,)
        if a.ndim != len(shape) + 1 or a.shape[1:] != shape:
            raise RecordError(FIELD, f"has shape {tuple(a.shape)}, but dataset \"{dataset}\" "
                              f"holds {what} of {dim}-d vectors: expected {want}")
        # Kept as given (a memory-mapped .npy stays on disk): each row becomes little-endian
        # float32, the wire form, only when its record is sent.
        self.array = a
        self.pairs = pairs

    def __len__(self) -> int:
        return int(self.array.shape[0])

    def attach(self, example: pb.Example, index: int) -> None:
        """Gives example row index's vectors; RecordError (field relative to the record) if
        the record does not fit the dataset or carries vectors of its own."""
        row = self.array[index]
        if self.pairs:
            if not example.HasField("pair"):
                raise RecordError("", "is not a pair, but the dataset holds pairs")
            p = example.pair
            for field in ("chosen_embedding", "rejected_embedding"):
                if len(getattr(p, field)):
                    raise RecordError(field, f"given both in the record and in {FIELD}")
            p.MergeFromString(_packed(_CHOSEN, row[0]) + _packed(_REJECTED, row[1]))
        else:
            if not example.HasField("unpaired"):
                raise RecordError("", "is not a KTO record, but the dataset holds unpaired "
                                  "examples")
            if len(example.unpaired.embedding):
                raise RecordError("embedding", f"given both in the record and in {FIELD}")
            example.unpaired.MergeFromString(_packed(_UNPAIRED, row))
