"""Experiment: would a reader fine-tuned from the bundled model help issues 13 and 14?

A reader reads the question and one sentence together ("[CLS] question [SEP] sentence
[SEP]") and says whether the sentence answers. None is bundled; this script makes one from
the bundled all-MiniLM-L6-v2 (every layer fine-tuned, a linear head on [CLS]) on half of the
articles of a SQuAD-format tuning set and measures it on the other half:

- training pairs: every sentence of each question's gold paragraph (label: it holds a gold
  answer) and the sentence the engine offers when the gold paragraph is withheld (with
  `--with-choices` also the best sentences by choice score of the normal ask, with
  `--withheld-choices N` the N best of the withheld ask);
- with `--context`, the reader reads each sentence followed by its passage's title and the
  sentence before it ("[CLS] question [SEP] sentence [SEP] title. previous [SEP]"), so that
  "He died in 1943" can be read as Tesla's death;
- sentence choice (issue 13): the five best sentences by the fitted choice score
  (`indexer.sentence_choice`) of the normal ask are rescored as choice + alpha * reader logit;
- answerability (issue 14): the reader's logit on the offered sentence is added to the
  answerability evidence (`indexer.answerability`) in a refitted logistic model, and the share
  of withheld-gold questions still answered is read at 0.93 and 0.955 of normal questions
  answered.

alpha and the logistic model are fitted on one half of the held-out articles and measured on
the other, both ways. Nothing here is used by the engine: it is the measurement behind
eval/reports/README.md ("A reader fine-tuned from the bundled model"). It needs torch and
transformers (installed with sentence-transformers) and takes about 30 minutes on 2 cores.

    PYTHONPATH=$PWD python eval/reader_experiment.py /work/shared/eval/squad-dev-v1.1-part-a.json \\
        --cache CACHE --work /tmp/reader
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from fit_answerability import fit
from tuning import best_choices, open_squad, remembered

from indexer.embedding import resolve_model
from indexer.evaluation import (
    ANSWER_K,
    answer_matches,
    default_cache_dir,
)
from indexer.onnx_export import LOW_RANK_SCALE, cpu_description
from indexer.settings import DEFAULT_MODEL

CHOICE_CANDIDATES = 5
BATCH = 32
LEARNING_RATE = 4e-5
WARMUP_STEPS = 30
MAX_TOKENS = 128
# With --context the sentence comes first, so that truncation cuts the context, not it.
MAX_TOKENS_WITH_CONTEXT = 192
ALPHAS = (0.0, 0.125, 0.25, 0.5, 1.0, 2.0)
RATES = (0.93, 0.955)


@dataclass(slots=True)
class Ask:
    """The sentence offered for a question (asked normally or withheld), and its evidence."""

    text: str
    evidence: list[float]
    correct: bool


@dataclass(slots=True)
class Question:
    text: str
    article: int
    gold_sentences: list[tuple[str, bool]]  # the gold paragraph's sentences, holding an answer
    choices: list[tuple[str, float, bool]]  # the five best sentences by choice score
    normal: Ask | None
    withheld: Ask | None
    # The same five with the gold paragraph withheld (what the reader reads then).
    withheld_choices: list[tuple[str, float, bool]] = field(default_factory=list)
    logits: dict[str, float] = field(default_factory=dict)  # reader logit per sentence text


def collect(path: Path, cache: Path) -> list[Question]:
    """Ask every question normally and with its gold paragraph withheld."""
    eval_set, article_of, searcher = open_squad(path, cache)
    questions = []
    try:
        for question in eval_set.questions:
            (gold,) = question.relevant
            doc_id, _, number = gold.rpartition("#")
            paragraph = (doc_id, int(number))
            gold_sentences = []
            for start, end in searcher._store.paragraph_ranges([paragraph]):
                for passage in searcher._store.passages(list(range(int(start), int(end)))):
                    gold_sentences += [s.text for s in passage.sentences]
            asks = []
            for withhold in ([], [paragraph]):
                assessment = searcher.ask(question.text, ANSWER_K, withhold=withhold).assessment
                asks.append(
                    None
                    if assessment is None
                    else Ask(
                        assessment.candidate.text,
                        list(assessment.evidence.values()),
                        answer_matches(assessment.candidate.text, question.answers),
                    )
                )
            questions.append(
                Question(
                    question.text,
                    article_of[doc_id],
                    [
                        (text, answer_matches(text, question.answers))
                        for text in dict.fromkeys(gold_sentences)
                    ],
                    best_choices(searcher, question.text, question.answers, CHOICE_CANDIDATES),
                    asks[0],
                    asks[1],
                    best_choices(
                        searcher,
                        question.text,
                        question.answers,
                        CHOICE_CANDIDATES,
                        withhold=[paragraph],
                    ),
                )
            )
    finally:
        searcher.close()
    return questions


def sentence_contexts(path: Path, cache: Path) -> dict[str, tuple[str, str]]:
    """Each sentence of the set's index, by its text: its passage's title and the sentence
    before it in the passage ("" for a passage's first)."""
    _, _, searcher = open_squad(path, cache, reuse_index=True)
    contexts: dict[str, tuple[str, str]] = {}
    try:
        rows = searcher._store.rows
        for start in range(0, rows, 500):
            for passage in searcher._store.passages(range(start, min(rows, start + 500))):
                previous = ""
                for sentence in passage.sentences:
                    contexts.setdefault(sentence.text, (passage.title, previous))
                    previous = sentence.text
    finally:
        searcher.close()
    return contexts


def with_context(sentence: str, contexts: dict[str, tuple[str, str]] | None) -> str:
    """What the reader reads as the sentence: the sentence alone, or with its context after it."""
    if contexts is None:
        return sentence
    title, previous = contexts.get(sentence, ("", ""))
    return f"{sentence} [SEP] {title}. {previous}".rstrip()


LORA_TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense")


def add_low_rank_updates(model: Any, rank: int) -> None:
    """Freeze the model but its biases and layer norms, and give every linear map of its
    layers a trainable low-rank update (W + B A * LOW_RANK_SCALE, of rank `rank`, B from 0),
    so that what training changes can be kept apart from the bundled weights, small."""
    import torch

    class LowRank(torch.nn.Module):
        def __init__(self, base: torch.nn.Linear) -> None:
            super().__init__()
            self.base = base
            self.down = torch.nn.Parameter(torch.randn(rank, base.in_features) / rank**0.5 * 0.1)
            self.up = torch.nn.Parameter(torch.zeros(base.out_features, rank))

        def forward(self, x: Any) -> Any:
            return self.base(x) + LOW_RANK_SCALE * (x @ self.down.T) @ self.up.T

    for name, parameter in model.named_parameters():
        parameter.requires_grad_("LayerNorm" in name or name.endswith("bias"))
    for layer in model.encoder.layer:
        for name, module in list(layer.named_modules()):
            is_target = name.endswith(LORA_TARGETS) or name == "output.dense"
            if isinstance(module, torch.nn.Linear) and is_target:
                parent_name, _, child = name.rpartition(".")
                setattr(layer.get_submodule(parent_name), child, LowRank(module))


def train_reader(
    pairs: list[tuple[str, str, bool]],
    train_layers: int | None = None,
    learning_rate: float = LEARNING_RATE,
    seed: int = 0,
    lora_rank: int | None = None,
    max_tokens: int = MAX_TOKENS,
    epochs: int = 1,
) -> Any:
    """Fine-tune the bundled model with a linear head on [CLS] (`epochs` passes, binary
    loss): every layer, only the last `train_layers` (the embeddings and the layers below stay
    frozen), or low-rank updates of every layer's linear maps (`lora_rank`); the pairs are
    shuffled anew for each epoch after the first, and the rate decays over all of them."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    random.Random(seed).shuffle(pairs)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(DEFAULT_MODEL))
    model = AutoModel.from_pretrained(resolve_model(DEFAULT_MODEL))
    head = torch.nn.Linear(model.config.hidden_size, 1)
    if lora_rank is not None:
        add_low_rank_updates(model, lora_rank)
    if train_layers is not None:
        frozen = [model.embeddings, *model.encoder.layer[: len(model.encoder.layer) - train_layers]]
        for module in frozen:
            module.requires_grad_(False)
    params = [p for p in (*model.parameters(), *head.parameters()) if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.01)
    orders = [pairs]
    for epoch in range(1, epochs):
        orders.append(list(pairs))
        random.Random(seed + epoch).shuffle(orders[-1])
    batches = [
        order[step * BATCH : (step + 1) * BATCH]
        for order in orders
        for step in range(len(pairs) // BATCH)
    ]
    steps = len(batches)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / WARMUP_STEPS) * max(0.0, 1 - s / steps)
    )
    model.train()
    started = time.perf_counter()
    for step, batch in enumerate(batches):
        encoded = tokenizer(
            [q for q, _, _ in batch],
            [s for _, s, _ in batch],
            padding=True,
            truncation="only_second",
            max_length=max_tokens,
            return_tensors="pt",
        )
        logits = head(model(**encoded).last_hidden_state[:, 0]).squeeze(-1)
        labels = torch.tensor([float(label) for _, _, label in batch])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 50 == 0:
            print(
                f"step {step}/{steps} loss {loss.item():.3f} {time.perf_counter() - started:.0f} s"
            )
    model.eval()
    return tokenizer, model, head


def save_adapter(reader: Any, path: Path) -> None:
    """The trained parameters only: every low-rank pair (float16), the biases and layer norms
    of the model, and the head, by their names in the model."""
    _, model, head = reader
    arrays: dict[str, Any] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        value = parameter.detach().numpy()
        low_rank = name.endswith((".down", ".up"))
        arrays[name] = value.astype(np.float16 if low_rank else np.float32)
    arrays["head.weight"] = head.weight.detach().numpy()
    arrays["head.bias"] = head.bias.detach().numpy()
    np.savez_compressed(path, **arrays)


def read(reader: Any, pairs: list[tuple[str, str]], max_tokens: int = MAX_TOKENS) -> list[float]:
    """The reader's logit for each (question, sentence)."""
    import torch

    tokenizer, model, head = reader
    out: list[float] = []
    with torch.inference_mode():
        for at in range(0, len(pairs), 64):
            batch = pairs[at : at + 64]
            encoded = tokenizer(
                [q for q, _ in batch],
                [s for _, s in batch],
                padding=True,
                truncation="only_second",
                max_length=max_tokens,
                return_tensors="pt",
            )
            out += head(model(**encoded).last_hidden_state[:, 0]).squeeze(-1).tolist()
    return out


def choice_accuracy(questions: list[Question], alpha: float) -> float:
    """Share of questions whose best rescored candidate holds a gold answer."""
    right = [
        bool(q.choices) and max(q.choices, key=lambda c: c[1] + alpha * q.logits[c[0]])[2]
        for q in questions
    ]
    return float(np.mean(right))


def answerability(train: list[Question], test: list[Question], with_reader: bool) -> dict:
    """Fit evidence (+ reader logit) on `train`; on `test`, the withheld-answered share at
    each normal answered-rate in RATES, and the accuracy among the answered."""

    def row(q: Question, ask: Ask) -> list[float]:
        return ask.evidence + ([q.logits[ask.text]] if with_reader else [])

    x = [row(q, a) for q in train for a, _ in ((q.normal, 1), (q.withheld, 0)) if a is not None]
    y = [label for q in train for a, label in ((q.normal, 1), (q.withheld, 0)) if a is not None]
    mean, spread = np.mean(x, axis=0), np.std(x, axis=0) + 1e-9
    intercept, weights = fit((np.array(x) - mean) / spread, np.array(y, dtype=float))

    def confidence(q: Question, ask: Ask | None) -> float:
        if ask is None:
            return -1.0
        return float(intercept + ((np.array(row(q, ask)) - mean) / spread) @ weights)

    normal = np.array([confidence(q, q.normal) for q in test])
    withheld = np.array([confidence(q, q.withheld) for q in test])
    correct = np.array([q.normal is not None and q.normal.correct for q in test])
    result = {}
    for rate in RATES:
        threshold = np.quantile(normal, 1 - rate)
        answered = normal >= threshold
        result[str(rate)] = {
            "answered_withheld": round(float((withheld >= threshold).mean()), 4),
            "accuracy_answered": round(float(correct[answered].mean()), 4),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("squad", type=Path)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--work", type=Path, required=True, help="Folder for the asked questions.")
    parser.add_argument("--output", type=Path)
    parser.add_argument(
        "--train-layers", type=int, help="Fine-tune only the last N layers (default: all)."
    )
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE)
    parser.add_argument(
        "--lora-rank",
        type=int,
        help="Train low-rank updates of this rank (and biases, layer norms), not every weight.",
    )
    parser.add_argument(
        "--train-articles",
        choices=("even", "odd", "all"),
        default="even",
        help="Train on the even or odd articles and measure on the others, or train on all "
        "(nothing is measured; for --save-adapter).",
    )
    parser.add_argument(
        "--logits", type=Path, help="Write the held-out (question, sentence) logits here (pickle)."
    )
    parser.add_argument(
        "--save-adapter", type=Path, help="Write the trained low-rank updates here (.npz)."
    )
    parser.add_argument(
        "--with-choices",
        action="store_true",
        help="Also train on the five best sentences by choice score of each normal ask.",
    )
    parser.add_argument(
        "--withheld-choices",
        type=int,
        default=0,
        metavar="N",
        help="Also train on the N best sentences by choice score of each withheld ask (the "
        "sentences the reader reads when the answer is not there).",
    )
    parser.add_argument(
        "--epochs", type=int, default=1, help="Passes over the training pairs (default: 1)."
    )
    parser.add_argument(
        "--context",
        action="store_true",
        help="Read each sentence with its passage's title and the sentence before it.",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    cache = args.cache or default_cache_dir()
    questions = remembered(args.work / "questions.pkl", lambda: collect(args.squad, cache))
    contexts = (
        remembered(args.work / "contexts.pkl", lambda: sentence_contexts(args.squad, cache))
        if args.context
        else None
    )
    max_tokens = MAX_TOKENS_WITH_CONTEXT if args.context else MAX_TOKENS
    parity = {"even": 0, "odd": 1, "all": None}[args.train_articles]
    train = [q for q in questions if parity is None or q.article % 2 == parity]
    held_out = [q for q in questions if parity is not None and q.article % 2 != parity]
    pairs = [(q.text, text, label) for q in train for text, label in q.gold_sentences]
    pairs += [(q.text, q.withheld.text, q.withheld.correct) for q in train if q.withheld]
    if args.with_choices:
        gold_pairs = {(q, text) for q, text, _ in pairs}
        pairs += [
            (q.text, text, correct)
            for q in train
            for text, _, correct in q.choices
            if (q.text, text) not in gold_pairs
        ]
    if args.withheld_choices:
        known = {(q, text) for q, text, _ in pairs}
        pairs += [
            (q.text, text, correct)
            for q in train
            for text, _, correct in q.withheld_choices[: args.withheld_choices]
            if (q.text, text) not in known
        ]
    pairs = [(q, with_context(text, contexts), label) for q, text, label in pairs]
    started = time.perf_counter()
    reader = train_reader(
        pairs,
        args.train_layers,
        args.learning_rate,
        lora_rank=args.lora_rank,
        max_tokens=max_tokens,
        epochs=args.epochs,
    )
    train_seconds = time.perf_counter() - started
    if args.save_adapter:
        save_adapter(reader, args.save_adapter)
    if not held_out:
        print(f"trained on {len(pairs)} pairs in {train_seconds:.0f} s")
        return
    wanted = {
        (q.text, text)
        for q in held_out
        for text in [c[0] for c in q.choices]
        + [a.text for a in (q.normal, q.withheld) if a is not None]
    }
    ordered = sorted(wanted)
    read_as = [(q, with_context(text, contexts)) for q, text in ordered]
    logits = dict(zip(ordered, read(reader, read_as, max_tokens), strict=True))
    if args.logits:
        args.logits.write_bytes(pickle.dumps(logits))
    for q in held_out:
        q.logits = {text: value for (question, text), value in logits.items() if question == q.text}
    halves = (
        [q for q in held_out if q.article // 2 % 2 == 0],
        [q for q in held_out if q.article // 2 % 2 == 1],
    )
    folds = []
    for fitted, measured in (halves, halves[::-1]):
        alpha = max(ALPHAS, key=lambda a: choice_accuracy(fitted, a))
        folds.append(
            {
                "alpha": alpha,
                "choice_accuracy": round(choice_accuracy(measured, 0.0), 4),
                "choice_accuracy_with_reader": round(choice_accuracy(measured, alpha), 4),
                "answerability": answerability(fitted, measured, with_reader=False),
                "answerability_with_reader": answerability(fitted, measured, with_reader=True),
            }
        )
    report = {
        "command": f"PYTHONPATH=$PWD python eval/reader_experiment.py {args.squad}",
        "machine": cpu_description(),
        "train_layers": args.train_layers or "all",
        "lora_rank": args.lora_rank,
        "trained_on": f"{args.train_articles} articles",
        "learning_rate": args.learning_rate,
        "with_choices": args.with_choices,
        "withheld_choices": args.withheld_choices,
        "context": args.context,
        "epochs": args.epochs,
        "training_pairs": len(pairs),
        "training_seconds": round(train_seconds),
        "held_out_questions": len(held_out),
        "folds": folds,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
