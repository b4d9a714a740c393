"""The GPU user's path rehearsed on CPU stand-ins (issue #35): data parallelism over
several devices of one machine, 2 logical CPU devices under TensorFlow (NOISY_CPU_DEVICES)
and 3 host devices under JAX (XLA_FLAGS; a teacher over 2 in the two-process test), with the noise on the device,
bfloat16, XLA (JAX; TensorFlow's MirroredStrategy runs without it) and the weight average. Each backend's four stages run
once (module fixtures) and several tests read them. Then a job of two JAX processes."""
import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import REPO, run_script, synthetic_images

SHARED = pytest.mark.xdist_group("multidevice")  # the tests that read one pipeline run: one worker makes it once


def devices_env(backend, count):
    """The environment for `count` CPU devices standing in for accelerators."""
    if backend == "jax":  # XLA's CPU optimisations and its newer CPU runtime off: half each run's compile time
        return {"KERAS_BACKEND": "jax", "XLA_FLAGS": f"--xla_force_host_platform_device_count={count} "
                "--xla_backend_optimization_level=0 --xla_cpu_use_thunk_runtime=false"}
    return {"KERAS_BACKEND": "tensorflow", "NOISY_CPU_DEVICES": str(count)}


GPU_PATH = ["--data_parallel=True", "--augment=device", "--mixed_precision=bfloat16", "--batch_size=8"]
FAKE_NVIDIA_SMI = "#!/bin/sh\necho 'GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-00000000-0000-0000-0000-000000000000)'\n"


