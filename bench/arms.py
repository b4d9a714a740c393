"""The experiment's arms in one table: what each is, which run folder of a seed holds it,
and which of that folder's models it is. bench/effect.py trains them, bench/table.py
tabulates them; nothing else knows where an arm lives.

Run folders of one seed (OUT/seed<N>/): A trains teacher 1 (no noise) and its student,
B teacher 2 (noise) and its student, C the un-noised student of teacher 2 (it shares B's
data, teacher and pseudo-labels by links), D the second round (student 4 as its teacher).
"""
import collections
import os

Arm = collections.namedtuple("Arm", "what folder model")

ARMS = {
    1: Arm("teacher, no noise", "A-teacher-plain", "teacher"),      # the article's experiment 1
    2: Arm("teacher, noise", "B-teacher-noised", "teacher"),        # experiment 2; the supervised baseline
    3: Arm("student of 1, noise", "A-teacher-plain", "student"),
    4: Arm("student of 2, noise", "B-teacher-noised", "student"),   # the method
    5: Arm("student of 2, no noise", "C-student-plain", "student"),  # the paper's ablation
    6: Arm("round 2: student of 4, noise", "D-round2", "student"),
}
# Which folder's pseudo-labels each round is (the folders that label).
ROUNDS = {"round 1, teacher 1": ARMS[1].folder, "round 1, teacher 2": ARMS[2].folder,
          "round 2, teacher 4": ARMS[6].folder}
# evaluate.py's arguments per folder: corruptions for arms 2 and 4 only (they take minutes).
EVALUATE_ARGS = {ARMS[1].folder: ["--severities=()"], ARMS[2].folder: [], ARMS[5].folder: ["--severities=()"],
                 ARMS[6].folder: ["--severities=()"]}
# The differences the table reports: (arm, minus arm).
GAINS = {"4 - 2 (student over its noised teacher)": (4, 2), "3 - 1 (student over its plain teacher)": (3, 1),
         "4 - 5 (noise in the student)": (4, 5), "6 - 4 (second round)": (6, 4)}


def seed_dir(out, seed):
    return os.path.join(out, f"seed{seed}")


def folder(out, seed, arm):
    """The run folder that holds `arm` for `seed`."""
    return os.path.join(seed_dir(out, seed), ARMS[arm].folder)
