"""Stage 3 of Noisy Student: train an equal-or-larger student, with noise, on labeled +
pseudo-labeled data.

Reads RUN_DIR/data/ (the labeled split) and RUN_DIR/pseudo/ (pseudo-labeled images and
their targets) and writes RUN_DIR/student/: model.keras, history.csv, config.json. The
student is trained from scratch with RandAugment (per image), flip and crop, dropout 0.5
before the classifier and stochastic depth decaying linearly to survival 0.8.

    python train_student.py --model=tiny --epochs=2 --run_dir=runs/demo

The article reports 93.94% test accuracy for its student of an un-noised teacher (88.39%).
"""

import numpy as np

from noisy import (RandAugment, RunDir, check_training_settings, configure, import_keras, install_error_hook,
                   one_hot)

# ------------------------------------------------------------------------------ settings
RUN_DIR = "runs/default"  # folder every stage reads from and writes to
STUDENT = "student"       # the student's folder in RUN_DIR: name others to keep several students of one teacher
MODEL = ""                # '' = the teacher's preset (article); or any preset of MODEL in train_teacher.py, equal or larger
NOISE = True              # False = the paper's ablation: student without input or model noise
NUM_OPS = 2               # RandAugment: operations per image
MAGNITUDE = 10            # RandAugment: magnitude on the 0..30 scale (see noisy/randaugment.py)
CUTOUT = False            # RandAugment: Cutout as a 15th op (official code: on; the paper's 14: off)
AUGMENT = "auto"          # input noise on 'device' (keras.ops in the train step), 'cpu' (PIL in workers), 'auto' (device iff a GPU)
DROPOUT = 0.5             # dropout before the classifier when NOISE (paper: 0.5)
SURVIVAL_LAST = 0.8       # stochastic depth: survival probability of the last block when NOISE (paper: 0.8)
LABELED_COPIES = 1        # times each labeled image appears per epoch: the labeled share of the mix (article: 1)
UNLABELED_RATIO = 0       # k > 0: every batch holds k pseudo-labeled images per labeled one (official unlabel_ratio); 0 = one shuffled stream
EPOCHS = 300              # passes over the training data (article: 300)
BATCH_SIZE = 64           # images per step (article: 64)
OPTIMIZER = "adam"        # 'adam' (article) or 'sgd' (Nesterov momentum 0.9)
LR = 0.001                # (peak) learning rate (article: Adam's default 0.001)
WEIGHT_DECAY = 0.0        # L2 on conv and dense kernels (article: 0; with sgd try 5e-4)
LABEL_SMOOTHING = 0.0     # targets (1 - s) * target + s / classes, soft pseudo-labels too (official: 0.1; article: 0)
EMA = 0.0                 # decay per step of a moving average of all weights and batch-norm statistics (official: 0.9999, warm-up min(decay, (1+step)/(10+step))), used to validate and saved; 0 = off
CHECKPOINT_EVERY = 1      # save a resume point every k epochs (and the last and each new best); raise it where epochs take seconds
SCHEDULE = "plateau"      # 'plateau' (article: flat, then ReduceLROnPlateau + EarlyStopping), 'cosine' (warmup), 'constant'
WARMUP_EPOCHS = 5         # cosine: linear warmup epochs
FLAT_EPOCHS = 250         # plateau: epochs at a flat rate before ReduceLROnPlateau / EarlyStopping start
PATIENCE = 10             # plateau: EarlyStopping patience in epochs
WORKERS = 4               # parallel workers building noised batches
MULTIPROCESSING = False   # workers as processes (True) or threads (False)
MIXED_PRECISION = ""      # '' (float32), 'bfloat16' (A100/H100, TPU) or 'float16' (with loss scaling)
JIT_COMPILE = "auto"      # XLA: 'auto' (Keras decides), 'true' or 'false'
STEPS_PER_EXECUTION = 1   # train steps per call into the compiled step (TensorFlow syncs with the host once per call: try 16 on a GPU)
DATA_PARALLEL = False     # True = replicate over all GPUs (of every process of a JAX job: docs/GPU.md); BATCH_SIZE is per GPU
LR_SCALING = "auto"       # the rate under DATA_PARALLEL over n replicas: 'linear' (LR x n, SGD's rule, Goyal et al. 2017), 'sqrt' (LR x sqrt n), 'none'; 'auto' = linear for sgd, none for adam
MODEL_FILE = "model.keras"  # the saved model: 'model.keras' (Keras 3's format) or 'model.h5' (legacy H5, as the article)
SEED = 0                  # initialisation and noise
RETRAIN = False           # True = train again although RUN_DIR/STUDENT holds a finished student (config.json)
# ------------------------------------------------------------------------------
install_error_hook()
settings = configure(globals())
check_training_settings(settings, student=True)
run = RunDir(RUN_DIR)
stage = run.stage("student", settings, retrain=RETRAIN, folder=STUDENT)  # one process per stage
split = run.data()
teacher = run.teacher(split)
pseudo = run.pseudo(teacher, split)  # with its pool, indices and targets, checked
settings["model"] = model_name = MODEL or teacher.config["model"]  # '' resolved: the identity names the preset

