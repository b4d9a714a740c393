"""The runner's ledger (OUT/ledger.json): which stages bench/effect.py itself ran or
checked, and under which record of the folder (OUT/settings.json). Its table counts a
model only where every stage it rests on is in the ledger as it is now.

A stage script exits 0 only for a stage made, or found finished ("nothing to do"), with
the arguments the runner passed; the ledger then keeps that stage's run id. So a stage
made again by hand (another run id, perhaps other settings), a seed folder copied in from
elsewhere (not a path the ledger names) or a record edited since (another record key) is
not the runner's, and its arms are left out of the table until the runner runs them
again (a finished stage takes seconds), as it would refuse or make them.
"""
import hashlib
import json
import os

from noisy.files import read_json, save_json
from noisy.rundir import SCRIPTS

LEDGER = "ledger.json"
STAGE_OF = {script: stage for stage, script in SCRIPTS.items()}  # train_teacher.py -> teacher, ...


def record_key(out):
    """What out/settings.json says the folder's table is of (all but its seeds, which grow
    as seeds are added), as a short hash."""
    record = read_json(os.path.join(out, "settings.json"), f"is {out} a folder bench/effect.py ran in?")
    record.pop("seeds", None)
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def _key(out, stage_dir):
    # The stage's real folder: a stage shared by a link (arm 5's teacher, arm 6's) is one entry.
    return os.path.relpath(os.path.realpath(stage_dir), os.path.realpath(out))


def _run_id(stage_dir):
    path = os.path.join(stage_dir, "config.json")
    record = read_json(path, f"delete {stage_dir} or make it again with --retrain=True") if os.path.isfile(path) else {}
    return record.get("run_id") if record.get("complete") is True else None


def vouch(out, run_dir, script):
    """After `script` exited 0 on run_dir with the runner's arguments: its stage, as it is
    now, is the runner's under the folder's record."""
    stage_dir = os.path.join(run_dir, STAGE_OF[script])
    path = os.path.join(out, LEDGER)
    ledger = read_json(path, f"delete {path}: the runner writes it again") if os.path.isfile(path) else {}
    ledger[_key(out, stage_dir)] = {"run_id": _run_id(stage_dir), "record": record_key(out)}
    save_json(path, ledger)


def vouched(out, run_dir, stages=("teacher", "pseudo", "student")):
    """Whether each of run_dir's `stages` is, as it is now, one the runner ran or checked
    under the folder's present record."""
    path = os.path.join(out, LEDGER)
    if not os.path.isfile(path) or not os.path.isfile(os.path.join(out, "settings.json")):
        return False
    ledger, key = read_json(path, f"delete {path}: the runner writes it again"), record_key(out)
    for stage in stages:
        entry = ledger.get(_key(out, os.path.join(run_dir, stage)), {})
        run_id = _run_id(os.path.join(run_dir, stage))
        if run_id is None or entry.get("run_id") != run_id or entry.get("record") != key:
            return False
    return True
