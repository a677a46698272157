"""Models of raw text: strings explained word by word.

A Keras model that takes strings (a `TextVectorization` layer inside, the
way Keras exports text classifiers) cannot be masked pixel by pixel or id by
id. RISE masks its words instead: each text is split at whitespace, a mask
keeps or drops every word, and the model scores the kept words joined by
single spaces. The map has one value per word, in the order of `words`.
Given a fill word (`fill_value="[UNK]"`, say), masked words are replaced by
it instead of dropped, so the words kept stay in their places.

`RiseExplainer.explain` takes such texts directly — a string, or a list or
array of them — and runs `TextModel` underneath; this module is what it
uses, for those who want the words a map lines up with.
"""

import numpy as np
import tensorflow as tf

from keras_rise import _checks
from keras_rise import inputs as inputs_lib
from keras_rise import scores as scores_lib


def is_text(value):
    """Whether `value` is text: a string, or an array or list of strings
    (`str` or `bytes`), or a string tensor."""
    if isinstance(value, (str, bytes)):
        return True
    if tf.is_tensor(value):
        return value.dtype == tf.string
    if isinstance(value, (list, tuple)):
        first = value
        while isinstance(first, (list, tuple)) and first:
            first = first[0]
        if not isinstance(first, (str, bytes)):
            return False  # numbers (images given as lists), without a pass over them
        value = np.asarray(value, dtype=object)
    if not isinstance(value, np.ndarray) or value.size == 0:
        return False
    if value.dtype.kind in "US":
        return True
    return value.dtype == object and all(isinstance(item, (str, bytes)) for item in value.flat)


def takes_text(model, image_input=None):
    """Whether `model` may take texts: one declared string input, or the
    string input `image_input` names among several; or no declared input at
    all (a function)."""
    if not getattr(model, "inputs", None):
        return True
    declared = declared_input(model, image_input)
    return declared is not None and inputs_lib.is_string_dtype(declared.dtype)


def declared_input(model, image_input=None):
    """The declared input of `model` that `image_input` names (an input name
    or an index), or its only one for `None`; `None` if there is none."""
    declared = list(getattr(model, "inputs", None) or ())
    if image_input is None:
        return declared[0] if len(declared) == 1 else None
    if isinstance(image_input, str):
        matches = [x for x in declared if getattr(x, "name", None) == image_input]
        return matches[0] if len(matches) == 1 else None
    if isinstance(image_input, int) and not isinstance(image_input, bool):
        if -len(declared) <= image_input < len(declared):
            return declared[image_input]
    return None


def masked_entry(inputs, image_input):
    """The entry of a dict or list of inputs that `image_input` names (a
    key, or an index of a list), or `None`."""
    if isinstance(inputs, dict):
        return inputs.get(image_input) if isinstance(image_input, str) else None
    if isinstance(inputs, (list, tuple)) and isinstance(image_input, int):
        if not isinstance(image_input, bool) and -len(inputs) <= image_input < len(inputs):
            return inputs[image_input]
    return None


def refuse_strings(model, what):
    """Raises for a model of strings given to `what`, which masks numeric
    inputs only: texts are explained by `RiseExplainer.explain`. (Strings
    beside a numeric input, held fixed, are not refused.)"""
    declared = getattr(model, "inputs", None)
    if declared and len(declared) == 1 and inputs_lib.is_string_dtype(declared[0].dtype):
        raise ValueError(
            f"{what} takes models of numeric inputs (images, signals, token ids, "
            "volumes); this model takes strings. Explain texts with "
            "keras_rise.RiseExplainer(model).explain(texts) (keras_rise.text)."
        )


