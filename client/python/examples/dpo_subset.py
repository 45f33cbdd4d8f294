#!/usr/bin/env python3
"""How a DPO training script takes its training set from the curation service.

    CURATION_SERVER=curation.example.com:50051 CURATION_TOKEN=... CURATION_TLS_CA=ca.crt \\
      python3 dpo_subset.py pairs.jsonl.gz --dataset hh --budget 10%

Pushes the preference pairs once (re-running is cheap: stored pairs come back as
duplicates), asks for the most informative share of them, and hands that subset to TRL's
DPOTrainer. The training itself is not run here: the script stops where it would start,
unless --train is given and TRL is installed.
"""
import argparse
import gzip
import json
import sys

from curation_client import CurationClient


def read_jsonl(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pairs", help="JSONL(.gz) of TRL {prompt, chosen, rejected} records "
                        "(or {chosen, rejected} transcripts)")
    parser.add_argument("--dataset", default="dpo-pairs")
    parser.add_argument("--budget", default="10%", help="count, fraction or percentage")
    parser.add_argument("--method", default=None,
                        choices=["herding", "facility_location", "kcenter", "dedup", "isa",
                                 "random"],
                        help="default: the server's (herding, chosen by measurement)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the subset here as JSONL")
    parser.add_argument("--train", action="store_true", help="actually run DPOTrainer")
    args = parser.parse_args()

    # Address, token and CA come from CURATION_SERVER, CURATION_TOKEN and CURATION_TLS_CA.
    with CurationClient() as client:
        client.create_dataset(args.dataset, exist_ok=True)
        ingested = client.ingest(args.dataset, read_jsonl(args.pairs))
        for error in ingested.errors[:5]:
            print(f"rejected record {error.index}: {error.field}: {error.reason}",
                  file=sys.stderr)
        selection = client.select(args.dataset, budget=args.budget, method=args.method,
                                  seed=args.seed)
        # The selection is stored: record its id with the training run to reproduce it.
        # TRL's DPOTrainer reads exactly these columns: prompt, chosen, rejected.
        columns = client.export_columns(selection.id, format="trl")

    pairs = len(columns["prompt"])
    print(f"selection {selection.id}: {pairs} of {selection.summary.pool_size} pairs "
          f"({args.method or 'the default method'}, seed {selection.seed})")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            for row in zip(*columns.values()):
                f.write(json.dumps(dict(zip(columns, row)), ensure_ascii=False) + "\n")
    if not args.train:
        print(f"would train DPO on {pairs} pairs")
        return
    from datasets import Dataset  # noqa: E402 (only needed when training)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    model_name = "Qwen/Qwen2-0.5B-Instruct"
    model = AutoModelForCausalLM.from_pretrained(model_name)
    tokenizer = AutoTokenizer.from_pretrained(model_name)
    trainer = DPOTrainer(model=model, args=DPOConfig(output_dir="dpo-out"),
                         train_dataset=Dataset.from_dict(columns),
                         processing_class=tokenizer)
    trainer.train()


if __name__ == "__main__":
    main()
