"""A training script's use of the client, as a type checker sees it: mypy finds no error."""
import numpy as np

from curation_client import (CurationClient, Evaluation, ExportedRecord, IngestResult,
                             InvalidArgument, Operation, RecordError, Selection, pb)


def curate(client: CurationClient) -> list[ExportedRecord]:
    client.create_dataset("d", kind="pairs", dim=8, exist_ok=True)
    vectors = np.zeros((1, 2, 8), dtype=np.float16)
    result: IngestResult = client.ingest(
        "d", [{"prompt": "p", "chosen": "a", "rejected": "b"}], embeddings=vectors)
    errors: list[RecordError] = result.errors
    print(len(errors), result.ids[0].upper())
    selection: Selection = client.select("d", budget="10%", method="herding")
    print(selection.id.upper(), selection.summary.selected_count + 1)
    job: Operation[pb.Selection] = client.select("d", budget=10, wait=False, request_id="k")
    same: Selection = job.wait(timeout=60)
    evaluation: Evaluation = client.evaluate(same, test_pairs=80)
    print(evaluation.subset.accuracy + 1.0, evaluation.random_pairs.accuracies[0] * 2)
    later: Operation[Evaluation] = client.evaluate(dataset="d", budget=0.1, wait=False)
    print(later.wait().full.high)
    written: int = client.export(selection, path="subset.jsonl")
    columns: dict[str, list[object]] = client.export_columns(selection.id, format="trl")
    print(written, len(columns))
    try:
        client.select("d", budget=1.5)
    except InvalidArgument as e:
        field: str | None = e.field
        print(field, e.code.name, e.reason)
    records = client.export(selection)
    return records
