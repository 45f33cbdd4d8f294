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

The generated stubs are found through $CURATION_PROTO_PY (see curation_client._stubs).
"""
from curation_client.client import (Accuracy, BudgetRecommendation, CurationClient, CurationError,
                                    CurvePoint, Evaluation, IngestProgress, IngestResult,
                                    Operation, Progress, RandomBaseline, ScalingLaw)
from curation_client.records import RecordError, to_example

__all__ = ["Accuracy", "BudgetRecommendation", "CurationClient", "CurationError", "CurvePoint",
           "Evaluation", "IngestProgress", "IngestResult", "Operation", "Progress",
           "RandomBaseline", "RecordError", "ScalingLaw", "to_example"]
