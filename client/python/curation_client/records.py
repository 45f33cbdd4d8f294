"""Converts training records (dicts in TRL or KTO format) into curation.v1 Examples.

The rules are those of the CLI's file reader (formats/record_reader.cc), so that a record
ingested from Python and the same record ingested from a file get the same content hash, and
so the same id and duplicate detection:

  TRL, explicit prompt   {"prompt", "chosen", "rejected"}: strings or lists of
                         {"role", "content"} messages (joined as "role: content" lines)
  TRL, implicit prompt   {"chosen", "rejected"} as message lists (the shared leading messages
                         are the prompt) or as Anthropic HH transcripts (the prompt is the
                         shared prefix up to the last "\\n\\nAssistant:")
  KTO                    {"prompt", "completion", "label"}; label True/False or
                         "desirable"/"undesirable"

Any record may add "id" (string or integer), the vector fields "chosen_embedding",
"rejected_embedding" or "embedding" (for datasets with client vectors; lists or numpy arrays),
and other top-level strings, numbers or booleans, which become metadata. Unlike the file
reader, a nested "metadata" dict of scalars is accepted too.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any, NotRequired, TypedDict, Union

from curation_client._stubs import curation_pb2 as pb

_ASSISTANT = "\n\nAssistant:"
_EMBEDDING_FIELDS = ("chosen_embedding", "rejected_embedding", "embedding")
# Metadata values: numbers.Real covers numpy's scalars too.
_SCALARS = (str, bool, numbers.Real)


class RecordError(ValueError):
    """Input that cannot be sent: a record that cannot be converted, or an embeddings array
    that does not fit the records or the dataset. field names the offending field, reason
    says why; index is the record's position in an ingest's iterable (None otherwise)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field = field
        self.reason = reason
        self.index: int | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return (RecordError, (self.field, self.reason), {"index": self.index})


class TrlRecord(TypedDict):
    """An exported pair, as TRL's DPOTrainer and RewardTrainer read it."""
    prompt: str
    chosen: str
    rejected: str
    id: str
    metadata: NotRequired[dict[str, str]]


class KtoRecord(TypedDict):
    """An exported unpaired example, as TRL's KTOTrainer reads it."""
    prompt: str
    completion: str
    label: bool
    id: str
    metadata: NotRequired[dict[str, str]]


ExportedRecord = Union[TrlRecord, KtoRecord]


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _join_messages(field: str, messages: Sequence[Any], begin: int = 0) -> str:
    lines = []
    for i in range(begin, len(messages)):
        m = messages[i]
        if not isinstance(m, dict) or not isinstance(m.get("content"), str):
            raise RecordError(field, f"message {i} must be a dict with a string \"content\"")
        role = m.get("role") if isinstance(m.get("role"), str) else "user"
        lines.append(f"{role}: {m['content']}")
    return "\n".join(lines)


def _text_or_messages(record: Mapping[str, Any], field: str) -> str:
    if field not in record:
        raise RecordError(field, "missing")
    value = record[field]
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        return _join_messages(field, value)
    raise RecordError(field, f"must be a string or a list of messages, got {_type_name(value)}")


def _split_hh(chosen: str, rejected: str) -> tuple[str, str, str]:
    last = chosen.rfind(_ASSISTANT)
    if last < 0:
        raise RecordError("chosen", "HH transcript has no \"\\n\\nAssistant:\" turn")
    if rejected.startswith(chosen[:last + len(_ASSISTANT)]):
        cut = last + len(_ASSISTANT)
    else:
        # The transcripts diverge before chosen's last turn: cut at the last turn marker
        # inside their common prefix.
        common = 0
        while common < min(len(chosen), len(rejected)) and chosen[common] == rejected[common]:
            common += 1
        p = chosen[:common].rfind(_ASSISTANT)
        if p < 0:
            raise RecordError("chosen", "HH transcripts \"chosen\" and \"rejected\" share no "
                              "prefix ending in \"\\n\\nAssistant:\"")
        cut = p + len(_ASSISTANT)

    def answer(text: str) -> str:
        text = text[cut:]
        return text[1:] if text.startswith(" ") else text

    return chosen[:cut], answer(chosen), answer(rejected)


def _pair_texts(record: Mapping[str, Any]) -> tuple[str, str, str]:
    chosen, rejected = record["chosen"], record["rejected"]
    if "prompt" not in record and isinstance(chosen, (list, tuple)) and \
            isinstance(rejected, (list, tuple)):
        # TRL's implicit-prompt conversational form.
        shared = 0
        while shared + 1 < len(chosen) and shared + 1 < len(rejected) and \
                chosen[shared] == rejected[shared]:
            shared += 1
        return (_join_messages("chosen", chosen[:shared]),
                _join_messages("chosen", chosen, shared),
                _join_messages("rejected", rejected, shared))
    if "prompt" in record:
        return (_text_or_messages(record, "prompt"), _text_or_messages(record, "chosen"),
                _text_or_messages(record, "rejected"))
    if not isinstance(chosen, str):
        raise RecordError("chosen", f"must be a string, got {_type_name(chosen)}")
    if not isinstance(rejected, str):
        raise RecordError("rejected", f"must be a string, got {_type_name(rejected)}")
    return _split_hh(chosen, rejected)