keras = import_keras()  # only here: --help and bad settings answer before TensorFlow loads
from noisy.device_augment import with_device_noise, without_device_noise  # noqa: E402
from noisy.devices import (barrier, configure_devices, global_batch_and_rate, noise_placement,  # noqa: E402
                           resolve_jit, where_it_runs)
from noisy.resnet import build_resnet  # noqa: E402
from noisy.streams import NoisyStream, ValidationBatches  # noqa: E402
from noisy.training import check_student_size, compile_model, fit, labeled_per_batch, make_optimizer  # noqa: E402

keras.utils.set_random_seed(SEED)
scope, replicas = configure_devices(MIXED_PRECISION, DATA_PARALLEL)
batch_size, lr, rule = global_batch_and_rate(BATCH_SIZE, LR, replicas, OPTIMIZER, LR_SCALING, settings)
jit_compile = resolve_jit(JIT_COMPILE, replicas)  # no XLA under TensorFlow's MirroredStrategy
noise_on_cpu, noise_on_device = noise_placement(settings, NOISE, AUGMENT)
where_it_runs(replicas, settings["augment"])
print(f"global batch {batch_size} ({BATCH_SIZE} x {replicas} replica(s)), learning rate {lr:g} ({rule} scaling)")

# 1. Labeled data (one-hot) + pseudo-labeled data (the teacher's targets), by index.
data = split.arrays()
labeled, val = np.tile(data["labeled"], LABELED_COPIES), data["val"]  # by index: copies cost no memory
targets = np.concatenate([one_hot(data["train_labels"][labeled], split.num_classes), pseudo.targets])
print(f"student data: {len(labeled)} labeled ({LABELED_COPIES} x {len(data['labeled'])}) "
      f"+ {len(pseudo.rows)} pseudo-labeled images")

# 2. The training stream, with input noise (here on CPU workers, or on the accelerator in the
#    train step): RandAugment per image, flip and crop. With UNLABELED_RATIO = k every batch
#    holds batch / (k + 1) labeled images (cycled) and the rest pseudo-labeled ones.
stream = NoisyStream([(data["train_images"], labeled), (pseudo.pool, pseudo.rows)], targets, batch_size,
                     randaugment=RandAugment(NUM_OPS, MAGNITUDE, CUTOUT) if noise_on_cpu else None,
                     flip_crop=noise_on_cpu, seed=SEED, workers=WORKERS, use_multiprocessing=MULTIPROCESSING,
                     first_part_per_batch=labeled_per_batch(batch_size, UNLABELED_RATIO, len(pseudo.rows)))

# 3. The student: the teacher's preset or a larger one, with model noise (dropout,
#    stochastic depth), trained from scratch (resumable) on the chosen devices; keep the
#    best epoch on the validation split, save.
with scope:
    model = build_resnet(model_name, split.num_classes, split.image_shape, dropout=DROPOUT if NOISE else 0.0,
                         survival_last=SURVIVAL_LAST if NOISE else 1.0, weight_decay=WEIGHT_DECAY)
    check_student_size(model, model_name, teacher.config)
    trainer = with_device_noise(model, NUM_OPS, MAGNITUDE, CUTOUT, SEED) if noise_on_device else model
    compile_model(trainer, make_optimizer(OPTIMIZER, lr, SCHEDULE, len(stream) * EPOCHS, WARMUP_EPOCHS * len(stream)),
                  jit_compile, LABEL_SMOOTHING, STEPS_PER_EXECUTION)
    stage.begin(split=split, teacher=teacher.run_id, pseudo=pseudo.run_id)  # all checked: only now resume or replace
    print(f"student {model_name}: {model.count_params():,} parameters, noise {'on' if NOISE else 'off'}, "
          f"{EPOCHS} epochs of {len(stream)} steps, XLA {'on' if trainer.jit_compile else 'off'}")
    validation = ValidationBatches(data["train_images"][val], one_hot(data["train_labels"][val], split.num_classes),
                                   replicas) if len(val) else None
    trainer, _ = fit(trainer, stream, validation, stage.dir, EPOCHS, SCHEDULE, FLAT_EPOCHS, PATIENCE, EMA,
                     checkpoint_every=CHECKPOINT_EVERY)
    model = without_device_noise(trainer)  # the plain model is what is saved
stage.finish({"data": split.config, "parameters": model.count_params(), "teacher": teacher.config,
              "pseudo": pseudo.config}, model, MODEL_FILE)
barrier("stage written")  # in a multi-process job the other processes wait for process 0's files
print(f"wrote {stage.dir}/{MODEL_FILE}")
