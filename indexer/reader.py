"""The reader: the question and a candidate sentence read together (PARACITE_READER).

The bi-encoder embeds a question and a sentence apart, so it cannot weigh whether this
sentence says what that question asks ("In what year did Tesla die?" against his father's
death). The reader is the bundled model fine-tuned to read "[CLS] question [SEP] sentence
[SEP]" and give one logit: does the sentence answer the question? It reads the best
candidate sentences of the first passages, moves the answer to the one it reads as
answering, and joins the answerability decision (`indexer.search.answering`). Reading costs
a question about three times its usual time (README "The reader"), so by default
(`PARACITE_READER=auto`, `AUTO`) it reads a question's candidates only when the best two
are within READER_CLOSE_MARGIN of each other, and otherwise the answer alone when the
decision is within READER_DECISION_MARGIN; `on` reads every question, `off` none. It reads
only text put as a question (`is_question`): claims and keyword queries are not what it
was trained on.

Its weights are the bundled model's plus the updates in `READER_ADAPTER` (1.4 MB: low-rank
updates of every layer's linear maps, the biases, the layer norms and the head), trained by
`eval/reader_experiment.py` on SQuAD v1.1 dev part A. They are merged and exported to int8
ONNX once, into the export cache beside the model's own export (`indexer.onnx_export`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from indexer.answerability import logistic
from indexer.encoders import ONNX_TOKENIZER

if TYPE_CHECKING:
    from tokenizers import Tokenizer

READER_ADAPTER = Path(__file__).with_name("data") / "reader-adapter.npz"
# Tokens of one question and sentence read together (longer sentences are cut at the end).
READER_MAX_TOKENS = 128
# The sentences read per question: the best by choice score among the first passages
# (three choose as well as five on the tuning set, for three fifths of the reading).
READER_CANDIDATES = 3

# Fitted by eval/fit_reader.py on SQuAD v1.1 dev part A with held-out reader logits (each
# article read by a reader trained on the other half of the articles); see
# eval/reports/reader.json. A candidate's choice score gains READER_WEIGHT x its logit.
READER_WEIGHT = 0.5
# With PARACITE_READER=auto a question's candidates are read only when the best leads the
# next by less than READER_CLOSE_MARGIN in choice score (where the choice is clear, reading
# rarely changes it), and of the other questions, the answer alone is read when its log-odds
# are within READER_DECISION_MARGIN of the minimum confidence's (where the reader's logit
# can turn the decision). Both are fitted by eval/fit_reader.py.
READER_CLOSE_MARGIN = 0.3
READER_DECISION_MARGIN = 0.5
# The answer's confidence with the reader: the logistic of
# STACK_INTERCEPT + STACK_EVIDENCE x (the answerability model's own logit) + STACK_READER x
# (the reader's logit on the answer), offered from READER_MIN_CONFIDENCE up (the same
# answered-rate on the tuning set as MIN_CONFIDENCE without the reader).
STACK_INTERCEPT = -0.0139
STACK_EVIDENCE = 0.7969
STACK_READER = 0.3887
READER_MIN_CONFIDENCE = 0.19


class Reader:
    """The exported reader in onnxruntime, one thread per call (one question per thread)."""

    def __init__(self, model_file: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tokenizer: Tokenizer = Tokenizer.from_file(str(model_file.parent / ONNX_TOKENIZER))
        tokenizer.enable_truncation(READER_MAX_TOKENS, strategy="only_second")
        tokenizer.enable_padding()
        self._tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(model_file), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {node.name for node in self._session.get_inputs()}

    def logits(self, question: str, sentences: Sequence[str]) -> np.ndarray:
        """The reader's logit for each sentence: above 0, it reads as answering."""
        if not sentences:
            return np.zeros(0, dtype=np.float32)
        encoded = self._tokenizer.encode_batch([(question, sentence) for sentence in sentences])
        feed = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        (logits,) = self._session.run(
            ["logit"], {name: value for name, value in feed.items() if name in self._inputs}
        )
        return np.asarray(logits, dtype=np.float32).reshape(len(sentences))


@dataclass(frozen=True, slots=True)
class WhenToRead:
    """Which questions the reader reads (of those put as questions, `is_question`): all the
    candidates of those whose best two are within `choice_margin` in choice score, and the
    answer alone of the others whose answerability log-odds are within `decision_margin` of
    the minimum confidence's."""

    choice_margin: float = math.inf
    decision_margin: float = math.inf


ALWAYS = WhenToRead()  # PARACITE_READER=on
AUTO = WhenToRead(READER_CLOSE_MARGIN, READER_DECISION_MARGIN)


# How a question opens when it does not end with "?" ("Who ruled the duchy of Normandy").
_QUESTION_OPENING = re.compile(
    r"(who|whom|whose|what|when|where|which|why|how|is|are|was|were|do|does|did|can|could|"
    r"should|would|will|has|have|had|name|list)\b",
    re.IGNORECASE,
)


def is_question(text: str) -> bool:
    """Whether `text` is put as a question, the only kind of text the reader was trained to
    read (a claim or a keyword query is left to the answerability model alone)."""
    stripped = text.strip().rstrip("\"'”’ ")
    return stripped.endswith("?") or bool(_QUESTION_OPENING.match(stripped.lstrip("\"'“‘¿ ")))


def load_reader(cache_dir: Path) -> Reader:
    """The reader made from the bundled model and `READER_ADAPTER` (exported on first use)."""
    from indexer.embedding import resolve_model
    from indexer.onnx_export import load_reader_export
    from indexer.settings import DEFAULT_MODEL

    return Reader(load_reader_export(resolve_model(DEFAULT_MODEL), READER_ADAPTER, cache_dir))


def reader_exported(cache_dir: Path) -> bool:
    """Whether the reader's export is in the cache already (else loading it takes a while)."""
    from indexer.embedding import resolve_model
    from indexer.onnx_export import reader_export_path
    from indexer.settings import DEFAULT_MODEL

    return reader_export_path(resolve_model(DEFAULT_MODEL), READER_ADAPTER, cache_dir).exists()


def stacked_confidence(evidence_logit: float, reader_logit: float) -> float:
    """The answer's confidence with the reader, from the answerability model's log-odds
    (`indexer.answerability.evidence_logit`) and the reader's logit on the answer sentence."""
    return logistic(STACK_INTERCEPT + STACK_EVIDENCE * evidence_logit + STACK_READER * reader_logit)