def four_stages(folder, backend, count, teacher_args):
    """The article's procedure over `count` devices on synthetic data: a teacher without
    noise, labeling (where `nvidia-smi`, a stand-in script, lists a GPU), a noised student,
    evaluation. Returns
    (run folder, {stage: CompletedProcess})."""
    x_train, y_train = synthetic_images(400, 4, seed=1)
    x_test, y_test = synthetic_images(80, 4, seed=2)
    npz, run = str(folder / "synthetic.npz"), str(folder / "run")
    np.savez(npz, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    (bin_dir / "nvidia-smi").chmod(0o755)
    env = devices_env(backend, count)
    out = {"teacher": run_script("train_teacher.py", f"--data={npz}", f"--run_dir={run}", "--epochs=1",
                                 "--num_labeled=80", "--num_val=40", "--model=tiny", *GPU_PATH,
                                 *teacher_args, env=env)}
    out["pseudo"] = run_script("pseudo_label.py", f"--run_dir={run}", "--threshold=0.0", "--per_class=10",
                               env=dict(env, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}"))
    out["student"] = run_script("train_student.py", f"--run_dir={run}", "--epochs=1", *GPU_PATH, *teacher_args,
                                env=env)
    out["evaluate"] = run_script("evaluate.py", f"--run_dir={run}", "--severities=()", "--tta=False",
                                 "--plots=False", env=env)
    return run, out


@pytest.fixture(scope="module")
def tensorflow_run(tmp_path_factory):
    # No XLA: Keras cannot compile MirroredStrategy's train step (test_xla_is_refused_...).
    return four_stages(tmp_path_factory.mktemp("tf2"), "tensorflow", 2, ["--jit_compile=auto", "--ema=0.99"])


@pytest.fixture(scope="module")
def jax_run(tmp_path_factory):
    # 3 devices: batches of 8 x 3, 40 validation images padded to 42.
    return four_stages(tmp_path_factory.mktemp("jax3"), "jax", 3, ["--jit_compile=true", "--ema=0.99"])


@SHARED
@pytest.mark.parametrize("name, where, xla", [
    ("tensorflow_run", "running on tensorflow: 2 cpu device(s), mixed_bfloat16, {noise}, "
                       "data parallel over 2 replicas", "XLA off"),
    ("jax_run", "running on jax: 3 cpu device(s), mixed_bfloat16, {noise}, data parallel over 3 replicas",
     "XLA on")])
def test_the_four_stages_run_data_parallel(name, where, xla, request):
    run, out = request.getfixturevalue(name)
    replicas = 2 if name == "tensorflow_run" else 3
    for stage, noise in (("teacher", "no input noise"), ("student", "noise on the device")):
        stdout = out[stage].stdout
        assert where.format(noise=noise) in stdout, stdout
        assert f"global batch {8 * replicas} (8 x {replicas} replica(s)), learning rate 0.001 (none scaling)" in stdout
        assert f"steps, {xla}" in stdout
    assert f"1 epochs of {80 // (8 * replicas)} steps" in out["teacher"].stdout
    assert ", mixed_bfloat16, predicting on one device" in out["pseudo"].stdout  # the teacher's precision
    results = json.load(open(os.path.join(run, "results.json")))
    for stage in ("teacher", "student"):
        assert np.array(results[stage]["confusion"]).sum() == 80
    assert results["teacher"]["noise"] is False and results["student"]["noise"] is True
    config = json.load(open(os.path.join(run, "student", "config.json")))
    assert config["data_parallel"] is True and config["augment"] == "device" and config["lr_scaling"] == "auto"


@SHARED
@pytest.mark.parametrize("name", ["tensorflow_run", "jax_run"])
def test_validation_is_over_the_real_images_only(name, request):
    # 40 validation images; under JAX padded to 42 (3 devices) with weights 0: an accuracy of
    # k/42 or a loss over the copies would show here as a fraction not of the form k/40.
    run, _ = request.getfixturevalue(name)
    for stage in ("teacher", "student"):
        with open(os.path.join(run, stage, "history.csv")) as f:
            row = next(csv.DictReader(f))
        correct = float(row["val_accuracy"]) * 40
        assert abs(correct - round(correct)) < 1e-3, row


@SHARED
def test_a_gpu_the_backend_cannot_see_is_warned_about(jax_run):
    _, out = jax_run
    assert ('warning: nvidia-smi sees 1 GPU(s) but jax sees none, so this runs on the CPU: install jax\'s CUDA '
            'build (pip install "jax[cuda12]"; docs/GPU.md)') in out["pseudo"].stderr
    assert "warning: nvidia-smi" not in out["teacher"].stderr  # no nvidia-smi there: nothing to say


def test_xla_is_refused_under_tensorflow_mirrored_strategy(synthetic_npz, tmp_path):
    out = run_script("train_teacher.py", f"--data={synthetic_npz}", f"--run_dir={tmp_path / 'run'}", "--epochs=1",
                     "--num_labeled=80", "--num_val=40", "--model=tiny", "--data_parallel=True", "--jit_compile=true",
                     check=False,
                     env=devices_env("tensorflow", 2))
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert lines[-1] == ("error: --jit_compile=true with --data_parallel=True over 2 replicas: TensorFlow's "
                         "MirroredStrategy cannot run Keras' XLA train step (keras-team/keras#19005); use "
                         "--jit_compile=auto (no XLA) or KERAS_BACKEND=jax")


# One training step on one global batch, data parallel over 2 devices and on one device.
# What may differ: the order of float sums (the gradient's all-reduce), and under
# TensorFlow batch norm, whose statistics MirroredStrategy computes per replica (JAX's
# DataParallel computes them over the global batch): there the model has none.
STEP = textwrap.dedent("""
    import sys
    import numpy as np
    sys.path.insert(0, {repo!r})
    import noisy
    keras = noisy.import_keras()
    from noisy.devices import configure_devices
    from noisy.training import compile_model

    def build():
        norm = [keras.layers.BatchNormalization()] if keras.backend.backend() == "jax" else []  # global under JAX
        return keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Conv2D(8, 3),
                                 *norm, keras.layers.ReLU(), keras.layers.GlobalAveragePooling2D(),
                                 keras.layers.Dense(4, activation="softmax")])

    def one_step(model, weights):
        model.set_weights(weights)
        compile_model(model, keras.optimizers.SGD(0.5))
        model.train_on_batch(x, y)
        return model.get_weights()

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 256, (16, 16, 16, 3)).astype("uint8"), np.eye(4)[np.arange(16) % 4].astype("float32")
    keras.utils.set_random_seed(0)
    scope, replicas = configure_devices("", data_parallel=True)
    with scope:
        parallel = build()
        start = parallel.get_weights()
        after_parallel = one_step(parallel, start)
    if keras.backend.backend() == "jax":
        keras.distribution.set_distribution(None)
    alone = build()
    after_alone = one_step(alone, start)
    moved = max(float(np.abs(a - s).max()) for a, s in zip(after_alone, start))
    print(replicas, moved, max(float(np.abs(a - b).max()) for a, b in zip(after_parallel, after_alone)))
""")


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_a_data_parallel_step_is_the_one_device_step(backend):
    out = subprocess.run([sys.executable, "-c", STEP.format(repo=REPO)], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **devices_env(backend, 2)))
    assert out.returncode == 0, out.stderr
    replicas, moved, difference = out.stdout.split()[-3:]
    assert int(replicas) == 2 and float(moved) > 1e-3  # two replicas, and the step changed the weights
    assert float(difference) < 1e-5, out.stdout  # float32, reduction order only


def test_the_global_batch_and_rate():
    from noisy.devices import global_batch_and_rate
    assert global_batch_and_rate(64, 0.1, 8, "sgd") == (512, 0.8, "linear")
    assert global_batch_and_rate(64, 0.001, 8, "adam") == (512, 0.001, "none")
    assert global_batch_and_rate(64, 0.001, 4, "adam", "sqrt") == (256, 0.002, "sqrt")
    assert global_batch_and_rate(64, 0.1, 4, "sgd", "none") == (256, 0.1, "none")
    assert global_batch_and_rate(64, 0.001, 1, "adam", "linear") == (64, 0.001, "linear")


def test_an_unknown_rate_rule_is_refused():
    import ast
    from noisy.errors import UserError
    from noisy.settings import check_training_settings, settings_block
    settings = {name.lower(): ast.literal_eval(default)
                for name, default, _ in settings_block(os.path.join(REPO, "train_teacher.py"))}
    check_training_settings(settings)  # the defaults pass
    with pytest.raises(UserError, match=r"--lr_scaling='cubic': expected one of \('auto', 'linear', 'sqrt', 'none'\)"):
        check_training_settings(dict(settings, lr_scaling="cubic"))


def test_padded_validation_scores_as_the_unpadded_set():
    import noisy
    keras = noisy.import_keras()
    from noisy.streams import ValidationBatches
    from noisy.training import compile_model
    x, labels = synthetic_images(40, 4, seed=3)
    y = np.eye(4, dtype="float32")[labels]
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(4, activation="softmax")])
    compile_model(model, keras.optimizers.Adam(), "false")
    plain = model.evaluate(x, y, batch_size=40, verbose=0, return_dict=True)
    batches = ValidationBatches(x, y, replicas=3, per_replica=3)  # 40 -> 42 rows, batches of 9
    assert len(batches) == 5 and [len(batches[i][0]) for i in range(5)] == [9, 9, 9, 9, 6]
    padded = model.evaluate(batches, verbose=0, return_dict=True)
    assert padded["accuracy"] == pytest.approx(plain["accuracy"], abs=1e-6)
    assert padded["loss"] == pytest.approx(plain["loss"], rel=1e-5)


