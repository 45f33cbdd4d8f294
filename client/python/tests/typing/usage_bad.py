"""Mistakes a type checker catches thanks to py.typed and the annotations: each line marked
`# E: <code>` must be reported with that mypy error code, and no other line."""
import numpy as np

from curation_client import CurationClient


def mistakes(client: CurationClient) -> None:
    client.select("d", budget=10, method="greedy")  # E: call-overload
    job = client.select("d", budget=10, wait=False)
    print(job.summary)  # E: attr-defined
    client.ingest("d", [], batch_size="10")  # E: arg-type
    count: int = client.export("selection-id")  # E: assignment
    client.evaluate("selection-id").subset.accuracy.upper()  # E: attr-defined
    CurationClient(timeout="60")  # E: arg-type
    client.ingest("d", [], embeddings=np.zeros(3), progress="yes")  # E: arg-type
    print(count)
