"""Explain a text classifier over token ids: which words made the call?

The script makes its own data: short "reviews" of filler words with one or
two opinion words mixed in; a review is positive when its positive words
outnumber its negative ones, and "not" flips the word after it. A small
Embedding + Conv1D model learns the rule; RISE then explains its
predicted class for a few reviews it has not seen.

The model takes token ids `(batch, 20)` as int32, so RISE masks tokens, not
pixels: each token is kept or replaced by `fill_value` — here 0, the pad
id — with one cell per token by default (`grid_size=None`; an int makes
runs of tokens). The printout highlights each review's words by their
saliency in the terminal, and the HTML page does the same for a browser
or a notebook (`keras_rise.visualize.highlight_tokens`).

Last, the same classifier is wrapped to take raw strings, as Keras exports
text models (a `TextVectorization` layer in front): RISE is then given the
reviews as text and masks words — a masked word is dropped, and the words
after it move up — with one value per word (`keras_rise.text`).

Usage:
    python examples/explain_text.py [--num-masks 500] [--epochs 8]
        [--out examples/output/text.html]
"""

import argparse
import pathlib

import keras
import numpy as np

import keras_rise

LENGTH = 20
FILLER = (
    "the film movie plot actor story scene music was it and a of to this "
    "with its long city night summer old young two"
).split()
POSITIVE, NEGATIVE = ("good", "great", "superb"), ("bad", "dull", "awful")
WORDS = ["<pad>", "not", *POSITIVE, *NEGATIVE, *FILLER]
IDS = {word: index for index, word in enumerate(WORDS)}


def make_reviews(count, rng):
    """Token ids `(count, LENGTH)` and labels (1: positive)."""
    reviews, labels = [], []
    for _ in range(count):
        words = list(rng.choice(FILLER, LENGTH))
        balance = 0
        for _ in range(rng.integers(1, 3)):
            positive = rng.random() < 0.5
            word = rng.choice(POSITIVE if positive else NEGATIVE)
            where = int(rng.integers(1, LENGTH))
            negated = rng.random() < 0.25
            words[where] = word
            if negated:
                words[where - 1] = "not"
            balance += (1 if positive else -1) * (-1 if negated else 1)
        if balance == 0:  # a tie: add one more positive word at the end
            words[-1], balance = POSITIVE[0], 1
        reviews.append([IDS[word] for word in words])
        labels.append(int(balance > 0))
    return np.array(reviews, np.int32), np.array(labels)


def build_model():
    inputs = keras.Input((LENGTH,), dtype="int32")
    x = keras.layers.Embedding(len(WORDS), 16)(inputs)
    x = keras.layers.Conv1D(32, 2, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling1D()(x)
    return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x))


def string_model(model):
    """`model` on raw strings: split at whitespace, looked up in `WORDS`,
    padded to `LENGTH` with the pad id 0."""
    texts = keras.Input((), dtype="string")
    # TextVectorization gives 0 to padding and 1 to unknown words, then
    # counts the vocabulary from 2: one less is `IDS`, with 0 for both.
    vectorize = keras.layers.TextVectorization(
        standardize=None, vocabulary=WORDS[1:], output_sequence_length=LENGTH
    )
    ids = keras.ops.maximum(vectorize(texts) - 1, 0)
    return keras.Model(texts, model(ids))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-masks", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("text.html"))
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    x_train, y_train = make_reviews(4000, rng)
    model = build_model()
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=64, verbose=0)
    x_test, y_test = make_reviews(500, rng)
    print(f"test accuracy: {model.evaluate(x_test, y_test, verbose=0)[1]:.3f}")

    reviews = x_test[:4]
    explainer = keras_rise.RiseExplainer(model, num_masks=args.num_masks, fill_value=0)
    result = explainer.explain_result(reviews, verbose=0)  # each review's top class
    opinion = {IDS[w] for w in (*POSITIVE, *NEGATIVE, "not")}
    rows = []
    for ids, saliency, label, score in zip(
        reviews, result.saliency, result.class_ids, result.scores
    ):
        name = ("negative", "positive")[label]
        top = [WORDS[i] for i in ids[np.argsort(-saliency)[:2]]]
        found = [WORDS[i] for i in ids if i in opinion]
        print(f"{name} ({score:.2f}); opinion words {found}; most salient {top}")
        print("  " + keras_rise.visualize.highlight_tokens(
            ids, saliency, vocabulary=WORDS, output="terminal"))
        rows.append(
            f"<p>{name} ({score:.2f}): "
            + keras_rise.visualize.highlight_tokens(ids, saliency, vocabulary=WORDS)
            + "</p>"
        )
    texts = [" ".join(WORDS[i] for i in ids if i) for ids in reviews]
    on_strings = keras_rise.RiseExplainer(string_model(model), num_masks=args.num_masks)
    for text, saliency in zip(texts, on_strings.explain(texts, verbose=0)):
        words = keras_rise.text.words(text)
        saliency = saliency[: len(words)]  # texts of fewer words end in NaN
        print(f"as text, most salient {words[int(np.argmax(saliency))]!r}: "
              + keras_rise.visualize.highlight_tokens(words, saliency, output="terminal"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        "<html><body style='font-family: sans-serif'>\n"
        "<h3>RISE on token ids: the redder the word, the more it raises the "
        "predicted class's probability</h3>\n"
        + "\n".join(rows)
        + "\n</body></html>\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