def test_keras_under_jax_never_loads_tensorflow(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {REPO!r})
        import noisy
        keras = noisy.import_keras()
        from noisy.resnet import build_resnet
        keras.utils.set_random_seed(0)  # Keras seeds TensorFlow too where it is installed ...
        model = build_resnet("tiny", 4, (16, 16, 3))
        model.save({str(tmp_path / 'model.keras')!r})  # ... and asks for it when it saves
        print(keras.backend.backend(), sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")[:3])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, KERAS_BACKEND="jax"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[-2] == "jax []", out.stdout


# ---------------------------------------------------------------- beyond one machine
def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_one_model(synthetic_npz, tmp_path):
    """A job of two JAX processes on 127.0.0.1 (one CPU device each, gloo), each reading
    its half of every global batch of 2 x 8: process 0 writes RUN_DIR, process 1 its own
    folder; both end with the same weights, those of one process over 2 devices (that
    one run: the weight average, bfloat16 and XLA over 2 JAX devices)."""
    import keras
    args = [sys.executable, os.path.join(REPO, "train_teacher.py"), f"--data={synthetic_npz}", "--epochs=1",
            "--num_labeled=80", "--num_val=40", "--model=tiny", "--batch_size=8", "--data_parallel=True",
            "--ema=0.99", "--mixed_precision=bfloat16", "--jit_compile=true"]
    job = {**devices_env("jax", 1), "KERAS_DISTRIBUTION_JOB_ADDRESSES": f"127.0.0.1:{free_port()}",
           "KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
    processes = [subprocess.Popen([*args, f"--run_dir={tmp_path / 'run'}"], cwd=REPO, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  env=dict(os.environ, **job, KERAS_DISTRIBUTION_PROCESS_ID=str(i),
                                           NOISY_PROCESS_DIR=str(tmp_path / f"process-{i}")))
                 for i in (0, 1)]
    outputs = [p.communicate(timeout=400)[0] for p in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert "running on jax: 2 cpu device(s), mixed_bfloat16, no input noise, data parallel over 2 replicas, " \
           "process 1 of 2" in outputs[1]
    assert "global batch 16 (8 x 2 replica(s))" in outputs[0] and "1 epochs of 5 steps" in outputs[0]
    assert not os.path.exists(tmp_path / "process-0")  # process 0 writes RUN_DIR itself
    for name in ("labeled.npy", "val.npy"):  # process 1 made the same split, in its own folder
        assert np.array_equal(np.load(tmp_path / "run" / "data" / name), np.load(tmp_path / "process-1" / "data" / name))
    run_script("train_teacher.py", *args[2:], f"--run_dir={tmp_path / 'one'}", env=devices_env("jax", 2))
    weights = [keras.models.load_model(path).get_weights() for path in (
        tmp_path / "run" / "teacher" / "model.keras", tmp_path / "process-1" / "teacher" / "model.keras",
        tmp_path / "one" / "teacher" / "model.keras")]
    assert all(np.array_equal(a, b) for a, b in zip(weights[0], weights[1]))  # one model, in both processes
    # One process over 2 devices, the same global batches: float reduction order only.
    assert max(float(np.abs(a - c).max()) for a, c in zip(weights[0], weights[2])) < 1e-4