def as_texts(value, name="texts"):
    """Texts as a list of `str`, and whether one text was given.

    Takes a string, a list or array of strings `(batch,)`, or `(batch, 1)`
    (the shape of a Keras model on `keras.Input((1,), dtype="string")`).

    Raises:
        ValueError: for other shapes, or a text without words.
    """
    if tf.is_tensor(value):
        value = value.numpy()
    array = np.asarray(value, dtype=object)
    single = array.ndim == 0
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim > 1:
        raise ValueError(
            f"`{name}` must be one text or a batch of texts, (batch,) or (batch, 1). "
            f"Received shape {array.shape}."
        )
    texts = [
        item.decode("utf-8") if isinstance(item, bytes) else item
        for item in np.atleast_1d(array)
    ]
    for index, text in enumerate(texts):
        if not text.split():
            raise ValueError(f"`{name}[{index}]` has no words to mask. Received {text!r}.")
    return texts, single


def masked_word(value, name, default):
    """The word a masked word becomes, from a `fill_value` or `substrate`
    given with texts: `""` (dropped) for `default`, else the word itself.

    Raises:
        ValueError: for anything but `default` or one word.
    """
    if isinstance(value, type(default)) and value == default:
        return ""
    if isinstance(value, str) and value not in inputs_lib.FILL_MODES:
        return _checks.fill_word(value, name)
    raise ValueError(
        f"For texts, masked words are dropped, or replaced by a word given as `{name}` "
        f'(e.g. "[UNK]"); numbers, arrays, "mean" and "blur" do not apply. '
        f"Received: {name}={value!r}."
    )


def words(texts):
    """The words RISE masks in each text: split at whitespace.

    Args:
        texts: a string, or a list or array of strings.

    Returns:
        A list of words for one string, else a list of such lists.

    Example:

    >>> keras_rise.text.words("a  fine\\tfilm")
    ['a', 'fine', 'film']
    """
    texts, single = as_texts(texts)
    split = [text.split() for text in texts]
    return split[0] if single else split


def word_count_groups(texts):
    """The texts of each word count, in order of first appearance: a list of
    `(count, rows)`, `rows` an int array of indices into `texts` (a list of
    `str`). Texts of one count are masked together; their maps and curves
    share one length."""
    counts = [len(text.split()) for text in texts]
    return [
        (count, np.array([i for i, size in enumerate(counts) if size == count]))
        for count in dict.fromkeys(counts)
    ]


def targets_of_rows(targets, rows, count):
    """`targets` for the texts `rows` of `count`: a sequence of one target
    per text is sliced, anything else is shared."""
    if targets is None or isinstance(targets, (str, scores_lib.Score)) or callable(targets):
        return targets
    values = np.asarray(targets)
    if values.ndim >= 1 and len(values) == count:
        return values[rows]
    return targets


class TextModel:
    """A model of strings called on the word positions RISE masks.

    Its inputs are a dict: `"positions"`, int32 `(batch, length)`, the
    position in `"words"` of each word kept, or 0 where the mask dropped
    it; and `"words"`, strings `(batch, length + 1)`, each text's words
    after entry 0, the fill word (empty: masked words are left out). The
    words are joined by single spaces and given to the model in the shape
    it takes one text in: `()` or `(1,)`. For a model of several inputs
    (`keys`), the texts go in as input `text_input` and the others come in
    the dict as `"other KEY"`, held fixed.

    Args:
        model: a Keras model (or callable) of strings.
        text_shape: `()` or `(1,)`, the shape of one text for the model.
            Defaults to `()`.
        text_input: for a model of several inputs, the key (or index) of
            the texts among `keys`; `None` (default) for texts alone.
        keys: the model's inputs: the keys of the dict it takes, or a list
            of the indices `0 .. n - 1` of the list it takes.
    """

    def __init__(self, model, text_shape=(), text_input=None, keys=()):
        self.model = model
        self.text_shape = tuple(text_shape)
        self.text_input = text_input
        self.keys = tuple(keys)
        self.name = getattr(model, "name", type(model).__name__)

    def __call__(self, inputs):
        kept = tf.gather(inputs["words"], inputs["positions"], batch_dims=1)
        texts = _texts_of_words(self.model, self.text_shape, kept)
        if self.text_input is None:
            return self.model(texts)
        given = {
            key: texts if key == self.text_input else inputs[f"other {key}"]
            for key in self.keys
        }
        if all(isinstance(key, int) for key in self.keys):
            return self.model([given[key] for key in self.keys])
        return self.model(given)


