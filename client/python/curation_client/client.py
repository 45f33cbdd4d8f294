"""CurationClient: the curation.v1 API for training scripts and orchestrators."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, Union, cast, overload

import grpc

from curation_client._stubs import curation_pb2 as pb
from curation_client._stubs import curation_pb2_grpc
from curation_client.errors import CurationError, error, from_rpc
from curation_client.records import (ExportedRecord, RecordError, from_exported, to_columns,
                                     to_example)
from curation_client.vectors import Vectors

if TYPE_CHECKING:
    import numpy.typing as npt

# A budget: a count (5000), a fraction (0.1) or a percentage ("10%").
Budget = Union[int, float, str]
Method = Literal["isa", "random", "facility_location", "kcenter", "herding", "dedup"]
Unit = Literal["pair", "example"]

# The server's own limits (--max-records-per-request, --max-message-bytes defaults); batches
# stay well under both so that one long text does not fail a whole batch.
MAX_RECORDS_PER_REQUEST = 10_000
MAX_BATCH_BYTES = 16 << 20

# Retried by gRPC itself on UNAVAILABLE (a restarting or draining server): calls that change
# nothing, IngestExamples, which is idempotent because a re-sent record is a duplicate, and
# CancelOperation (cancelling twice is cancelling once). Select, the Start* calls,
# CreateDataset and DeleteDataset are not: their effect may already be done. Select and Start*
# with a request_id are retried by _call instead (retry=True), because then the server maps
# the retry onto the job the lost attempt started.
_RETRIED_METHODS = ("GetDataset", "ListDatasets", "IngestExamples", "GetExamples",
                    "GetSelection", "ListSelections", "ExportSelection", "EvaluateSelection",
                    "RecommendBudget", "GetOperation", "ListOperations", "WaitOperation",
                    "CancelOperation")
_KEYED_RETRY_ATTEMPTS = 5
_KEYED_RETRY_BACKOFF = 0.5  # seconds, doubled after each attempt
_SERVICE_CONFIG = json.dumps({
    "methodConfig": [{
        "name": [{"service": "curation.v1.CurationService", "method": m}
                 for m in _RETRIED_METHODS],
        "retryPolicy": {
            "maxAttempts": 5,
            "initialBackoff": "0.5s",
            "maxBackoff": "10s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]
})

_KINDS = {"pairs": pb.DATASET_KIND_PAIRS, "unpaired": pb.DATASET_KIND_UNPAIRED}
_ENCODINGS = {None: pb.EmbeddingConfig.ENCODING_UNSPECIFIED,
              "float32": pb.EmbeddingConfig.ENCODING_FLOAT32,
              "float16": pb.EmbeddingConfig.ENCODING_FLOAT16,
              "sq8": pb.EmbeddingConfig.ENCODING_SQ8}
_METHODS = {None: pb.SELECTION_METHOD_UNSPECIFIED,
            "isa": pb.SELECTION_METHOD_ISA, "random": pb.SELECTION_METHOD_RANDOM,
            "facility_location": pb.SELECTION_METHOD_FACILITY_LOCATION,
            "kcenter": pb.SELECTION_METHOD_KCENTER, "herding": pb.SELECTION_METHOD_HERDING,
            "dedup": pb.SELECTION_METHOD_DEDUP}
_METHOD_NAMES = {v: k for k, v in _METHODS.items() if k is not None}
_UNIT_NAMES = {pb.SELECTION_UNIT_PAIR: "pair", pb.SELECTION_UNIT_EXAMPLE: "example"}
_UNITS = {None: pb.SELECTION_UNIT_UNSPECIFIED, "pair": pb.SELECTION_UNIT_PAIR,
          "example": pb.SELECTION_UNIT_EXAMPLE}
_COVARIANCES = {None: pb.COVARIANCE_UNSPECIFIED, "diag": pb.COVARIANCE_DIAG,
                "spherical": pb.COVARIANCE_SPHERICAL, "full": pb.COVARIANCE_FULL}
_FORMATS = {None: pb.EXPORT_FORMAT_UNSPECIFIED, "trl": pb.EXPORT_FORMAT_TRL,
            "kto": pb.EXPORT_FORMAT_KTO}
_HEALTH = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
_STATES = {pb.OPERATION_STATE_QUEUED: "QUEUED", pb.OPERATION_STATE_RUNNING: "RUNNING",
           pb.OPERATION_STATE_SUCCEEDED: "SUCCEEDED", pb.OPERATION_STATE_FAILED: "FAILED",
           pb.OPERATION_STATE_CANCELLED: "CANCELLED"}
_OPERATION_KINDS = {pb.OPERATION_KIND_SELECT: "select", pb.OPERATION_KIND_EVALUATE: "evaluate",
                    pb.OPERATION_KIND_RECOMMEND_BUDGET: "recommend_budget"}
# google.rpc.Code numbers (an OperationError's code) to grpc.StatusCode.
_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclasses.dataclass
class IngestProgress:
    """Handed to an ingest progress callback after every acknowledged batch."""
    dataset: str
    sent: int  # records read from the iterable so far
    accepted: int
    duplicates: int
    rejected: int
    total: int | None  # len(records) when it has one
    elapsed_seconds: float
    finished: bool  # the last report of this ingest


@dataclasses.dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    # One RecordError per rejected record: .index is its position in the iterable, .field
    # the offending field ("examples[N]..." with N that same position), .reason why.
    errors: list[RecordError] = dataclasses.field(default_factory=list)
    # The stored id of every record in input order ("" for rejected ones).
    ids: list[str] = dataclasses.field(default_factory=list)
    # The dataset's example count after the last batch.
    example_count: int = 0


@dataclasses.dataclass
class Progress:
    """Handed to an evaluate/recommend_budget progress callback about five times a second."""
    stage: str  # e.g. "evaluate: subset, 5 random baselines of each kind, full pool (...)"
    fraction: float  # share of the work done, an estimate
    elapsed_seconds: float


@dataclasses.dataclass
class Accuracy:
    """Held-out pair accuracy of the proxy reward model, with its 95% Wilson interval."""
    accuracy: float
    low: float
    high: float
    correct: int
    pairs: int
    single_label: bool  # trained on one label only: chance (0.5)


@dataclasses.dataclass
class RandomBaseline:
    examples: int  # training completions per draw
    mean: float
    sd: float  # population standard deviation over the draws
    accuracies: list[float]


@dataclasses.dataclass
class Evaluation:
    """The result of evaluate(); see EvaluateSelection in curation.proto."""
    dataset: str
    selection_id: str  # "" for a method run on the pool
    method: str
    unit: str
    split_seed: int
    test_pairs: int
    pool_pairs: int
    subset: Accuracy
    subset_examples: int
    dropped_held_out: int  # items of held-out pairs: counted, never trained on
    random_pairs: RandomBaseline
    random_examples: RandomBaseline
    full: Accuracy
    duration_seconds: float


@dataclasses.dataclass
class CurvePoint:
    percent: float
    examples: int
    accuracy: Accuracy
    random_pairs: RandomBaseline | None  # with with_random


@dataclasses.dataclass
class ScalingLaw:
    """R(x) = r - (r - a) * exp(-b x), x in percent of the pool."""
    r: float
    a: float
    b: float
    r_squared: float
    rmse: float
    converged: bool

    def __call__(self, x: float) -> float:
        return self.r - (self.r - self.a) * math.exp(-self.b * x)


@dataclasses.dataclass
class BudgetRecommendation:
    """The result of recommend_budget(); see RecommendBudget in curation.proto."""
    dataset: str
    method: str
    unit: str
    split_seed: int
    test_pairs: int
    pool_pairs: int
    curve: list[CurvePoint]  # by increasing percent
    fit: ScalingLaw
    target_share: float
    percent: float | None  # None when the fitted curve never reaches the share
    examples: int
    extrapolated: bool  # the percent lies outside the measured budgets
    duration_seconds: float


def _accuracy(m: Any) -> Accuracy:
    return Accuracy(m.accuracy, m.low, m.high, m.correct, m.pairs, m.single_label)


def _baseline(m: Any) -> RandomBaseline:
    return RandomBaseline(m.examples, m.mean, m.sd, list(m.accuracies))


def _evaluation(m: Any) -> Evaluation:
    return Evaluation(m.dataset, m.selection_id, _METHOD_NAMES.get(m.method, str(m.method)),
                      _UNIT_NAMES.get(m.unit, str(m.unit)), m.split_seed, m.test_pairs,
                      m.pool_pairs, _accuracy(m.subset), m.subset_examples, m.dropped_held_out,
                      _baseline(m.random_pairs), _baseline(m.random_examples),
                      _accuracy(m.full), m.duration_seconds)


def _recommendation(m: Any) -> BudgetRecommendation:
    curve = [CurvePoint(p.percent, p.examples, _accuracy(p.accuracy),
                        _baseline(p.random_pairs) if p.HasField("random_pairs") else None)
             for p in m.curve]
    fit = ScalingLaw(m.fit.r, m.fit.a, m.fit.b, m.fit.r_squared, m.fit.rmse, m.fit.converged)
    return BudgetRecommendation(m.dataset, _METHOD_NAMES.get(m.method, str(m.method)),
                                _UNIT_NAMES.get(m.unit, str(m.unit)), m.split_seed,
                                m.test_pairs, m.pool_pairs, curve, fit, m.target_share,
                                m.percent if m.reached else None, m.examples, m.extrapolated,
                                m.duration_seconds)


def _proxy(split_seed: int | None, test_pairs: int, train_pairs: int,
           random_seeds: int) -> pb.ProxyOptions:
    proxy = pb.ProxyOptions(test_pairs=test_pairs, train_pairs=train_pairs,
                            random_seeds=random_seeds)
    if split_seed is not None:
        proxy.split_seed = split_seed
    return proxy


# What a done Operation yields: a Selection (select), an Evaluation or a BudgetRecommendation.
T = TypeVar("T")


class Operation(Generic[T]):
    """A job on the server: select, evaluate or recommend_budget with wait=False, or one
    found with get_operation / list_operations. The job runs whether or not this process
    stays; another process can pick it up by its name.

    name: "operations/<32 hex digits>". done, state ("QUEUED", "RUNNING", "SUCCEEDED",
    "FAILED", "CANCELLED"), kind ("select", "evaluate", "recommend_budget"), dataset,
    request_id and progress (a Progress) are as of the last reply from the server: refresh(),
    wait() and cancel() update them. proto is the curation.v1.Operation itself."""

    def __init__(self, client: CurationClient, proto: pb.Operation) -> None:
        self._client = client
        self.proto = proto

    def __repr__(self) -> str:
        return f"Operation({self.name!r}, {self.kind}, {self.state})"

    @property
    def name(self) -> str:
        return self.proto.name

    @property
    def done(self) -> bool:
        return self.proto.done

    @property
    def state(self) -> str:
        return _STATES.get(self.proto.metadata.state, "UNSPECIFIED")

    @property
    def kind(self) -> str:
        return _OPERATION_KINDS.get(self.proto.metadata.kind, "unspecified")

    @property
    def dataset(self) -> str:
        return self.proto.metadata.dataset

    @property
    def request_id(self) -> str:
        return self.proto.metadata.request_id

    @property
    def progress(self) -> Progress:
        p = self.proto.metadata.progress
        return Progress(p.stage, p.fraction, p.elapsed_seconds)

    def refresh(self) -> Operation[T]:
        """Fetches the operation as it is now; returns self."""
        self.proto = self._client._call("GetOperation", pb.GetOperationRequest(name=self.name))
        return self

    def cancel(self) -> Operation[T]:
        """Asks the job to stop (it ends CANCELLED within about a second, storing nothing);
        a done operation stays as it is. Returns self, as the server answered."""
        self.proto = self._client._call("CancelOperation",
                                        pb.CancelOperationRequest(name=self.name))
        return self

    def wait(self, timeout: float | None = None, *, poll: float = 5.0,
             progress: Callable[[Progress], object] | None = None) -> T:
        """Blocks until the job is done and returns its result, as the call with wait=True
        returns it: a curation.v1.Selection, an Evaluation or a BudgetRecommendation.

        Raises CurationError with the job's own code and message if it failed or was
        cancelled (code CANCELLED), and TimeoutError if timeout seconds (None: no limit) pass
        first; the job goes on either way. The server answers as soon as the job is done;
        poll only sets how often progress (a callable receiving Progress) hears of it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.done:
            wait = poll
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name} is {self.state} after {timeout}s")
                wait = min(poll, left)
            # The server refuses waits outside (0, 600] seconds; the call's own deadline must
            # outlast the wait, or every long wait would end DEADLINE_EXCEEDED.
            wait = min(max(wait, 0.001), 600.0)
            self.proto = self._client._call(
                "WaitOperation", pb.WaitOperationRequest(name=self.name, timeout_seconds=wait),
                timeout=wait + self._client.timeout)
            if progress and not self.done:
                progress(self.progress)
        return self.result()

    def result(self) -> T:
        """The result of a done operation (see wait); ValueError if it is not done yet."""
        if not self.done:
            raise ValueError(f"{self.name} is {self.state}, not done")
        field = self.proto.WhichOneof("result")
        if field == "error":
            failure = self.proto.error
            raise error(self.name, _STATUS_CODES.get(failure.code, grpc.StatusCode.UNKNOWN),
                        failure.message)
        if field == "selection":
            return cast(T, self.proto.selection)
        if field == "evaluation":
            return cast(T, _evaluation(self.proto.evaluation))
        if field == "recommendation":
            return cast(T, _recommendation(self.proto.recommendation))
        raise error(self.name, grpc.StatusCode.INTERNAL, "done without a result")


