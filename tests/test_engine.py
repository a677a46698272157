import numpy as np
import tensorflow as tf

import keras_rise
from conftest import region_model


def _engine(model, **overrides):
    arguments = dict(
        num_masks=130,
        grid_size=7,
        keep_prob=0.5,
        batch_size=32,
        seed=4,
        fill_value=0.0,
        score_regression=False,  # the paper's estimator, checked by formula
    )
    arguments.update(overrides)
    return keras_rise.RiseEngine(model, keras_rise.RiseConfig(**arguments))


def test_sums_over_split_ranges_merge_exactly(cnn, images):
    engine = _engine(cnn)
    batch = tf.constant(images[:2])
    class_ids = tf.constant([1, 3], tf.int32)
    whole = engine.sums(batch, keras_rise.scores.ClassScore(), class_ids, 0, 130, 1)
    first = engine.sums(batch, keras_rise.scores.ClassScore(), class_ids, 0, 57, 1)
    second = engine.sums(batch, keras_rise.scores.ClassScore(), class_ids, 57, 73, 1)
    merged = first.merge(second)
    assert float(merged.count) == 130.0
    np.testing.assert_allclose(
        merged.weighted.numpy(), whole.weighted.numpy(), rtol=1e-5, atol=1e-5
    )


def test_saliency_is_normalised_by_count_and_keep_prob(cnn, images):
    engine = _engine(cnn, keep_prob=0.3)
    batch = tf.constant(images[:1])
    sums = engine.sums(batch, keras_rise.scores.ClassScore(), tf.constant([0]), 0, 130, 1)
    saliency = engine.saliency_from_sums(sums, batch)
    expected = sums.weighted.numpy().reshape(1, 32, 32) / (130 * 0.3)
    np.testing.assert_allclose(saliency.numpy()[..., 0], expected, rtol=1e-6)


def test_explain_reports_top_class_and_its_score(cnn, images):
    engine = _engine(cnn, num_masks=16)
    result = engine.explain(tf.constant(images), keras_rise.scores.ClassScore())
    saliency, class_ids, scores = result[:3]
    predictions = cnn.predict(images, verbose=0)
    np.testing.assert_array_equal(class_ids.numpy(), predictions.argmax(-1))
    np.testing.assert_allclose(scores.numpy(), predictions.max(-1), rtol=1e-5)
    assert saliency.shape == (3, 32, 32)


def test_masks_per_step_fill_the_forward_batch(cnn):
    engine = _engine(cnn, batch_size=100)
    assert engine.masks_per_step(1, (32, 32)) == 100
    assert engine.masks_per_step(3, (32, 32)) == 33
    assert engine.masks_per_step(250, (32, 32)) == 1


def test_steps_overlap_only_for_small_masked_batches(cnn):
    engine = _engine(cnn)
    # 100 masked 64x64x3 float32 images: 4.9 MB, under OVERLAP_BYTES (8 MiB).
    assert engine.steps_in_flight(tf.zeros([1, 64, 64, 3]), 100) == 2
    # The same at 224x224: 60 MB, one step at a time.
    assert engine.steps_in_flight(tf.zeros([1, 224, 224, 3]), 100) == 1
    # Bytes count images and dtype: 3 images of 64x64 at 100 masks each,
    # 14.7 MB in float32, but 7.4 MB in float16.
    assert engine.steps_in_flight(tf.zeros([3, 64, 64, 3]), 100) == 1
    assert engine.steps_in_flight(tf.zeros([3, 64, 64, 3], tf.float16), 100) == 2


def test_masks_applied_from_factors_equal_the_expanded_masks_applied():
    family = keras_rise.masks.ImageMasks((40, 56), 5, 0.5, seed=2, sampling="stratified")
    factors = family.factors(7, 9)
    images = tf.random.stateless_uniform([2, 40, 56, 3], seed=[3, 4])
    fill = tf.random.stateless_uniform([40, 56, 3], seed=[5, 6])
    masked = family.apply(factors, images, fill)
    keep = family.expand(factors)[:, None, :, :, None]
    expected = tf.reshape(fill + (images[None] - fill) * keep, [18, 40, 56, 3])
    np.testing.assert_allclose(masked, expected, atol=1e-6)
    # Mask-major: masked image 2k + b is mask k on image b.
    np.testing.assert_allclose(
        masked[3], fill + (images[1] - fill) * keep[1, 0], atol=1e-6
    )
    # The family's masks are the stream's: generate_masks gives the same rows.
    np.testing.assert_allclose(
        family.expand(factors),
        keras_rise.generate_masks(
            9, (40, 56), grid_size=5, seed=2, start=7, sampling="stratified"
        ),
        atol=1e-6,
    )