def _label(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in ("desirable", "true"):
            return True
        if lowered in ("undesirable", "false"):
            return False
        raise RecordError("label", f"must be true/false or \"desirable\"/\"undesirable\", "
                          f"got \"{value}\"")
    raise RecordError("label", f"must be a bool or \"desirable\"/\"undesirable\", "
                      f"got {_type_name(value)}")


def _floats(field: str, value: Any) -> list[float]:
    if hasattr(value, "tolist"):  # numpy arrays, torch tensors
        value = value.tolist()
    if not isinstance(value, (list, tuple)) or \
            not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        raise RecordError(field, "must be a list of numbers")
    return [float(x) for x in value]


def _stringify(value: object) -> str:
    # As the file reader writes JSON scalars: shortest round-trip floats, exact integers.
    # float() and int() first, so numpy scalars print as plain numbers too.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return repr(float(value))
    return str(value)


def to_example(record: Mapping[str, Any]) -> pb.Example:
    """Returns the curation.v1.Example for one dict, or raises RecordError."""
    if not isinstance(record, Mapping):
        raise RecordError("", f"expected a dict, got {_type_name(record)}")
    example = pb.Example()
    if "completion" in record and "label" in record:
        u = example.unpaired
        u.prompt = _text_or_messages(record, "prompt")
        u.completion = _text_or_messages(record, "completion")
        u.label = pb.LABEL_DESIRABLE if _label(record["label"]) else pb.LABEL_UNDESIRABLE
        consumed: set[str] = {"prompt", "completion", "label"}
        if record.get("embedding") is not None:
            u.embedding.extend(_floats("embedding", record["embedding"]))
    elif "chosen" in record and "rejected" in record:
        p = example.pair
        p.prompt, p.chosen, p.rejected = _pair_texts(record)
        consumed = {"prompt", "chosen", "rejected"}
        for field in ("chosen_embedding", "rejected_embedding"):
            if record.get(field) is not None:
                getattr(p, field).extend(_floats(field, record[field]))
    else:
        raise RecordError("", "unrecognised record: expected TRL {prompt, chosen, rejected}, "
                          "{chosen, rejected}, or KTO {prompt, completion, label}")
    consumed.update(("id", "metadata") + _EMBEDDING_FIELDS)

    record_id = record.get("id")
    if isinstance(record_id, str):
        example.id = record_id
    elif isinstance(record_id, numbers.Integral) and not isinstance(record_id, bool):
        example.id = str(record_id)
    elif record_id is not None:
        raise RecordError("id", f"must be a string or an integer, got {_type_name(record_id)}")

    for key, value in record.items():
        if key not in consumed and isinstance(value, _SCALARS):
            example.metadata[key] = _stringify(value)
    nested = record.get("metadata")
    if nested is not None:
        if not isinstance(nested, Mapping):
            raise RecordError("metadata", "must be a dict")
        for key, value in nested.items():
            if not isinstance(value, _SCALARS):
                raise RecordError(f"metadata.{key}", "must be a string, number or boolean")
            example.metadata[str(key)] = _stringify(value)
    return example


def from_exported(record: pb.ExportedRecord) -> ExportedRecord:
    """A dict in the CLI's export format (TRL or KTO) for one curation.v1.ExportedRecord."""
    out: ExportedRecord
    if record.completion:
        out = KtoRecord(prompt=record.prompt, completion=record.completion, label=record.label,
                        id=record.id)
    else:
        out = TrlRecord(prompt=record.prompt, chosen=record.chosen, rejected=record.rejected,
                        id=record.id)
    if record.metadata:
        out["metadata"] = dict(record.metadata)
    return out


_TRL_COLUMNS = ("prompt", "chosen", "rejected")
_KTO_COLUMNS = ("prompt", "completion", "label")


def to_columns(records: Sequence[ExportedRecord], *, ids: bool = False,
               kto: bool | None = None) -> dict[str, list[Any]]:
    """Exported records as a trainer's columns ({prompt, chosen, rejected} or {prompt,
    completion, label}, plus id with ids), e.g. for datasets.Dataset.from_dict(). kto: the
    format of an empty list (default TRL); otherwise the records' own."""
    if records:
        kto = "completion" in records[0]
    names = (_KTO_COLUMNS if kto else _TRL_COLUMNS) + (("id",) if ids else ())
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for i, record in enumerate(records):
        for name in names:
            if name not in record:
                raise RecordError(f"records[{i}].{name}", "missing: the records mix TRL and KTO")
            columns[name].append(record[name])  # type: ignore[literal-required]
    return columns
