"""CurationClient against the real curation-server (auth on; TLS in its own test case)."""
import gzip
import json
import os
import pickle
import subprocess
import sys
import tempfile
import unittest

import grpc
import numpy as np

import serverproc
from curation_client import (AlreadyExists, BudgetRecommendation, CurationClient, CurationError,
                             Evaluation, IngestProgress, InvalidArgument, NotFound, Operation,
                             RecordError, Unauthenticated)
from curation_client._stubs import admin_pb2, admin_pb2_grpc

SAMPLE = os.path.join(serverproc.TEST_DATA, "hh-rlhf-harmless-sample.jsonl.gz")
EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "examples", "dpo_subset.py")


def read_sample():
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def make_writer_token(address, admin_token, tenant, channel=None):
    """A tenant and a writer token for it, through the admin API."""
    channel = channel or grpc.insecure_channel(address)
    admin = admin_pb2_grpc.AdminServiceStub(channel)
    metadata = (("authorization", f"Bearer {admin_token}"),)
    admin.CreateTenant(admin_pb2.CreateTenantRequest(tenant=admin_pb2.Tenant(name=tenant)),
                       metadata=metadata, timeout=30)
    reply = admin.CreateToken(admin_pb2.CreateTokenRequest(tenant=tenant,
                                                           role=admin_pb2.ROLE_WRITER),
                              metadata=metadata, timeout=30)
    return reply.secret


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = serverproc.Server()
        cls.token = make_writer_token(cls.server.address, cls.server.admin_token, "ml")
        cls.client = CurationClient(cls.server.address, token=cls.token)
        cls.client.wait_until_serving(timeout=60)
        cls.sample = read_sample()

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        code = cls.server.stop()
        assert code == 0, f"curation-server exited with {code}"

    def test_health(self):
        self.assertEqual(self.client.health(), "SERVING")
        with CurationClient(f"127.0.0.1:{serverproc.free_port()}") as nobody:
            self.assertEqual(nobody.health(timeout=1), "UNAVAILABLE")

    def test_five_lines_of_a_training_script(self):
        # The README's example, as a training script would write it.
        client = CurationClient(self.server.address, token=self.token)
        client.create_dataset("hh", exist_ok=True)
        ingested = client.ingest("hh", self.sample, progress=False)
        selection = client.select("hh", budget="10%", method="isa")
        subset = client.export(selection.id)

        self.assertEqual(ingested.accepted + ingested.duplicates + ingested.rejected, 500)
        self.assertEqual(ingested.example_count, ingested.accepted)
        self.assertEqual(selection.summary.pool_size, ingested.accepted)
        self.assertEqual(len(subset), round(0.1 * ingested.accepted))
        self.assertEqual([r["id"] for r in subset], [i.example_id for i in selection.items])
        stored = set(ingested.ids)
        for record in subset:
            self.assertEqual(set(record) - {"metadata"}, {"prompt", "chosen", "rejected", "id"})
            self.assertIn(record["id"], stored)
            self.assertTrue(record["prompt"].endswith("Assistant:"))
        # exist_ok returns the dataset as it is; a second create without it is refused.
        self.assertEqual(client.create_dataset("hh", exist_ok=True).example_count,
                         ingested.accepted)
        with self.assertRaises(AlreadyExists) as refused:
            client.create_dataset("hh")
        self.assertEqual(refused.exception.code, grpc.StatusCode.ALREADY_EXISTS)

    def test_same_ids_as_the_cli_and_export_file_identical(self):
        # A record ingested from Python gets the id the CLI's file reader gives it: sending
        # the sample again after the CLI loaded it stores nothing.
        self.client.create_dataset("via-cli")
        self.server.cli("ingest", "via-cli", SAMPLE, token=self.token)
        again = self.client.ingest("via-cli", self.sample, progress=False)
        self.assertEqual(again.accepted, 0)
        self.assertEqual(again.duplicates + again.rejected, 500)

        selection = self.client.select("via-cli", budget=25, method="random", seed=7)
        with tempfile.TemporaryDirectory() as tmp:
            ours, theirs = os.path.join(tmp, "py.jsonl"), os.path.join(tmp, "cli.jsonl")
            self.assertEqual(self.client.export(selection, path=ours), 25)
            self.server.cli("export", selection.id, "-o", theirs, token=self.token)
            with open(ours, encoding="utf-8") as a, open(theirs, encoding="utf-8") as b:
                self.assertEqual([json.loads(x) for x in a], [json.loads(x) for x in b])

    def test_cluster_placement_is_refused_by_a_single_server(self):
        with self.assertRaises(InvalidArgument) as refused:
            self.client.create_dataset("spread", partitions=2)
        self.assertEqual(refused.exception.field, "partitions", refused.exception)
        with self.assertRaises(InvalidArgument):
            self.client.create_dataset("placed", member="m2")
        self.assertEqual(self.client.create_dataset("whole", partitions=1).name, "whole")

    def test_kto_records_and_export(self):
        self.client.create_dataset("kto", kind="unpaired")
        records = []
        for i in range(40):
            records.append({"prompt": f"Question {i}: how do I sort a list of {i} numbers?",
                            "completion": f"Use sorted() on the {i} numbers, variant {i % 7}.",
                            "label": [True, False, "desirable", "UNDESIRABLE"][i % 4],
                            "source": "synthetic", "round": i})
        # Conversational prompt and completion, as TRL writes them.
        records.append({"prompt": [{"role": "user", "content": "Hi there"}],
                        "completion": [{"role": "assistant", "content": "Hello! How can I help?"}],
                        "label": True})
        result = self.client.ingest("kto", records, batch_size=16, progress=False)
        self.assertEqual((result.accepted, result.rejected), (41, 0), result.errors)
        dataset = self.client.get_dataset("kto")
        self.assertEqual((dataset.desirable_count, dataset.undesirable_count), (21, 20))

        selection = self.client.select("kto", budget=0.5, method="random", seed=1)
        subset = self.client.export(selection.id, format="kto")
        self.assertEqual(len(subset), selection.summary.selected_count)
        self.assertIn(len(subset), (20, 21))  # half of 41, rounded either way
        for record in subset:
            self.assertEqual(set(record) - {"metadata"}, {"prompt", "completion", "label", "id"})
            self.assertIsInstance(record["label"], bool)
        tagged = [r for r in subset if "metadata" in r]
        self.assertTrue(all(r["metadata"]["source"] == "synthetic" for r in tagged))
        # A trainer's columns: KTOTrainer's three, label a bool, in selection order.
        columns = self.client.export_columns(selection, ids=True)
        self.assertEqual(list(columns), ["prompt", "completion", "label", "id"])
        self.assertEqual(columns["id"], [r["id"] for r in subset])
        self.assertEqual(columns["label"], [r["label"] for r in subset])

    def test_rejected_records_are_named_by_their_position(self):
        self.client.create_dataset("mixed")
        good = self.sample[:30]
        records = list(good)
        records.insert(3, {"prompt": "p", "chosen": "same", "rejected": "same"})
        records.insert(10, {"prompt": "p", "chosen": "an answer"})  # no rejected: not TRL
        records.insert(20, "not a dict")
        records.insert(25, {"prompt": "p", "completion": "c", "label": "maybe"})
        result = self.client.ingest("mixed", iter(records), batch_size=7, progress=False)
        self.assertEqual(result.accepted, 30)
        self.assertEqual(result.rejected, 4)
        by_index = {e.index: e for e in result.errors}
        self.assertEqual(sorted(by_index), [3, 10, 20, 25])
        self.assertTrue(by_index[3].field.startswith("examples[3]"), by_index[3].field)
        self.assertEqual(by_index[25].field, "examples[25].label")
        self.assertEqual(len(result.ids), 34)
        self.assertEqual(result.ids[3], "")
        self.assertNotEqual(result.ids[4], "")

    def test_progress_is_reported_per_batch(self):
        self.client.create_dataset("progress")
        seen = []
        self.client.ingest("progress", self.sample[:250], batch_size=100, progress=seen.append)
        self.assertEqual([p.sent for p in seen], [100, 200, 250])
        self.assertIsInstance(seen[-1], IngestProgress)
        self.assertEqual(seen[-1].total, 250)
        self.assertEqual(seen[-1].accepted + seen[-1].duplicates + seen[-1].rejected, 250)

    def test_client_vectors(self):
        self.client.create_dataset("vectors", dim=4)
        records = [{"prompt": f"p{i}", "chosen": f"good {i}", "rejected": f"bad {i}",
                    "chosen_embedding": [1.0, i, 0.5, -i], "rejected_embedding": (0, 1, i, 2)}
                   for i in range(12)]
        records.append({"prompt": "p", "chosen": "x", "rejected": "y",
                        "chosen_embedding": [1, 2, 3], "rejected_embedding": [1, 2, 3, 4]})
        result = self.client.ingest("vectors", records, progress=False)
        self.assertEqual((result.accepted, result.rejected), (12, 1))
        self.assertIn("chosen_embedding", result.errors[0].field)

    def test_encoding_and_projection_options(self):
        from curation_client import InvalidArgument
        from curation_client._stubs import curation_pb2 as pb
        made = self.client.create_dataset("enc16", dim=8, encoding="float16", project=3,
                                          keep_original=True)
        self.assertEqual(made.embedding.encoding, pb.EmbeddingConfig.ENCODING_FLOAT16)
        self.assertEqual((made.embedding.projection.dim, made.embedding.projection.keep_original),
                         (3, True))
        # The server's default when none is named.
        self.assertEqual(self.client.create_dataset("enc-default").embedding.encoding,
                         pb.EmbeddingConfig.ENCODING_FLOAT16)
        with self.assertRaises(ValueError):
            self.client.create_dataset("enc-bad", encoding="int4")
        with self.assertRaises(InvalidArgument) as bad:
            self.client.create_dataset("enc-bad", dim=8, project=8)
        self.assertEqual(bad.exception.field, "dataset.embedding.projection.dim")

    def test_errors_carry_the_status(self):
        with self.assertRaises(NotFound) as missing:
            self.client.get_dataset("no-such-dataset")
        self.assertEqual(missing.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertEqual(missing.exception.method, "GetDataset")
        self.assertIsNone(missing.exception.field)
        self.assertIsInstance(missing.exception, LookupError)
        with CurationClient(self.server.address, token="") as anonymous:
            with self.assertRaises(Unauthenticated) as refused:
                anonymous.list_datasets()
        self.assertEqual(refused.exception.code, grpc.StatusCode.UNAUTHENTICATED)
        with self.assertRaises(ValueError):
            self.client.select("hh", budget=True)
        # INVALID_ARGUMENT names the field, as the server words it ("<path>: <reason>").
        self.client.create_dataset("errors", exist_ok=True)
        self.client.ingest("errors", self.sample[:10], progress=False)
        with self.assertRaises(InvalidArgument) as invalid:
            self.client.select("errors", budget=1.5)
        e = invalid.exception
        self.assertEqual(e.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(e.field, "budget.fraction")
        self.assertEqual(e.details, f"{e.field}: {e.reason}")
        self.assertIn("INVALID_ARGUMENT: budget.fraction: ", str(e))
        # It survives pickling (a worker process handing it to its parent).
        copy = pickle.loads(pickle.dumps(e))
        self.assertEqual((type(copy), copy.code, copy.field, copy.reason),
                         (InvalidArgument, e.code, e.field, e.reason))

    def test_export_columns_for_a_trainer(self):
        self.client.create_dataset("columns")
        self.client.ingest("columns", self.sample[:60], progress=False)
        selection = self.client.select("columns", budget=20, method="random", seed=2)
        records = self.client.export(selection)
        columns = self.client.export_columns(selection.id)
        self.assertEqual(list(columns), ["prompt", "chosen", "rejected"])
        for name in columns:
            self.assertEqual(columns[name], [r[name] for r in records])
        self.assertEqual(len(columns["prompt"]), 20)

    def test_numpy_vectors_for_pairs(self):
        self.client.create_dataset("np-pairs", dim=8, encoding="float32")
        n = 40
        vectors = np.random.default_rng(5).standard_normal((n, 2, 8)).astype(np.float16)
        records = [{"prompt": f"question {i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
                   for i in range(n)]
        result = self.client.ingest("np-pairs", records, embeddings=vectors, batch_size=16,
                                    progress=False)
        self.assertEqual((result.accepted, result.rejected), (n, 0), result.errors)
        # Stored exactly (float16 widens to float32 without loss), row i with record i.
        stored = self.client.get_examples("np-pairs", result.ids, include_embeddings=True)
        self.assertEqual([e.pair.prompt for e in stored], [r["prompt"] for r in records])
        chosen = np.array([e.pair.chosen_embedding for e in stored], dtype=np.float32)
        rejected = np.array([e.pair.rejected_embedding for e in stored], dtype=np.float32)
        np.testing.assert_array_equal(chosen, vectors[:, 0].astype(np.float32))
        np.testing.assert_array_equal(rejected, vectors[:, 1].astype(np.float32))
        self.assertEqual(self.client.select("np-pairs", budget=10).summary.selected_count, 10)

        # A generator and float32; a NaN is that record's rejection, with the server's field
        # path renumbered to the record's position.
        more = np.ones((5, 2, 8), dtype=np.float32)
        more[3, 1, 2] = np.nan
        result = self.client.ingest(
            "np-pairs", ({"prompt": f"more {i}", "chosen": "c", "rejected": "r"}
                         for i in range(5)), embeddings=more, batch_size=2, progress=False)
        self.assertEqual((result.accepted, result.rejected), (4, 1))
        self.assertEqual((result.errors[0].index, result.errors[0].field),
                         (3, "examples[3].pair.rejected_embedding[2]"))

    def test_numpy_vectors_for_unpaired_examples(self):
        self.client.create_dataset("np-kto", kind="unpaired", dim=4, encoding="float32")
        vectors = (np.arange(48, dtype=np.float32).reshape(12, 4) / 7).astype(np.float32)
        records = [{"prompt": f"p{i}", "completion": f"c{i}", "label": i % 3 != 0}
                   for i in range(12)]
        with tempfile.TemporaryDirectory() as tmp:
            # A memory-mapped .npy, as a 4096-d array larger than memory would be read.
            path = os.path.join(tmp, "vectors.npy")
            np.save(path, vectors)
            mapped = np.load(path, mmap_mode="r")
            result = self.client.ingest("np-kto", records, embeddings=mapped, progress=False)
            del mapped
        self.assertEqual((result.accepted, result.rejected), (12, 0), result.errors)
        stored = self.client.get_examples("np-kto", result.ids[::-1], include_embeddings=True)
        np.testing.assert_array_equal(
            np.array([e.unpaired.embedding for e in stored], dtype=np.float32), vectors[::-1])

    def test_numpy_vectors_that_do_not_fit(self):
        self.client.create_dataset("np-bad", dim=4)
        self.client.create_dataset("np-builtin", exist_ok=True)
        records = [{"prompt": f"p{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(3)]
        refused = {
            "has shape (3, 4), but dataset \"np-bad\" holds pairs of 4-d vectors":
                ("np-bad", records, np.zeros((3, 4), np.float32)),
            "has shape (3, 2, 5)": ("np-bad", records, np.zeros((3, 2, 5), np.float32)),
            "must be float32 or float16, got int64": ("np-bad", records, np.zeros((3, 2, 4),
                                                                               np.int64)),
            "has 2 rows for 3 records": ("np-bad", records, np.zeros((2, 2, 4), np.float16)),
            "created without dim": ("np-builtin", records, np.zeros((3, 2, 4), np.float32)),
        }
        for message, (dataset, these, array) in refused.items():
            with self.subTest(message), self.assertRaises(RecordError) as bad:
                self.client.ingest(dataset, these, embeddings=array, progress=False)
            self.assertEqual(bad.exception.field, "embeddings")
            self.assertIn(message, bad.exception.reason)
        self.assertEqual(self.client.get_dataset("np-bad").example_count, 0)  # nothing sent

        # Without a len(), the mismatch is found on reaching it.
        with self.assertRaises(RecordError) as long:
            self.client.ingest("np-bad", iter(records), embeddings=np.zeros((2, 2, 4)),
                               progress=False)
        self.assertIn("has 2 rows but the records go on past them", str(long.exception))
        with self.assertRaises(RecordError) as short:
            self.client.ingest("np-bad", iter(records[:2]), embeddings=np.ones((3, 2, 4)),
                               progress=False)
        self.assertIn("has 3 rows for 2 records", str(short.exception))

        # Vectors in the record as well as in the array: that record is rejected, by name.
        both = [dict(r) for r in records]
        both[1]["chosen_embedding"] = [1, 2, 3, 4]
        result = self.client.ingest("np-bad", both, embeddings=np.full((3, 2, 4), 0.5),
                                    progress=False)
        self.assertEqual((result.rejected, result.errors[0].field),
                         (1, "examples[1].chosen_embedding"))

    def test_evaluate_and_recommend_budget(self):
        self.client.create_dataset("hh-eval", exist_ok=True)
        self.client.ingest("hh-eval", self.sample, progress=False)
        selection = self.client.select("hh-eval", budget=100, method="random", seed=1)
        reports = []
        proxy = dict(test_pairs=80, random_seeds=3)
        result = self.client.evaluate(selection, progress=reports.append, **proxy)
        self.assertGreaterEqual(len(reports), 1)
        self.assertTrue(all(0 <= r.fraction <= 1 for r in reports))
        self.assertEqual((result.dataset, result.selection_id), ("hh-eval", selection.id))
        self.assertEqual((result.method, result.unit), ("random", "pair"))
        self.assertEqual((result.test_pairs, result.pool_pairs, result.split_seed), (80, 419, 1))
        self.assertEqual(result.subset_examples, 2 * (100 - result.dropped_held_out))
        self.assertEqual(len(result.random_pairs.accuracies), 3)
        self.assertAlmostEqual(result.random_pairs.mean,
                               sum(result.random_pairs.accuracies) / 3, places=12)
        # 419 HH pairs on the built-in embedder leave the linear model near chance, so only
        # the figures' consistency is checked here (the C++ test checks separable data).
        self.assertLessEqual(result.full.low, result.full.accuracy)
        self.assertLessEqual(result.full.accuracy, result.full.high)
        self.assertEqual(result.full.correct, round(result.full.accuracy * 80))
        # The same subset by id, and a method run now, as Select would run it, storing nothing:
        # 10% of the dataset's 499 pairs, the held-out ones counted apart.
        self.assertEqual(self.client.evaluate(selection.id, **proxy).subset, result.subset)
        before = len(self.client.list_selections("hh-eval"))
        pooled = self.client.evaluate(dataset="hh-eval", budget="10%", method="random", **proxy)
        self.assertEqual(pooled.selection_id, "")
        self.assertEqual(pooled.subset_examples + 2 * pooled.dropped_held_out,
                         2 * round(0.1 * 499))
        self.assertEqual(len(self.client.list_selections("hh-eval")), before)

        rec = self.client.recommend_budget("hh-eval", method="random",
                                           budgets_percent=[10, 5, 25, 100], with_random=True,
                                           **proxy)
        self.assertEqual([p.percent for p in rec.curve], [5, 10, 25, 100])
        self.assertTrue(all(len(p.random_pairs.accuracies) == 3 for p in rec.curve))
        self.assertTrue(0 <= rec.fit.r <= 1)
        if rec.percent is not None:
            self.assertGreaterEqual(rec.fit(rec.percent), rec.target_share * rec.fit.r - 1e-6)

        with self.assertRaises(InvalidArgument) as bad:
            self.client.recommend_budget("hh-eval", budgets_percent=[1, 2], **proxy)
        self.assertEqual(bad.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(bad.exception.field, "budgets_percent")
        with self.assertRaises(ValueError):
            self.client.evaluate()

    def test_operations(self):
        self.client.create_dataset("ops")
        self.client.ingest("ops", self.sample, progress=False)
        job = self.client.select("ops", budget="10%", method="herding", wait=False)
        self.assertIsInstance(job, Operation)
        self.assertRegex(job.name, r"^operations/[0-9a-f]{32}$")
        self.assertEqual((job.kind, job.dataset), ("select", "ops"))
        selection = job.wait(timeout=300)
        self.assertTrue(job.done)
        self.assertEqual(job.state, "SUCCEEDED")
        # The job's selection is the synchronous call's: same request, same examples.
        sync = self.client.select("ops", budget="10%", method="herding")
        self.assertEqual(selection.summary.selected_count, 50)
        self.assertEqual([i.example_id for i in selection.items],
                         [i.example_id for i in sync.items])
        self.assertNotEqual(selection.id, sync.id)  # two jobs, two stored selections
        self.assertEqual(job.result(), selection)

        # An idempotency key: one operation for the same request, whichever form sends it.
        keyed = self.client.select("ops", budget=20, method="random", seed=3, wait=False,
                                   request_id="py-ops-1")
        again = self.client.select("ops", budget=20, method="random", seed=3, wait=False,
                                   request_id="py-ops-1")
        self.assertEqual(again.name, keyed.name)
        self.assertEqual(again.request_id, "py-ops-1")
        same = self.client.select("ops", budget=20, method="random", seed=3,
                                  request_id="py-ops-1")
        self.assertEqual(same.id, keyed.wait(timeout=300).id)
        with self.assertRaises(CurationError) as clash:
            self.client.select("ops", budget=21, method="random", seed=3, wait=False,
                               request_id="py-ops-1")
        self.assertEqual(clash.exception.code, grpc.StatusCode.ALREADY_EXISTS)

        names = [op.name for op in self.client.list_operations()]
        self.assertIn(job.name, names)
        self.assertIn(keyed.name, names)
        self.assertEqual(names.count(keyed.name), 1)
        self.assertNotIn(job.name, [op.name for op in self.client.list_operations("hh")])
        fetched = self.client.get_operation(job.name)
        self.assertEqual((fetched.name, fetched.state), (job.name, "SUCCEEDED"))
        self.assertEqual(fetched.refresh().result().id, selection.id)
        with self.assertRaises(CurationError) as missing:
            self.client.get_operation("operations/0123456789abcdef0123456789abcdef")
        self.assertEqual(missing.exception.code, grpc.StatusCode.NOT_FOUND)
        # Cancelling a done operation leaves it as it was.
        self.assertEqual(job.cancel().state, "SUCCEEDED")

    def test_cancel_a_long_job(self):
        self.client.create_dataset("ops-cancel")
        self.client.ingest("ops-cancel", self.sample, progress=False)
        # About 20 s on 2 cores: 20 restarts of 1,000 EM iterations that never converge.
        job = self.client.select("ops-cancel", budget="10%", method="isa", unit="example",
                                 covariance="full", wait=False,
                                 isa=dict(components=8, pca_dim=32, n_init=20, max_iter=1000,
                                          tol=1e-300))
        # A bounded wait gives up, not the job (unless the job beat it).
        try:
            job.wait(timeout=0.2)
        except TimeoutError:
            self.assertIn(job.state, ("QUEUED", "RUNNING"))
            self.assertFalse(job.done)
        job.cancel()
        self.assertIn(job.state, ("QUEUED", "RUNNING", "CANCELLED", "SUCCEEDED"))
        try:
            result = job.wait(timeout=300)
        except CurationError as e:
            self.assertEqual(e.code, grpc.StatusCode.CANCELLED)
            self.assertEqual(job.state, "CANCELLED")
        else:
            self.assertEqual(job.state, "SUCCEEDED")  # it finished before the cancel
            self.assertEqual(result.summary.selected_count, 100)
        self.assertTrue(job.done)
        self.assertEqual(self.client.get_operation(job.name).state, job.state)

    def test_evaluate_and_recommend_as_jobs(self):
        self.client.create_dataset("ops-eval")
        self.client.ingest("ops-eval", self.sample, progress=False)
        proxy = dict(test_pairs=80, random_seeds=2)
        job = self.client.evaluate(dataset="ops-eval", budget="10%", method="random",
                                   wait=False, **proxy)
        self.assertEqual(job.kind, "evaluate")
        evaluation = job.wait(timeout=300)
        self.assertIsInstance(evaluation, Evaluation)
        self.assertEqual((evaluation.dataset, evaluation.test_pairs), ("ops-eval", 80))
        self.assertEqual(len(evaluation.random_pairs.accuracies), 2)
        job = self.client.recommend_budget("ops-eval", method="random",
                                           budgets_percent=[10, 25, 100], wait=False,
                                           request_id="py-rec-1", **proxy)
        self.assertEqual((job.kind, job.request_id), ("recommend_budget", "py-rec-1"))
        recommendation = job.wait(timeout=300)
        self.assertIsInstance(recommendation, BudgetRecommendation)
        self.assertEqual([p.percent for p in recommendation.curve], [10, 25, 100])

    def test_dpo_example_script(self):
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "subset.jsonl")
            env = dict(os.environ, CURATION_SERVER=self.server.address, CURATION_TOKEN=self.token)
            run = subprocess.run([sys.executable, EXAMPLE, SAMPLE, "--dataset", "dpo-example",
                                  "--budget", "5%", "--output", out],
                                 env=env, capture_output=True, text=True, timeout=300)
            self.assertEqual(run.returncode, 0, run.stderr)
            with open(out, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f]
            self.assertEqual(len(lines), 25)
            self.assertEqual({tuple(line) for line in lines}, {("prompt", "chosen", "rejected")})
            self.assertIn("would train DPO on 25 pairs", run.stdout)


class TlsTest(unittest.TestCase):
    def test_token_over_tls(self):
        server = serverproc.Server(tls=True)
        try:
            with open(server.ca, "rb") as f:
                ca = f.read()
            channel = grpc.secure_channel(server.address, grpc.ssl_channel_credentials(ca))
            token = make_writer_token(server.address, server.admin_token, "secure", channel)
            client = CurationClient(server.address, token=token, tls_ca=server.ca)
            client.wait_until_serving(timeout=60)
            client.create_dataset("tls")
            result = client.ingest("tls", read_sample()[:20], progress=False)
            self.assertEqual(result.accepted, 20)
            self.assertEqual(len(client.export(client.select("tls", budget=5).id)), 5)
            # The certificate names localhost and 127.0.0.1, not "curation.internal".
            wrong = CurationClient(server.address, token=token, tls_ca=server.ca,
                                   server_name="curation.internal")
            with self.assertRaises(CurationError) as refused:
                wrong.get_dataset("tls")
            self.assertEqual(refused.exception.code, grpc.StatusCode.UNAVAILABLE)
            plaintext = CurationClient(server.address, token=token)
            self.assertEqual(plaintext.health(timeout=2), "UNAVAILABLE")
        finally:
            self.assertEqual(server.stop(), 0)


if __name__ == "__main__":
    unittest.main()