def test_the_tail_of_a_range_is_masked_by_the_loops_program():
    # Masking compiles one XLA program per number of masks (about 0.3 s on
    # a CPU): the tail of a range after whole steps is made and masked as a
    # whole step and keeps its own masks.
    model = region_model(image_shape=(29, 31, 3))
    engine = _engine(model, batch_size=23)
    batch = tf.random.stateless_uniform([1, 29, 31, 3], seed=[1, 2])
    score, targets = keras_rise.scores.ClassScore(), tf.constant([0])
    programs = keras_rise.masks.apply_factors.experimental_get_tracing_count
    before = programs()
    sums = engine.sums(batch, score, targets, 0, 3 * 23 + 5, 1)  # 3 steps and a tail
    engine.sums(batch, score, targets, 0, 23 + 11, 1)  # another tail
    assert programs() - before == 1
    # A range shorter than a step is a step of its own size.
    engine.sums(batch, score, targets, 0, 11, 1)
    assert programs() - before == 2
    # The maps are those of the masks counted: split anywhere, they merge.
    first = engine.sums(batch, score, targets, 0, 40, 1)
    second = engine.sums(batch, score, targets, 40, 34, 1)
    assert float(sums.count) == 74.0
    np.testing.assert_allclose(
        first.merge(second).weighted.numpy(), sums.weighted.numpy(), rtol=1e-5, atol=1e-5
    )


def test_default_batch_size_bounds_the_pixels_of_a_pass(cnn):
    engine = _engine(cnn, batch_size=None)
    # 100 per pass up to 52 428 pixels (224×224 keeps 100), then fewer.
    assert engine.masks_per_step(1, (224, 224)) == 100
    assert engine.masks_per_step(1, (512, 512)) == 20
    assert engine.masks_per_step(2, (512, 512)) == 10
    assert engine.masks_per_step(1, (4096, 4096)) == 1
    assert engine.masks_per_step(1, (None, None)) == 100
    # A batch size given is kept whatever the size.
    assert _engine(cnn, batch_size=64).masks_per_step(1, (512, 512)) == 64
    config = keras_rise.RiseConfig()
    assert config.batch_size is None and config.batch_size_for((600, 800)) == 10


def _functions(concrete):
    graph = concrete.graph.as_graph_def()
    return graph, {function.signature.name: function for function in graph.library.function}


def _called(node_defs, library):
    """Names of the library functions that these nodes call, directly or not."""
    names, pending = set(), list(node_defs)
    while pending:
        node = pending.pop()
        targets = [node.op] + [
            value.func.name for value in node.attr.values() if value.func.name
        ]
        for name in targets:
            if name in library and name not in names:
                names.add(name)
                pending.extend(library[name].node_def)
    return names


def test_the_compiled_loop_never_waits_for_the_device(cnn, images):
    # On a GPU, a branch or loop condition on a tensor the device made is a
    # copy back to the host after all the work queued before it, and an
    # int32 tensor (which TensorFlow keeps in host memory) that enters the
    # step is a copy to the device: the loop would wait for every step to
    # finish before queuing the next. Without a tolerance, nothing in the
    # loop's condition and nothing in the step's XLA program may branch, and
    # the program takes no int32 input.
    engine = _engine(cnn, jit_compile=True, score_regression=True, num_masks=300)
    explain = tf.function(
        lambda batch: engine.explain(batch, keras_rise.scores.ClassScore()).saliency
    )
    graph, library = _functions(explain.get_concrete_function(tf.constant(images[:1])))
    nodes = list(graph.node) + [n for f in library.values() for n in f.node_def]
    loops = [node for node in nodes if node.op in ("While", "StatelessWhile")]
    assert len(loops) == 1
    branches = {"If", "StatelessIf", "While", "StatelessWhile", "Case", "StatelessCase"}
    condition = library[loops[0].attr["cond"].func.name].node_def
    inner = _called(condition, library)
    assert not {n.op for n in condition} & branches
    assert not {n.op for name in inner for n in library[name].node_def} & branches
    body = library[loops[0].attr["body"].func.name].node_def
    compiled = [
        name for name in _called(body, library) if library[name].attr["_XlaMustCompile"].b
    ]
    # Programs launched from the loop, not those inlined into another.
    nested = set().union(*(_called(library[name].node_def, library) for name in compiled))
    launched = set(compiled) - nested
    assert launched  # the step (and the estimator's refit, between units)
    for name in launched:
        inputs = {arg.type for arg in library[name].signature.input_arg}
        assert tf.int32.as_datatype_enum not in inputs, name
        ops = {n.op for f in _called(library[name].node_def, library) | {name}
               for n in library[f].node_def}
        assert not ops & branches, (name, ops & branches)