class VocabularyModel:
    """A model of strings called on word ids: entry `i` of `vocabulary` for
    id `i`, id 0 the fill word (empty: a dropped one). The metrics' curves run on
    it, the ids being token ids to delete or insert.

    Args:
        model: a Keras model (or callable) of strings.
        vocabulary: the words, `""` first.
        text_shape: `()` or `(1,)`, as for `TextModel`. Defaults to `()`.
    """

    def __init__(self, model, vocabulary, text_shape=()):
        self.model = model
        self.vocabulary = tf.constant(list(vocabulary))
        self.text_shape = tuple(text_shape)
        self.name = getattr(model, "name", type(model).__name__)

    def __call__(self, ids):
        words = tf.gather(self.vocabulary, ids)
        return self.model(_texts_of_words(self.model, self.text_shape, words))


def word_ids(texts, fill=""):
    """Texts of one word count as word ids: `(vocabulary, ids)`, the
    vocabulary's entry 0 the `fill` word (`""`, the default, for none) and
    `ids` int32 `(batch, words)`.

    Raises:
        ValueError: when the texts' word counts differ.
    """
    split = [text.split() for text in texts]
    if len({len(words) for words in split}) > 1:
        raise ValueError(
            "`texts` must be of one word count (see `word_count_groups`); received "
            f"{sorted({len(w) for w in split})} words."
        )
    vocabulary = [fill] + sorted({word for words in split for word in words} - {fill})
    index = {word: i for i, word in enumerate(vocabulary)}
    ids = np.array([[index[word] for word in words] for words in split], np.int32)
    return vocabulary, ids


def call(model, texts):
    """`model`'s outputs on `texts` (a list of `str`), called as RISE calls
    it: words joined by single spaces, in the shape it takes a text in."""
    joined = tf.constant([[" ".join(text.split())] for text in texts])
    return model(_texts_of_words(model, text_shape(model), joined))


def _texts_of_words(model, text_shape, words):
    """The texts of `words` `(batch, length)` for `model`: each row's words
    joined by single spaces (dropped, empty words leave none), in the shape
    `text_shape` the model takes one text in."""
    texts = tf.strings.reduce_join(words, axis=-1, separator=" ")
    texts = tf.strings.strip(tf.strings.regex_replace(texts, " +", " "))
    if text_shape == (1,):
        texts = texts[:, None]
    if tf.executing_eagerly() and inputs_lib.may_be_python(model):
        # Python code (scikit-learn, say) gets the texts as Python strings.
        texts = np.vectorize(lambda text: text.decode("utf-8"), otypes=[object])(
            texts.numpy()
        )
    return texts


def word_inputs(word_lists, fill="", others=None):
    """The unmasked inputs of a `TextModel` for texts of one word count.

    Args:
        word_lists: a list of `length` words per text.
        fill: the word a masked word becomes; `""` (default) drops it.
        others: a dict of the model's other inputs, one row per text (see
            `TextModel`), or `None`.

    Returns:
        `{"positions": int32 (batch, length), "words": object (batch, length + 1)}`,
        `fill` in entry 0 of each row of words; and `"other KEY"` for each
        of `others`.
    """
    length = len(word_lists[0])
    positions = np.tile(np.arange(1, length + 1, dtype=np.int32), (len(word_lists), 1))
    words_array = np.empty((len(word_lists), length + 1), dtype=object)
    words_array[:, 0] = fill
    words_array[:, 1:] = word_lists
    inputs = {"positions": positions, "words": words_array}
    for key, value in (others or {}).items():
        inputs[f"other {key}"] = value
    return inputs


def text_shape(model, image_input=None):
    """The shape of one text for `model` (for its input `image_input`):
    `(1,)` for a Keras model declared on `keras.Input((1,), dtype="string")`,
    else `()`."""
    declared = declared_input(model, image_input)
    if declared is not None and tuple(declared.shape[1:]) == (1,):
        return (1,)
    return ()
