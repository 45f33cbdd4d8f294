"""Python client of the curation service (curation.v1 over gRPC).

    from curation_client import CurationClient
    client = CurationClient("curation.example.com:50051", token=TOKEN, tls_ca="ca.crt")
    client.create_dataset("hh", exist_ok=True)
    client.ingest("hh", records)                      # dicts in TRL or KTO format
    selection = client.select("hh", budget="10%")
    subset = client.export(selection.id)
    print(client.evaluate(selection).subset.accuracy)   # the proxy's held-out accuracy
    job = client.select("hh", budget="10%", wait=False)  # an Operation: the job runs on
    selection = job.wait()                              # the server; wait() for its result

Install with `pip install ./client/python`: the build generates the curation.v1 stubs into
curation_client/_proto (curation_client.pb is its message module).
"""
from curation_client._stubs import curation_pb2 as pb
from curation_client._version import __version__
from curation_client.client import (Accuracy, Budget, BudgetRecommendation, CurationClient,
                                    CurvePoint, Evaluation, IngestProgress, IngestResult,
                                    Operation, Progress, RandomBaseline, ScalingLaw)
from curation_client.errors import (AlreadyExists, Cancelled, CurationError, DeadlineExceeded,
                                    FailedPrecondition, InvalidArgument, NotFound, OutOfRange,
                                    PermissionDenied, ResourceExhausted, Unauthenticated,
                                    Unavailable)
from curation_client.records import (ExportedRecord, KtoRecord, RecordError, TrlRecord,
                                     to_columns, to_example)

# The messages a caller meets, for annotations: Selection (select), Dataset (get_dataset).
Selection = pb.Selection
Dataset = pb.Dataset

__all__ = ["Accuracy", "AlreadyExists", "Budget", "BudgetRecommendation", "Cancelled",
           "CurationClient", "CurationError", "CurvePoint", "Dataset", "DeadlineExceeded",
           "Evaluation", "ExportedRecord", "FailedPrecondition", "IngestProgress",
           "IngestResult", "InvalidArgument", "KtoRecord", "NotFound", "Operation",
           "OutOfRange", "PermissionDenied", "Progress", "RandomBaseline", "RecordError",
           "ResourceExhausted", "ScalingLaw", "Selection", "TrlRecord", "Unauthenticated",
           "Unavailable", "__version__", "pb", "to_columns", "to_example"]
