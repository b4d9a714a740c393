#!/bin/bash
# Do two commits make the same stages? A tiny noised teacher, its hard pseudo-labels and a
# noised student (2 epochs each, label smoothing), made from one class-folder source by
# clones of both commits, then their teacher and student history.csv and pseudo-label
# targets compared byte for byte. Results made at an earlier commit hold for a later one
# when its stage code trains the same.
#
#   bench/same_as_commit.sh 4d55152 HEAD /tmp/small   # /tmp/small: train/<class>/, test/<class>/
#
# (docs/RESULTS.md: HEAD against the table's commit 4d55152 on 1,000 + 200 CIFAR-10 images.)
#
# Both clones run with the same TensorFlow CPU kernels: oneDNN's unless the shell sets
# TF_ENABLE_ONEDNN_OPTS to another value than 1 (unset or empty counts as 1 here, unlike in
# the stages, where empty leaves TensorFlow's own choice: an older commit's noisy does not
# set it, and TensorFlow's default differs between CPUs; oneDNN and Eigen round differently).
set -euo pipefail
export TF_ENABLE_ONEDNN_OPTS="${TF_ENABLE_ONEDNN_OPTS:-1}"
kernels=$(TF_CPP_MIN_LOG_LEVEL=3 python -c "from tensorflow.python.util import _pywrap_util_port as p
print('oneDNN' if p.IsMklEnabled() else 'Eigen')" 2>/dev/null | tail -1) || kernels="unknown"
[ $# -eq 3 ] || { echo "error: usage: bench/same_as_commit.sh COMMIT COMMIT DATA_FOLDER" >&2; exit 2; }
[ -d "$3/train" ] && [ -d "$3/test" ] || { echo "error: $3 holds no train/ and test/ class folders" >&2; exit 2; }
repo=$(cd "$(dirname "$0")/.." && pwd)
data=$(cd "$3" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for i in 1 2; do  # both commits checked out before anything trains
  git clone -q "$repo" "$work/code$i" && git -C "$work/code$i" checkout -q "${!i}" 2>/dev/null \
    || { echo "error: ${!i} is not a commit of $repo" >&2; exit 2; }
done
for i in 1 2; do
  run="$work/run$i"
  (cd "$work/code$i" &&
   python train_teacher.py --data="$data" --run_dir="$run" --num_labeled=400 --num_val=100 --model=tiny --epochs=2 \
     --batch_size=32 --noise=True --seed=3 --workers=1 &&
   python pseudo_label.py --run_dir="$run" --threshold=0.1 --soft=False --per_class=30 &&
   python train_student.py --run_dir="$run" --epochs=2 --batch_size=32 --noise=True --seed=3 --workers=1 \
     --label_smoothing=0.1) > "$work/log$i.txt" 2>&1 || { echo "error: a stage failed at ${!i}:"; tail -5 "$work/log$i.txt"; exit 2; } >&2
done
same=0
for file in teacher/history.csv pseudo/targets.npy student/history.csv; do
  if cmp -s "$work/run1/$file" "$work/run2/$file"; then echo "same      $file"; else echo "DIFFERENT $file"; same=1; fi
done
[ $same -eq 0 ] && echo "$1 and $2 make the same stages ($kernels kernels)" || echo "$1 and $2 make different stages ($kernels kernels)"
exit $same
