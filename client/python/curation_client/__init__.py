"""Python client of the curation service (curation.v1 over gRPC).

    from curation_client import CurationClient
    client = CurationClient("curation.example.com:50051", token=TOKEN, tls_ca="ca.crt")
    client.create_dataset("hh", exist_ok=True)
    client.ingest("hh", records)                      # dicts in TRL or KTO format
    subset = client.export(client.select("hh", budget="10%").id)

The generated stubs are found through $CURATION_PROTO_PY (see curation_client._stubs).
"""
from curation_client.client import CurationClient, CurationError, IngestProgress, IngestResult
from curation_client.records import RecordError, to_example

__all__ = ["CurationClient", "CurationError", "IngestProgress", "IngestResult", "RecordError",
           "to_example"]
