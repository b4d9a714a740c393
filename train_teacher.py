"""Stage 1 of Noisy Student: train the teacher on the labeled data.

Reads DATA (CIFAR-10 download, class folders or .npz), caches it with its labeled /
validation / unlabeled split in RUN_DIR/data/, and writes RUN_DIR/teacher/:
model.keras, history.csv, config.json.

    python train_teacher.py --data=/tmp/cifar10 --num_labeled=4000 --model=tiny --epochs=2 --run_dir=runs/demo

The defaults are the article's: an un-noised ResNet50 teacher, Adam at 0.001, batch 64,
250 flat epochs, then up to 50 more with ReduceLROnPlateau and EarlyStopping. The
article reports 88.39% test accuracy for this teacher on all 50,000 labels (selected on
the test set; we select on a validation split held out of the training data). A
schedule more usual for ResNets: --optimizer=sgd --lr=0.05 --weight_decay=5e-4
--schedule=cosine --epochs=200 --batch_size=128.
"""

from noisy import (RandAugment, RunDir, check_training_settings, configure, describe_split, import_keras,
                   install_error_hook, one_hot)

# ------------------------------------------------------------------------------ settings
DATA = "cifar10"          # 'cifar10' (download), a folder with train/<class>/ and test/<class>/, or an .npz
NUM_LABELED = 0           # labeled images, class-balanced, drawn with SEED; 0 = all but the validation split
NUM_VAL = 5000            # training images held out to choose the best epoch; 0 = keep the last epoch
RUN_DIR = "runs/default"  # folder every stage reads from and writes to
MODEL = "resnet50"        # 'resnet50' (article), 'resnet101', 'wide_resnet50', 'small', 'tiny', 'resnet9_w16', 'resnet9_w24', 'resnet9_w32'
NOISE = False             # False: article experiment 1 (no augmentation, dropout or stochastic depth); True: experiment 2
NUM_OPS = 2               # RandAugment: operations per image
MAGNITUDE = 10            # RandAugment: magnitude on the 0..30 scale (see noisy/randaugment.py)
CUTOUT = False            # RandAugment: Cutout as a 15th op (official code: on; the paper's 14: off)
AUGMENT = "auto"          # input noise on 'device' (keras.ops in the train step), 'cpu' (PIL in workers), 'auto' (device iff a GPU)
DROPOUT = 0.5             # dropout before the classifier when NOISE
SURVIVAL_LAST = 0.8       # stochastic depth: survival probability of the last block when NOISE
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
SEED = 0                  # data split, initialisation and noise
RETRAIN = False           # True = train again although RUN_DIR/teacher holds a finished teacher (config.json)
# ------------------------------------------------------------------------------
install_error_hook()
settings = configure(globals())
check_training_settings(settings)
run = RunDir(RUN_DIR)
stage = run.stage("teacher", settings, retrain=RETRAIN)  # one process per stage; it also guards RUN_DIR/data
split = run.split(DATA, NUM_LABELED, NUM_VAL, SEED)  # cached once per RUN_DIR, moved in when the stage begins

keras = import_keras()  # only here: --help and bad settings answer before TensorFlow loads
from noisy.device_augment import with_device_noise, without_device_noise  # noqa: E402
from noisy.devices import (barrier, configure_devices, global_batch_and_rate, noise_placement,  # noqa: E402
                           resolve_jit, where_it_runs)
from noisy.resnet import build_resnet  # noqa: E402
from noisy.streams import NoisyStream, ValidationBatches  # noqa: E402
from noisy.training import compile_model, fit, make_optimizer  # noqa: E402

keras.utils.set_random_seed(SEED)
scope, replicas = configure_devices(MIXED_PRECISION, DATA_PARALLEL)
batch_size, lr, rule = global_batch_and_rate(BATCH_SIZE, LR, replicas, OPTIMIZER, LR_SCALING, settings)
jit_compile = resolve_jit(JIT_COMPILE, replicas)  # no XLA under TensorFlow's MirroredStrategy
noise_on_cpu, noise_on_device = noise_placement(settings, NOISE, AUGMENT)
where_it_runs(replicas, settings["augment"])
print(f"global batch {batch_size} ({BATCH_SIZE} x {replicas} replica(s)), learning rate {lr:g} ({rule} scaling)")
stage.begin(split=split)  # nothing to do, refused, resumed or afresh: every input is checked

# 1. Labeled data: the source's class-balanced split.
data = split.arrays()
labeled, val = data["labeled"], data["val"]
describe_split(split, data)

# 2. The training stream, noised like the student's (article experiment 2) or not (experiment 1).
stream = NoisyStream([(data["train_images"], labeled)], one_hot(data["train_labels"][labeled], split.num_classes),
                     batch_size, randaugment=RandAugment(NUM_OPS, MAGNITUDE, CUTOUT) if noise_on_cpu else None,
                     flip_crop=noise_on_cpu, seed=SEED, workers=WORKERS, use_multiprocessing=MULTIPROCESSING)

# 3. The teacher: build, compile and train (resumable) on the chosen devices; keep the best
#    epoch on the validation split, save.
with scope:
    model = build_resnet(MODEL, split.num_classes, split.image_shape, dropout=DROPOUT if NOISE else 0.0,
                         survival_last=SURVIVAL_LAST if NOISE else 1.0, weight_decay=WEIGHT_DECAY)
    trainer = with_device_noise(model, NUM_OPS, MAGNITUDE, CUTOUT, SEED) if noise_on_device else model
    compile_model(trainer, make_optimizer(OPTIMIZER, lr, SCHEDULE, len(stream) * EPOCHS, WARMUP_EPOCHS * len(stream)),
                  jit_compile, LABEL_SMOOTHING, STEPS_PER_EXECUTION)
    print(f"teacher {MODEL}: {model.count_params():,} parameters, noise {'on' if NOISE else 'off'}, "
          f"{EPOCHS} epochs of {len(stream)} steps, XLA {'on' if trainer.jit_compile else 'off'}")
    validation = ValidationBatches(data["train_images"][val], one_hot(data["train_labels"][val], split.num_classes),
                                   replicas) if len(val) else None
    trainer, _ = fit(trainer, stream, validation, stage.dir, EPOCHS, SCHEDULE, FLAT_EPOCHS, PATIENCE, EMA,
                     checkpoint_every=CHECKPOINT_EVERY)
    model = without_device_noise(trainer)  # the plain model is what is saved
stage.finish({"data": split.config, "parameters": model.count_params()}, model, MODEL_FILE)
barrier("stage written")  # in a multi-process job the other processes wait for process 0's files
print(f"wrote {stage.dir}/{MODEL_FILE}")
