"""The runner's ledger (OUT/ledger.json): what bench/effect.py itself ran or checked,
under which record of the folder (OUT/settings.json). Its table counts a model only where
every stage it rests on, and the scores, are in the ledger as they are now.

A stage script exits 0 only where the stage it makes was made, or found finished
("nothing to do"), with the arguments the runner passed, from inputs it checked (the
teacher and pseudo-labels it reads). The ledger then keeps, under each of those stages'
paths as the runner names them, its run id and the folder it really is (a stage the
runner shares by a link is recorded as that link); and, after the runner's evaluate.py,
the sha256 of results.json. So a stage made again by hand (another run id), a stage
replaced by a link to another arm's (another real folder), a seed folder copied or linked
in (paths the ledger does not name), scores edited (another sha256) or a record edited
(another record key) is not the runner's: those arms are left out of the table until the
runner runs them again (a finished stage takes seconds), as it would refuse or make them.
"""
import hashlib
import json
import os

from noisy.errors import UserError, require
from noisy.files import read_json, save_json
from noisy.rundir import SCRIPTS
from noisy.files import sha256 as file_sha256

LEDGER = "ledger.json"
# The stages a stage rests on (itself and the inputs its script checks): what its script
# made or checked once it has exited 0, and what a model of that stage needs in the ledger.
RESTS_ON = {"teacher": ("teacher",), "pseudo": ("teacher", "pseudo"), "student": ("teacher", "pseudo", "student")}
CHECKED_BY = {SCRIPTS[stage]: stages for stage, stages in RESTS_ON.items()}
RESULTS = "results.json"


def record_key(out):
    """What out/settings.json says the folder's table is of (all but its seeds, which grow
    as seeds are added), as a short hash."""
    record = read_json(os.path.join(out, "settings.json"), f"is {out} a folder bench/effect.py ran in?")
    require(isinstance(record, dict), f"{out}/settings.json is not a record of bench/effect.py; use another --out")
    record = {k: v for k, v in record.items() if k != "seeds"}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def _read(out):
    path = os.path.join(out, LEDGER)
    if not os.path.isfile(path):
        return {}
    ledger = read_json(path, f"delete {path}: the runner writes it again")
    require(isinstance(ledger, dict) and all(isinstance(v, dict) for v in ledger.values()),
            f"{path} is not a ledger of bench/effect.py; delete it: the runner writes it again")
    return ledger


def _name(out, path):
    """`path` as the runner names it, relative to `out` (links not followed)."""
    return os.path.relpath(os.path.abspath(path), os.path.abspath(out))


def _entry(out, path):
    """What the ledger keeps of `path` as it is now: the folder it really is and its run
    id (a stage), or its sha256 (results.json); None where there is no finished stage."""
    real = os.path.relpath(os.path.realpath(path), os.path.realpath(out))
    if os.path.basename(path) == RESULTS:
        return {"real": real, "sha256": file_sha256(path)} if os.path.isfile(path) else None
    config = os.path.join(path, "config.json")
    try:
        record = read_json(config, "") if os.path.isfile(config) else {}
    except UserError:
        return None
    if not isinstance(record, dict) or record.get("complete") is not True:
        return None
    return {"real": real, "run_id": record.get("run_id")}


def _vouch(out, paths):
    ledger, key = _read(out), record_key(out)
    for path in paths:
        entry = _entry(out, path)
        if entry is not None:
            ledger[_name(out, path)] = dict(entry, record=key)
    save_json(os.path.join(out, LEDGER), ledger)


def _vouched(out, paths):
    if not os.path.isfile(os.path.join(out, LEDGER)) or not os.path.isfile(os.path.join(out, "settings.json")):
        return False
    ledger, key = _read(out), record_key(out)
    for path in paths:
        entry = _entry(out, path)
        if entry is None or ledger.get(_name(out, path)) != dict(entry, record=key):
            return False
    return True


def vouch(out, run_dir, script):
    """After `script` exited 0 on run_dir with the runner's arguments: the stages it made
    or checked, as they are now, are the runner's under the folder's record."""
    _vouch(out, [os.path.join(run_dir, stage) for stage in CHECKED_BY[script]])


def vouched(out, run_dir, stages=RESTS_ON["student"]):
    """Whether each of run_dir's `stages` is, as it is now, one the runner ran or checked
    under the folder's present record."""
    return _vouched(out, [os.path.join(run_dir, stage) for stage in stages])


def vouch_results(out, run_dir):
    """After the runner's evaluate.py on run_dir: its results.json, as it is now."""
    _vouch(out, [os.path.join(run_dir, RESULTS)])


def vouched_results(out, run_dir):
    """Whether run_dir/results.json is, byte for byte, the one the runner's evaluate.py
    wrote under the folder's present record."""
    return _vouched(out, [os.path.join(run_dir, RESULTS)])
