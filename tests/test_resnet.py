import numpy as np
import pytest
import keras

from noisy.resnet import PRESETS, ResNet9, build_resnet, survival_probabilities


def test_survival_decays_linearly_to_the_last_block():
    p = survival_probabilities(16, 0.8)
    assert len(p) == 16
    assert p[-1] == pytest.approx(0.8)
    assert p[0] == pytest.approx(1 - 0.2 / 16)
    assert np.allclose(np.diff(p), -0.2 / 16)


def test_article_resnet50_shape():
    model = build_resnet("resnet50", 10, (32, 32, 3))
    # Downsampling only at the first block of stages 2 and 4: 32 -> 16 -> 16 -> 8.
    assert model.get_layer("stage1_block3_out").output.shape[1:3] == (32, 32)
    assert model.get_layer("stage2_block1_out").output.shape[1:3] == (16, 16)
    assert model.get_layer("stage3_block6_out").output.shape[1:3] == (16, 16)
    assert model.get_layer("stage4_block3_out").output.shape[1:3] == (8, 8)
    assert model.get_layer("stage4_block3_out").output.shape[-1] == 2048
    # The stride is on the 3x3 conv, not on the last 1x1.
    assert model.get_layer("stage2_block1_2_conv").strides == (2, 2)
    assert model.get_layer("stage2_block1_3_conv").strides == (1, 1)
    assert model.get_layer("stem_conv").kernel_size == (5, 5)
    assert 23e6 < model.count_params() < 24e6


def test_presets_grow_from_tiny_to_students():
    counts = {name: build_resnet(name, 10, (32, 32, 3)).count_params() for name in PRESETS}
    assert 2e5 < counts["tiny"] < 5e5
    assert counts["resnet101"] > counts["resnet50"] and counts["wide_resnet50"] > counts["resnet50"]


def test_resnet9_presets_halve_the_image_per_stage_and_grow_in_width():
    counts = [build_resnet(name, 10, (32, 32, 3)).count_params() for name, spec in PRESETS.items()
              if isinstance(spec, ResNet9)]
    assert counts == sorted(counts) and 3e5 < counts[0] < 5e5  # w16 < w24 < w32
    model = build_resnet("resnet9_w16", 10, (32, 32, 3), dropout=0.5, survival_last=0.8)
    assert model.get_layer("stage3_block1_add").output.shape[1:] == (4, 4, 128)
    drops = [layer for layer in model.layers if layer.name.endswith("_drop")]
    assert [round(1 - d.rate, 6) for d in drops] == [0.9, 0.8]  # two residual blocks, linear to 0.8
    assert model.get_layer("head_dropout").rate == 0.5


@pytest.mark.parametrize("name", ["resnet9_w16"])  # the bottleneck presets train in every pipeline test
def test_forward_and_backward_at_a_tiny_size(name):
    model = build_resnet(name, 3, (16, 16, 3), dropout=0.5, survival_last=0.8, weight_decay=5e-4)
    model.compile("adam", "categorical_crossentropy")
    x = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3)).astype("uint8")
    y = np.eye(3, dtype="float32")[np.arange(8) % 3]
    history = model.fit(x, y, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    probs = model.predict(x, verbose=0)
    assert probs.shape == (8, 3) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_stochastic_depth_layers_have_the_linear_rates():
    model = build_resnet("tiny", 10, (16, 16, 3), survival_last=0.8)
    drops = [layer for layer in model.layers if layer.name.endswith("_drop")]
    assert [round(1 - d.rate, 6) for d in drops] == [round(p, 6) for p in survival_probabilities(4, 0.8)]
    assert all(tuple(d.noise_shape) == (None, 1, 1, 1) for d in drops)
    assert not any(l.name.endswith("_drop") for l in build_resnet("tiny", 10, (16, 16, 3)).layers)


def test_stochastic_depth_drops_whole_branches_per_sample():
    model = build_resnet("tiny", 10, (16, 16, 3), survival_last=0.8)
    drop = model.get_layer("stage4_block1_drop")  # the last block: survival 0.8
    keras.utils.set_random_seed(1)
    out = keras.ops.convert_to_numpy(drop(np.ones((4000, 2, 2, 3), "float32"), training=True))
    per_sample = out.reshape(4000, -1)
    assert (per_sample == per_sample[:, :1]).all()  # a whole branch is kept or dropped
    kept = per_sample[:, 0] > 0
    assert abs(kept.mean() - 0.8) < 0.03  # 0.8, not 0.2: p and 1 - p must not be swapped
    assert np.allclose(per_sample[kept, 0], 1 / 0.8)  # inverted scaling
    identity = keras.ops.convert_to_numpy(drop(np.ones((10, 2, 2, 3), "float32"), training=False))
    assert (identity == 1).all()


def test_inference_is_deterministic_and_training_is_noisy():
    model = build_resnet("tiny", 10, (16, 16, 3), dropout=0.5, survival_last=0.5)
    x = np.random.default_rng(0).integers(0, 255, (16, 16, 16, 3)).astype("float32")
    a, b = model(x, training=False), model(x, training=False)
    assert np.array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
    # Train mode with noise differs from inference (zero-init last BN makes branches
    # start as zero, so perturb the head's input via dropout: outputs must differ).
    c = model(x, training=True)
    assert not np.allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(c))


