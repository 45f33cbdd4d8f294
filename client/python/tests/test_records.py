"""Record conversion: the same rules as the CLI's file reader (formats/record_reader.cc)."""
import unittest

from curation_client import RecordError, to_example
from curation_client._stubs import curation_pb2 as pb


class RecordsTest(unittest.TestCase):
    def test_trl_explicit_prompt_and_messages(self):
        e = to_example({"prompt": [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "2+2?"}],
                        "chosen": [{"role": "assistant", "content": "4"}],
                        "rejected": "5", "id": 17, "source": "gpt", "score": 0.5,
                        "ok": True, "nested": {"ignored": 1}})
        self.assertEqual(e.pair.prompt, "system: Be brief.\nuser: 2+2?")
        self.assertEqual((e.pair.chosen, e.pair.rejected), ("assistant: 4", "5"))
        self.assertEqual(e.id, "17")
        self.assertEqual(dict(e.metadata), {"source": "gpt", "score": "0.5", "ok": "true"})

    def test_trl_implicit_prompt_messages(self):
        shared = [{"role": "user", "content": "Hi"}]
        e = to_example({"chosen": shared + [{"role": "assistant", "content": "Hello"}],
                        "rejected": shared + [{"role": "assistant", "content": "Go away"}]})
        self.assertEqual((e.pair.prompt, e.pair.chosen, e.pair.rejected),
                         ("user: Hi", "assistant: Hello", "assistant: Go away"))

    def test_anthropic_hh_transcripts(self):
        e = to_example({"chosen": "\n\nHuman: Hi\n\nAssistant: Hello there",
                        "rejected": "\n\nHuman: Hi\n\nAssistant: Go away"})
        self.assertEqual(e.pair.prompt, "\n\nHuman: Hi\n\nAssistant:")
        self.assertEqual((e.pair.chosen, e.pair.rejected), ("Hello there", "Go away"))
        with self.assertRaises(RecordError):
            to_example({"chosen": "no turns", "rejected": "at all"})

    def test_kto_labels_and_vectors(self):
        for label, want in [(True, pb.LABEL_DESIRABLE), ("undesirable", pb.LABEL_UNDESIRABLE),
                            ("Desirable", pb.LABEL_DESIRABLE), ("false", pb.LABEL_UNDESIRABLE)]:
            e = to_example({"prompt": "p", "completion": "c", "label": label,
                            "embedding": [1, 2.5]})
            self.assertEqual(e.unpaired.label, want)
            self.assertEqual(list(e.unpaired.embedding), [1.0, 2.5])
        with self.assertRaises(RecordError) as bad:
            to_example({"prompt": "p", "completion": "c", "label": 1})
        self.assertEqual(bad.exception.field, "label")

    def test_numpy_values(self):
        import numpy as np
        e = to_example({"prompt": "p", "chosen": "a", "rejected": "b",
                        "chosen_embedding": np.arange(3, dtype=np.float32),
                        "rejected_embedding": np.ones(3), "weight": np.float64(0.25),
                        "step": np.int64(7)})
        self.assertEqual(list(e.pair.chosen_embedding), [0.0, 1.0, 2.0])
        self.assertEqual(dict(e.metadata), {"weight": "0.25", "step": "7"})

    def test_nested_metadata_and_errors(self):
        e = to_example({"prompt": "p", "chosen": "a", "rejected": "b",
                        "metadata": {"split": "train", "round": 3}})
        self.assertEqual(dict(e.metadata), {"split": "train", "round": "3"})
        for record, field in [({"prompt": "p", "chosen": "a"}, ""),
                              ({"prompt": 3, "chosen": "a", "rejected": "b"}, "prompt"),
                              ({"prompt": "p", "chosen": "a", "rejected": "b", "id": 1.5}, "id"),
                              ({"prompt": "p", "chosen": "a", "rejected": "b",
                                "chosen_embedding": ["x"]}, "chosen_embedding"),
                              ([1, 2], "")]:
            with self.assertRaises(RecordError) as bad:
                to_example(record)
            self.assertEqual(bad.exception.field, field, record)


if __name__ == "__main__":
    unittest.main()