def _read(path_or_pem: str | bytes | None) -> bytes | None:
    if path_or_pem is None:
        return None
    if isinstance(path_or_pem, bytes):
        return path_or_pem
    if path_or_pem.lstrip().startswith("-----BEGIN"):
        return path_or_pem.encode()
    with open(path_or_pem, "rb") as f:
        return f.read()


V = TypeVar("V")


def _choice(what: str, table: Mapping[Any, V], value: Any) -> V:
    if value not in table:
        names = sorted(k for k in table if k is not None)
        raise ValueError(f"{what} must be one of {names}, got {value!r}")
    return table[value]


def _budget(budget: Budget) -> pb.Budget:
    """10 or "10" -> count 10; 0.1 or "10%" or "0.1" -> fraction 0.1."""
    if isinstance(budget, str):
        text = budget.strip()
        if text.endswith("%"):
            return pb.Budget(fraction=float(text[:-1]) / 100)
        budget = float(text) if any(c in text for c in ".eE") else int(text)
    if isinstance(budget, bool) or not isinstance(budget, (int, float)):
        raise ValueError(f"budget must be a count, a fraction or a percentage, got {budget!r}")
    if isinstance(budget, int):
        return pb.Budget(count=budget)
    return pb.Budget(fraction=budget)


class CurationClient:
    """A connection to one curation server.

    target: "host:port"; default $CURATION_SERVER, else 127.0.0.1:50051.
    token: the API token sent as "authorization: Bearer ..."; default $CURATION_TOKEN.
    tls_ca: CA certificate (path or PEM) to verify the server with; default $CURATION_TLS_CA.
      Giving it (or tls=True, which uses the system's roots) turns TLS on.
    tls_cert, tls_key: a client certificate for mutual TLS.
    server_name: the name the server's certificate must carry, when it differs from the
      host of target (e.g. connecting to an IP address).
    timeout: deadline in seconds of every short call; select() and export() take their own.
    """

    def __init__(self, target: str | None = None, *, token: str | None = None,
                 tls: bool | None = None, tls_ca: str | bytes | None = None,
                 tls_cert: str | bytes | None = None, tls_key: str | bytes | None = None,
                 server_name: str | None = None, timeout: float = 60.0) -> None:
        self.target = target or os.environ.get("CURATION_SERVER") or "127.0.0.1:50051"
        token = token if token is not None else os.environ.get("CURATION_TOKEN", "")
        tls_ca = tls_ca if tls_ca is not None else os.environ.get("CURATION_TLS_CA") or None
        self.timeout = timeout
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [
            # Selections of large datasets are big messages; the server caps them itself.
            ("grpc.max_receive_message_length", 256 << 20),
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
        ]
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if tls or tls_ca or tls_cert:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read(tls_ca), private_key=_read(tls_key),
                certificate_chain=_read(tls_cert))
            if server_name:
                options.append(("grpc.ssl_target_name_override", server_name))
            self._channel = grpc.secure_channel(self.target, credentials, options)
        else:
            self._channel = grpc.insecure_channel(self.target, options)
        self._stub = curation_pb2_grpc.CurationServiceStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> CurationClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CurationClient({self.target!r})"

    def _call(self, name: str, request: Any, timeout: float | None = None,
              retry: bool = False) -> Any:
        """retry: resend on UNAVAILABLE (for calls the service config does not retry, which
        are safe to resend only because their request carries a request_id)."""
        backoff = _KEYED_RETRY_BACKOFF
        for attempt in range(1, _KEYED_RETRY_ATTEMPTS + 1):
            try:
                return getattr(self._stub, name)(request, timeout=timeout or self.timeout,
                                                 metadata=self._metadata)
            except grpc.RpcError as e:
                if (retry and e.code() == grpc.StatusCode.UNAVAILABLE
                        and attempt < _KEYED_RETRY_ATTEMPTS):
                    time.sleep(backoff)
                    backoff *= 2
                    continue
                raise from_rpc(name, e) from None

    def _start(self, method: str, request: Any, request_id: str | None) -> Operation[Any]:
        return Operation(self, self._call(method, request, retry=bool(request_id)))

    # -------------------------------------------------------------------------------------
    # Health

    def health(self, timeout: float = 5.0) -> str:
        """The server's grpc.health.v1 status: "SERVING", "NOT_SERVING" (loading indexes or
        draining), or "UNAVAILABLE" when it cannot be reached."""
        # Raw bytes instead of generated stubs: the health proto's Python package would be
        # named `grpc` and shadow grpcio itself. The request is empty (service ""); the reply
        # has the status as field 1, a varint.
        check = self._channel.unary_unary("/grpc.health.v1.Health/Check")
        try:
            reply = check(b"", timeout=timeout)
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return "UNAVAILABLE"
            raise from_rpc("Health/Check", e) from None
        status = reply[1] if len(reply) == 2 and reply[0] == 0x08 else 0
        return _HEALTH.get(status, "UNKNOWN")

    def wait_until_serving(self, timeout: float = 300.0) -> None:
        """Blocks until the server is SERVING (it loads every index first); raises
        TimeoutError after timeout seconds."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.health(timeout=min(5.0, max(0.1, deadline - time.monotonic())))
            if status == "SERVING":
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{self.target} is {status} after {timeout}s")
            time.sleep(0.5)

    # -------------------------------------------------------------------------------------
    # Datasets

    def create_dataset(self, name: str, *, kind: Literal["pairs", "unpaired"] = "pairs",
                       dim: int | None = None, description: str = "",
                       encoding: Literal["float32", "float16", "sq8"] | None = None,
                       project: int | None = None, keep_original: bool = False,
                       exist_ok: bool = False, member: str = "",
                       partitions: int = 0) -> pb.Dataset:
        """Creates a dataset and returns it (a curation.v1.Dataset).

        kind: "pairs" (DPO, reward models) or "unpaired" (KTO). Without dim the server embeds
        the texts with its built-in embedder; with dim every record must carry its own
        dim-dimensional vectors. encoding: how the server holds the vectors (None: the
        server's default); float16 and sq8 are lossy (README, "Vectors: encodings and
        projections"). project: PCA to that many dimensions, fitted on the first ingest
        (client vectors only), keep_original: store the client's vectors too. exist_ok:
        return the existing dataset of that name instead of raising ALREADY_EXISTS (its kind
        and embedding are not compared). On a cluster: member places the dataset (or its
        partition 0) on that member; partitions > 1 spreads the examples over that many
        members by a hash of their ids (the dataset's partition_members)."""
        embedding = pb.EmbeddingConfig(source=pb.EmbeddingConfig.SOURCE_BUILTIN)
        if dim is not None:
            embedding = pb.EmbeddingConfig(source=pb.EmbeddingConfig.SOURCE_CLIENT, dim=dim)
        embedding.encoding = _choice("encoding", _ENCODINGS, encoding)
        if project is not None:
            embedding.projection.dim = project
        embedding.projection.keep_original = keep_original
        request = pb.CreateDatasetRequest(dataset=pb.Dataset(
            name=name, kind=_choice("kind", _KINDS, kind), embedding=embedding,
            description=description), member=member, partitions=partitions)
        try:
            return self._call("CreateDataset", request)
        except CurationError as e:
            if exist_ok and e.code == grpc.StatusCode.ALREADY_EXISTS:
                return self.get_dataset(name)
            raise

    def get_dataset(self, name: str) -> pb.Dataset:
        return self._call("GetDataset", pb.GetDatasetRequest(name=name))

    def list_datasets(self) -> list[pb.Dataset]:
        """Every dataset the token may see, in name order (all pages)."""
        datasets, token = [], ""
        while True:
            reply = self._call("ListDatasets", pb.ListDatasetsRequest(page_size=1000,
                                                                      page_token=token))
            datasets.extend(reply.datasets)
            token = reply.next_page_token
            if not token:
                return datasets

    def delete_dataset(self, name: str) -> pb.DeleteDatasetResponse:
        return self._call("DeleteDataset", pb.DeleteDatasetRequest(name=name))

    # -------------------------------------------------------------------------------------
    # Ingest

    def ingest(self, dataset: str, records: Iterable[Mapping[str, Any]], *,
               embeddings: npt.ArrayLike | None = None, batch_size: int = 1000,
               progress: bool | Callable[[IngestProgress], object] = True) -> IngestResult:
        """Sends an iterable of dicts (TRL or KTO format, see curation_client.records) in
        batches and returns an IngestResult. Each batch is durable when acknowledged.

        Safe to run again after a failure: records already stored come back as duplicates.
        A record that cannot be converted is counted as rejected, like one the server
        rejects, and the rest go on. progress: True prints to stderr, False is silent, a
        callable receives an IngestProgress after every batch.

        embeddings: for a dataset created with dim, the records' vectors as one numpy array
        (float32 or float16), row i for record i: (N, 2, dim) for pairs ([i, 0] chosen,
        [i, 1] rejected), (N, dim) for unpaired datasets. A wrong dtype or shape, or a row
        count other than the records', raises RecordError (field "embeddings") before
        anything is sent when records has a len(), or on reaching the mismatch otherwise."""
        batch_size = max(1, min(batch_size, MAX_RECORDS_PER_REQUEST))
        if hasattr(records, "iterrows") and hasattr(records, "to_dict"):
            records = records.to_dict(orient="records")  # a pandas DataFrame: its rows
        total = len(records) if isinstance(records, Sized) else None
        vectors = None
        if embeddings is not None:
            info = self.get_dataset(dataset)
            client = info.embedding.source == pb.EmbeddingConfig.SOURCE_CLIENT
            vectors = Vectors(embeddings, dataset=dataset,
                              pairs=info.kind == pb.DATASET_KIND_PAIRS,
                              dim=info.embedding.dim if client else 0)
            if total is not None and total != len(vectors):
                raise RecordError("embeddings", f"has {len(vectors)} rows for {total} records")
        report = self._progress_printer() if progress is True else (progress or None)
        result = IngestResult()
        started = time.monotonic()
        batch: list[pb.Example] = []
        positions: list[int] = []
        batch_bytes, sent = 0, 0

        def flush(done: int, finished: bool = False) -> None:
            nonlocal batch, positions, batch_bytes
            if batch:
                reply = self._call("IngestExamples",
                                   pb.IngestExamplesRequest(dataset=dataset, examples=batch))
                result.accepted += reply.accepted
                result.duplicates += reply.duplicates
                result.rejected += reply.rejected
                result.example_count = reply.example_count
                for i, record_id in enumerate(reply.ids):
                    result.ids[positions[i]] = record_id
                for rejected in reply.errors:
                    # The server numbers records within the batch; callers think in their
                    # own iterable's positions.
                    index = positions[rejected.index]
                    field = re.sub(r"^examples\[\d+\]", f"examples[{index}]", rejected.field)
                    result.errors.append(_rejection(index, field, rejected.reason))
            batch, positions, batch_bytes = [], [], 0
            if report:
                report(IngestProgress(dataset, done, result.accepted, result.duplicates,
                                      result.rejected, total, time.monotonic() - started,
                                      finished))

        for index, record in enumerate(records):
            if vectors is not None and index >= len(vectors):
                raise RecordError("embeddings", f"has {len(vectors)} rows but the records go on "
                                  "past them")
            sent += 1
            result.ids.append("")
            try:
                example = to_example(record)
                if vectors is not None:
                    vectors.attach(example, index)
            except RecordError as e:
                result.rejected += 1
                result.errors.append(_rejection(index, f"examples[{index}]"
                                                + (f".{e.field}" if e.field else ""), e.reason))
                continue
            size = example.ByteSize()
            if batch and (len(batch) >= batch_size or batch_bytes + size > MAX_BATCH_BYTES):
                flush(done=index)
            batch.append(example)
            positions.append(index)
            batch_bytes += size
        flush(done=sent, finished=True)
        if vectors is not None and sent != len(vectors):
            raise RecordError("embeddings", f"has {len(vectors)} rows for {sent} records (the "
                              "records were sent without the extra rows)")
        return result

    @staticmethod
    def _progress_printer() -> Callable[[IngestProgress], None]:
        tty = sys.stderr.isatty()
        last = [0.0]

        def report(p: IngestProgress) -> None:
            now = time.monotonic()
            # On a terminal, one line redrawn; in a log, a line every 10 seconds and the last.
            if not tty and not p.finished and now - last[0] < 10:
                return
            last[0] = now
            of = f"/{p.total:,} ({100 * p.sent / max(1, p.total):.0f}%)" if p.total else ""
            rate = p.sent / max(p.elapsed_seconds, 1e-9)
            line = (f"ingest {p.dataset}: {p.sent:,}{of} records, accepted {p.accepted:,}, "
                    f"duplicates {p.duplicates:,}, rejected {p.rejected:,}, {rate:,.0f}/s")
            sys.stderr.write(("\r" + line + ("\n" if p.finished else "")) if tty else line + "\n")
            sys.stderr.flush()

        return report

    def get_examples(self, dataset: str, ids: Sequence[str], *,
                     include_embeddings: bool = False) -> list[pb.Example]:
        """The stored examples of those ids (at most 1,000), in the order asked; with
        include_embeddings their vectors too (as stored: float32)."""
        return list(self._call("GetExamples", pb.GetExamplesRequest(
            dataset=dataset, ids=list(ids), include_embeddings=include_embeddings)).examples)

    # -------------------------------------------------------------------------------------
    # Selection and export

    @overload
    def select(self, dataset: str, budget: Budget, *, method: Method | None = ...,
               unit: Unit | None = ..., seed: int = ..., name: str = ...,
               covariance: Literal["diag", "spherical", "full"] | None = ...,
               isa: Mapping[str, Any] | None = ..., wait: Literal[True] = ...,
               request_id: str | None = ...,
               timeout: float = ...) -> pb.Selection: ...

    @overload
    def select(self, dataset: str, budget: Budget, *, method: Method | None = ...,
               unit: Unit | None = ..., seed: int = ..., name: str = ...,
               covariance: Literal["diag", "spherical", "full"] | None = ...,
               isa: Mapping[str, Any] | None = ..., wait: Literal[False],
               request_id: str | None = ...,
               timeout: float = ...) -> Operation[pb.Selection]: ...

    @overload
    def select(self, dataset: str, budget: Budget, *, method: Method | None = ...,
               unit: Unit | None = ..., seed: int = ..., name: str = ...,
               covariance: Literal["diag", "spherical", "full"] | None = ...,
               isa: Mapping[str, Any] | None = ..., wait: bool = ...,
               request_id: str | None = ...,
               timeout: float = ...) -> pb.Selection | Operation[pb.Selection]: ...

    def select(self, dataset: str, budget: Budget, *, method: Method | None = None,
               unit: Unit | None = None, seed: int = 0, name: str = "",
               covariance: Literal["diag", "spherical", "full"] | None = None,
               isa: Mapping[str, Any] | None = None, wait: bool = True,
               request_id: str | None = None,
               timeout: float = 3600.0) -> pb.Selection | Operation[pb.Selection]:
        """Chooses a subset and returns the stored curation.v1.Selection (its .id, .summary
        and .items, best first).

        budget: a count (5000), a fraction (0.1) or a percentage ("10%"). method: None for
        the server's default (herding, chosen by measurement), or "isa", "random",
        "facility_location", "kcenter", "herding", "dedup". unit: "pair" or "example"
        (default: pair for pair datasets). covariance and isa (a dict of the other IsaOptions
        fields, e.g. {"n_init": 5, "pca_dim": 64}) are ISA's options. The same dataset
        contents, parameters and seed give the same selection.

        wait=False returns an Operation at once instead; its wait() returns the Selection.
        request_id (at most 128 printable bytes) makes the call idempotent: the same request
        with the same id returns the first one's operation and result (ALREADY_EXISTS for a
        different request), so the call is then retried after UNAVAILABLE."""
        request = pb.SelectRequest(dataset=dataset, budget=_budget(budget),
                                   method=_choice("method", _METHODS, method),
                                   unit=_choice("unit", _UNITS, unit), seed=seed,
                                   display_name=name, request_id=request_id or "")
        if isa:
            request.isa.CopyFrom(pb.IsaOptions(**isa))
        if covariance is not None:
            request.isa.covariance = _choice("covariance", _COVARIANCES, covariance)
        if not wait:
            return self._start("StartSelect", request, request_id)
        return self._call("Select", request, timeout=timeout, retry=bool(request_id))

    def get_selection(self, selection_id: str, *, items: bool = True) -> pb.Selection:
        view = pb.SELECTION_VIEW_FULL if items else pb.SELECTION_VIEW_BASIC
        return self._call("GetSelection", pb.GetSelectionRequest(id=selection_id, view=view))

    def list_selections(self, dataset: str) -> list[pb.Selection]:
        """Every selection of a dataset, newest first, without items (all pages)."""
        selections, token = [], ""
        while True:
            reply = self._call("ListSelections", pb.ListSelectionsRequest(
                dataset=dataset, page_size=1000, page_token=token))
            selections.extend(reply.selections)
            token = reply.next_page_token
            if not token:
                return selections

    @overload
    def export(self, selection: pb.Selection | str, *,
               format: Literal["trl", "kto"] | None = ..., path: None = ...,
               timeout: float = ...) -> list[ExportedRecord]: ...

    @overload
    def export(self, selection: pb.Selection | str, *,
               format: Literal["trl", "kto"] | None = ..., path: str | os.PathLike[str],
               timeout: float = ...) -> int: ...

    def export(self, selection: pb.Selection | str, *,
               format: Literal["trl", "kto"] | None = None,
               path: str | os.PathLike[str] | None = None,
               timeout: float = 3600.0) -> list[ExportedRecord] | int:
        """The selected examples as training records, in selection order.

        selection: a Selection or its id. format: "trl" ({prompt, chosen, rejected, id}) or
        "kto" ({prompt, completion, label, id}, label a bool); default TRL for pair
        selections, KTO otherwise; "metadata" is added when the record has any. Returns a
        list of dicts, or with path writes them as JSON Lines (the CLI's export format) and
        returns how many were written. export_columns() gives exactly a trainer's columns."""
        selection_id = selection if isinstance(selection, str) else selection.id
        request = pb.ExportSelectionRequest(selection_id=selection_id,
                                            format=_choice("format", _FORMATS, format))
        records: list[ExportedRecord] = []
        out = open(path, "w", encoding="utf-8") if path else None
        count = 0
        try:
            for reply in self._stub.ExportSelection(request, timeout=timeout,
                                                    metadata=self._metadata):
                for exported in reply.records:
                    record = from_exported(exported)
                    if out:
                        record.pop("metadata", None)
                        out.write(json.dumps(record, ensure_ascii=False) + "\n")
                    else:
                        records.append(record)
                    count += 1
        except grpc.RpcError as e:
            raise from_rpc("ExportSelection", e) from None
        finally:
            if out:
                out.close()
        return count if path else records

    def export_columns(self, selection: pb.Selection | str, *,
                       format: Literal["trl", "kto"] | None = None, ids: bool = False,
                       timeout: float = 3600.0) -> dict[str, list[Any]]:
        """The selected examples as the columns a trainer takes, in selection order:
        {"prompt", "chosen", "rejected"} (TRL's DPOTrainer, RewardTrainer) or {"prompt",
        "completion", "label"} (KTOTrainer; label a bool), each a list of strings (of bools
        for label); with ids also "id". Hand it to datasets.Dataset.from_dict()."""
        return to_columns(self.export(selection, format=format, timeout=timeout), ids=ids,
                          kto=format == "kto")

    # -------------------------------------------------------------------------------------
    # Evaluation: the proxy reward model (a linear Bradley-Terry model on the embeddings),
    # trained on a subset and scored on held-out pairs. Pairs datasets only; nothing is stored.
    # The held-out split: split_seed (default 1), test_pairs (default 5,000, at most 20% of
    # the pairs), train_pairs (the pool methods select from; default all the rest),
    # random_seeds (random subsets per baseline; default 5, at most 50).

    @overload
    def evaluate(self, selection: pb.Selection | str | None = ..., *, count: int = ...,
                 dataset: str | None = ..., budget: Budget | None = ...,
                 method: Method | None = ..., unit: Unit | None = ..., seed: int = ...,
                 split_seed: int | None = ..., test_pairs: int = ..., train_pairs: int = ...,
                 random_seeds: int = ..., progress: Callable[[Progress], object] | None = ...,
                 wait: Literal[True] = ..., request_id: str | None = ...,
                 timeout: float = ...) -> Evaluation: ...

    @overload
    def evaluate(self, selection: pb.Selection | str | None = ..., *, count: int = ...,
                 dataset: str | None = ..., budget: Budget | None = ...,
                 method: Method | None = ..., unit: Unit | None = ..., seed: int = ...,
                 split_seed: int | None = ..., test_pairs: int = ..., train_pairs: int = ...,
                 random_seeds: int = ..., progress: Callable[[Progress], object] | None = ...,
                 wait: Literal[False], request_id: str | None = ...,
                 timeout: float = ...) -> Operation[Evaluation]: ...

    @overload
    def evaluate(self, selection: pb.Selection | str | None = ..., *, count: int = ...,
                 dataset: str | None = ..., budget: Budget | None = ...,
                 method: Method | None = ..., unit: Unit | None = ..., seed: int = ...,
                 split_seed: int | None = ..., test_pairs: int = ..., train_pairs: int = ...,
                 random_seeds: int = ..., progress: Callable[[Progress], object] | None = ...,
                 wait: bool = ..., request_id: str | None = ...,
                 timeout: float = ...) -> Evaluation | Operation[Evaluation]: ...

    def evaluate(self, selection: pb.Selection | str | None = None, *, count: int = 0,
                 dataset: str | None = None, budget: Budget | None = None,
                 method: Method | None = None, unit: Unit | None = None, seed: int = 0,
                 split_seed: int | None = None, test_pairs: int = 0, train_pairs: int = 0,
                 random_seeds: int = 0, progress: Callable[[Progress], object] | None = None,
                 wait: bool = True, request_id: str | None = None,
                 timeout: float = 3600.0) -> Evaluation | Operation[Evaluation]:
        """How good is a subset? Returns an Evaluation: the subset's held-out accuracy, random
        subsets of as many training completions (whole pairs and single completions), and
        the whole training pool.

        Either selection (a Selection or its id; count = its first items, 0 = all) or
        dataset and budget (a count, fraction or "5%" of the training pool) with method,
        unit and seed, run now on the pool. progress: a callable receiving Progress.
        wait=False returns an Operation at once (its wait() returns the Evaluation);
        request_id as for select()."""
        request = pb.EvaluateSelectionRequest(
            proxy=_proxy(split_seed, test_pairs, train_pairs, random_seeds),
            request_id=request_id or "")
        if selection is not None:
            if dataset is not None or budget is not None or method is not None:
                raise ValueError("give a selection or a dataset and budget, not both")
            request.selection_id = selection if isinstance(selection, str) else selection.id
            request.count = count
        else:
            if dataset is None or budget is None:
                raise ValueError("give a selection, or a dataset and a budget")
            request.select.CopyFrom(pb.SelectRequest(
                dataset=dataset, budget=_budget(budget),
                method=_choice("method", _METHODS, method),
                unit=_choice("unit", _UNITS, unit), seed=seed))
        if not wait:
            return self._start("StartEvaluation", request, request_id)
        result = self._progress_stream("EvaluateSelection", request, "evaluation", progress,
                                       timeout)
        return _evaluation(result)

    @overload
    def recommend_budget(self, dataset: str, *, method: Method | None = ...,
                         unit: Unit | None = ..., seed: int = ...,
                         budgets_percent: Sequence[float] = ..., target_share: float = ...,
                         with_random: bool = ..., split_seed: int | None = ...,
                         test_pairs: int = ..., train_pairs: int = ..., random_seeds: int = ...,
                         progress: Callable[[Progress], object] | None = ...,
                         wait: Literal[True] = ..., request_id: str | None = ...,
                         timeout: float = ...) -> BudgetRecommendation: ...

    @overload
    def recommend_budget(self, dataset: str, *, method: Method | None = ...,
                         unit: Unit | None = ..., seed: int = ...,
                         budgets_percent: Sequence[float] = ..., target_share: float = ...,
                         with_random: bool = ..., split_seed: int | None = ...,
                         test_pairs: int = ..., train_pairs: int = ..., random_seeds: int = ...,
                         progress: Callable[[Progress], object] | None = ...,
                         wait: Literal[False], request_id: str | None = ...,
                         timeout: float = ...) -> Operation[BudgetRecommendation]: ...

    @overload
    def recommend_budget(self, dataset: str, *, method: Method | None = ...,
                         unit: Unit | None = ..., seed: int = ...,
                         budgets_percent: Sequence[float] = ..., target_share: float = ...,
                         with_random: bool = ..., split_seed: int | None = ...,
                         test_pairs: int = ..., train_pairs: int = ..., random_seeds: int = ...,
                         progress: Callable[[Progress], object] | None = ...,
                         wait: bool = ..., request_id: str | None = ...,
                         timeout: float = ...
                         ) -> BudgetRecommendation | Operation[BudgetRecommendation]: ...

    def recommend_budget(self, dataset: str, *, method: Method | None = None,
                         unit: Unit | None = None, seed: int = 0,
                         budgets_percent: Sequence[float] = (), target_share: float = 0.0,
                         with_random: bool = False, split_seed: int | None = None,
                         test_pairs: int = 0, train_pairs: int = 0, random_seeds: int = 0,
                         progress: Callable[[Progress], object] | None = None,
                         wait: bool = True, request_id: str | None = None,
                         timeout: float = 3600.0
                         ) -> BudgetRecommendation | Operation[BudgetRecommendation]:
        """How much data is enough? Returns a BudgetRecommendation: the method's learning
        curve at budgets_percent (default 0.5, 1, 2, 5, 10, 25, 50, 100 percent of the
        pool's completions), the scaling law fitted to it, and the smallest budget whose
        fitted accuracy reaches target_share (default 0.95) of the plateau. with_random also
        measures random whole pairs at every budget. progress: a callable receiving
        Progress. wait=False returns an Operation at once (its wait() returns the
        BudgetRecommendation); request_id as for select()."""
        request = pb.RecommendBudgetRequest(
            dataset=dataset,
            select=pb.SelectRequest(method=_choice("method", _METHODS, method),
                                    unit=_choice("unit", _UNITS, unit), seed=seed),
            budgets_percent=list(budgets_percent), target_share=target_share,
            with_random=with_random,
            proxy=_proxy(split_seed, test_pairs, train_pairs, random_seeds),
            request_id=request_id or "")
        if not wait:
            return self._start("StartRecommendBudget", request, request_id)
        result = self._progress_stream("RecommendBudget", request, "recommendation", progress,
                                       timeout)
        return _recommendation(result)

    # -------------------------------------------------------------------------------------
    # Operations: the jobs select, evaluate and recommend_budget start with wait=False.

    def get_operation(self, name: str) -> Operation[Any]:
        """The Operation of that name as it is now; CurationError NOT_FOUND for an unknown
        name or another tenant's."""
        return Operation(self, self._call("GetOperation", pb.GetOperationRequest(name=name)))

    def list_operations(self, dataset: str | None = None) -> list[Operation[Any]]:
        """Every operation of the caller's tenant (of one dataset, if given) the server still
        keeps, newest first (all pages), as Operation handles."""
        operations: list[Operation[Any]] = []
        token = ""
        while True:
            reply = self._call("ListOperations", pb.ListOperationsRequest(
                dataset=dataset or "", page_size=1000, page_token=token))
            operations.extend(Operation(self, op) for op in reply.operations)
            token = reply.next_page_token
            if not token:
                return operations

    def _progress_stream(self, method: str, request: Any, result_field: str,
                         progress: Callable[[Progress], object] | None, timeout: float) -> Any:
        result = None
        try:
            for message in getattr(self._stub, method)(request, timeout=timeout,
                                                       metadata=self._metadata):
                if message.HasField(result_field):
                    result = getattr(message, result_field)
                elif progress:
                    p = message.progress
                    progress(Progress(p.stage, p.fraction, p.elapsed_seconds))
        except grpc.RpcError as e:
            raise from_rpc(method, e) from None
        if result is None:
            raise error(method, grpc.StatusCode.INTERNAL,
                                "the server's stream ended without a result")
        return result


def _rejection(index: int, field: str, reason: str) -> RecordError:
    error = RecordError(field, reason)
    error.index = index
    return error