def test_keras_save_load_round_trip(tmp_path):
    model = build_resnet("tiny", 4, (16, 16, 3), dropout=0.5, survival_last=0.8, weight_decay=1e-4)
    model.compile("adam", "categorical_crossentropy")
    x = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3)).astype("uint8")
    model.fit(x, np.eye(4, dtype="float32")[np.arange(8) % 4], verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert np.allclose(model.predict(x, verbose=0), loaded.predict(x, verbose=0), atol=1e-6)
    assert loaded.get_layer("stage4_block1_drop").noise_shape == (None, 1, 1, 1)


def test_bad_arguments_echo_the_value():
    with pytest.raises(ValueError, match="unknown model preset 'resnet18'"):
        build_resnet("resnet18")
    with pytest.raises(ValueError, match="Received: survival_last=0"):
        build_resnet("tiny", survival_last=0)


def test_nan_loss_stops_training_with_a_clear_error():
    from noisy.errors import UserError
    from noisy.training import StopOnNaN
    callback = StopOnNaN()
    callback.set_model(build_resnet("tiny", 4, (16, 16, 3)))
    callback.on_epoch_end(0, {"loss": 1.5})  # finite: nothing happens
    with pytest.raises(UserError, match=r"training loss became nan in epoch 8; lower --lr"):
        callback.on_epoch_end(7, {"loss": float("nan")})
    with pytest.raises(UserError, match=r"became inf"):
        callback.on_epoch_end(1, {"loss": float("inf")})
    # A NaN weight with a finite loss (XLA's relu can turn NaN into 0): stopped too.
    kernel = callback.model.get_layer("stem_conv").kernel
    kernel.assign(np.where(np.arange(kernel.shape[-1]) == 0, np.nan, kernel.numpy()))
    with pytest.raises(UserError, match=r"the weights became NaN or infinite \(training loss 1.5\) in epoch 3; "
                                        r"lower --lr or check the data \((no epoch was checkpointed|epoch \d+'s)"):
        callback.on_epoch_end(2, {"loss": 1.5})


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_mixed_precision_keeps_the_classifier_in_float32(precision):
    from noisy.devices import configure_devices
    try:
        scope, replicas = configure_devices(precision, data_parallel=False)
        assert replicas == 1
        model = build_resnet("tiny", 3, (16, 16, 3))
        assert model.get_layer("stem_conv").compute_dtype == precision
        assert model.get_layer("classifier").compute_dtype == "float32"
        out = model(np.zeros((2, 16, 16, 3), "float32"))
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_unknown_precision_and_jit_settings_are_refused():
    from noisy.devices import configure_devices
    from noisy.errors import UserError
    from noisy.training import compile_model
    with pytest.raises(UserError, match=r"--mixed_precision='fp8': expected"):
        configure_devices("fp8")
    with pytest.raises(UserError, match=r"--jit_compile='yes': expected 'auto', 'true' or 'false'"):
        compile_model(build_resnet("tiny", 3, (16, 16, 3)), "adam", "yes")