def test_under_xla_a_steps_model_pass_needs_no_sums_of_the_steps_before(cnn, images):
    # With jit_compile=True the program that makes a step's masks and runs
    # the model takes only the step's first mask index and the inputs, so
    # the host can launch several ahead; only the estimator's sums (and its
    # fit, refreshed from them between units) chain from step to step. Were
    # the model in the same program as the sums, each launch would wait for
    # the one before it, and a GPU would idle between steps.
    engine = _engine(cnn, jit_compile=True, score_regression=True, num_masks=300)
    batch = tf.constant(images[:1])
    explain = tf.function(
        lambda batch: engine.explain(batch, keras_rise.scores.ClassScore()).saliency
    )
    graph, library = _functions(explain.get_concrete_function(batch))
    nodes = list(graph.node) + [n for f in library.values() for n in f.node_def]
    (loop,) = [node for node in nodes if node.op in ("While", "StatelessWhile")]
    body = library[loop.attr["body"].func.name]
    estimator = engine.estimator(keras_rise.inputs.layout(batch))
    sums = estimator.zeros(1)
    carried = len(tf.nest.flatten(sums)) + len(tf.nest.flatten(estimator.initial_state(sums)))
    # TensorFlow's own iteration counter and limit, then the loop's
    # variables: the step counter, the first mask index, sums and fit.
    args = [arg.name for arg in body.signature.input_arg][2:]
    chained = set(args[2 : 2 + carried])
    by_name = {node.name: node for node in body.node_def}

    def runs(node, op):
        called = _called([node], library)
        return any(n.op == op for name in called for n in library[name].node_def)

    (model_pass,) = [node for node in body.node_def if runs(node, "Conv2D")]
    assert any(library[name].attr["_XlaMustCompile"].b for name in _called([model_pass], library))
    needs, pending = set(), [model_pass]
    while pending:
        for name in pending.pop().input:
            name = name.lstrip("^").split(":")[0]
            if name in needs:
                continue
            needs.add(name)
            if name in by_name:
                pending.append(by_name[name])
    assert args[1] in needs  # the first mask index
    assert not needs & chained, needs & chained
    sums_pass = [node for node in body.node_def if set(node.input) & chained]
    assert sums_pass and model_pass not in sums_pass


def test_engines_of_equal_mask_options_share_their_masks_and_estimator():
    # What depends on neither the model nor the number of masks is made and
    # traced once for every engine of these options: a new model's
    # explainer traces only its own loop.
    from keras_rise import engine as engine_lib

    layout = ((32, 32), False)
    batch = tf.random.stateless_uniform([1, 32, 32, 3], seed=[5, 6])
    score, targets = keras_rise.scores.ClassScore(), tf.constant([0])
    options = dict(score_regression=True, seed=11)
    first = _engine(region_model(), **options)
    expected = first.sums(batch, score, targets, 0, 40, 1)
    expected_maps = first.saliency_rows(expected, layout)
    second = _engine(
        region_model(box=(0, 8, 0, 8)), num_masks=77, fill_value=0.5, **options
    )
    parts = first._mask_parts(layout)
    assert second._mask_parts(layout) is parts
    functions = list(parts._functions.values())
    assert sorted(parts._functions) == [
        "close_unit", "fold", "make", "refit", "saliency_rows", "start", "update_state"
    ]
    traced = [function.experimental_get_tracing_count() for function in functions]
    # Another model, the same masks and bookkeeping.
    second.saliency_rows(second.sums(batch, score, targets, 0, 40, 1), layout)
    assert [function.experimental_get_tracing_count() for function in functions] == traced
    for other in (dict(grid_size=5), dict(keep_prob=0.4), dict(score_regression=False)):
        assert _engine(region_model(), **{**options, **other})._mask_parts(layout) is not parts
    # Sharing changes no sums: an engine made after the shared parts are
    # dropped computes the same.
    engine_lib._shared_mask_parts.cache_clear()
    fresh = _engine(region_model(), **options)
    assert fresh._mask_parts(layout) is not parts
    got = fresh.sums(batch, score, targets, 0, 40, 1)
    np.testing.assert_allclose(got.weighted.numpy(), expected.weighted.numpy(), atol=1e-6)
    np.testing.assert_allclose(
        fresh.saliency_rows(got, layout).numpy(), expected_maps.numpy(), atol=1e-6
    )
    np.testing.assert_allclose(
        got.feature_score.numpy(), expected.feature_score.numpy(), atol=1e-6
    )
