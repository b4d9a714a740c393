import pytest

from noisy.settings import configure
from noisy.errors import UserError


def namespace():
    return {"EPOCHS": 300, "LR": 0.001, "DATA": "cifar10", "NOISE": True, "lower": 1, "_HIDDEN": 2}


def test_overrides_are_matched_case_insensitively_and_parsed():
    ns = namespace()
    resolved = configure(ns, ["--epochs=2", "--LR=1e-2", "--data=/tmp/cifar 10", "--noise=False"])
    assert ns["EPOCHS"] == 2 and ns["LR"] == 0.01 and ns["DATA"] == "/tmp/cifar 10"
    assert ns["NOISE"] is False
    assert resolved == {"epochs": 2, "lr": 0.01, "data": "/tmp/cifar 10", "noise": False}


def test_int_is_accepted_where_a_float_is_expected():
    ns = namespace()
    configure(ns, ["--lr=1"])
    assert ns["LR"] == 1.0 and isinstance(ns["LR"], float)


def test_value_containing_equals_sign_keeps_everything_after_the_first():
    ns = namespace()
    configure(ns, ["--data=a=b"])
    assert ns["DATA"] == "a=b"


def test_numeric_value_of_a_string_setting_stays_a_string():
    ns = namespace()
    configure(ns, ["--data=2024"])
    assert ns["DATA"] == "2024"


def test_unknown_name_is_rejected_with_the_valid_names():
    with pytest.raises(UserError, match=r"unknown setting --epoch; valid settings: --data, --epochs, --lr, --noise"):
        configure(namespace(), ["--epoch=3"])


@pytest.mark.parametrize("arg, message", [
    ("--epochs=2.5", r"--epochs expects int \(like 300\), got '2.5'"),
    ("--noise=maybe", r"--noise expects True or False, got 'maybe'"),
    ("--epochs", r"not of the form --name=value"),
    ("epochs=3", r"not of the form --name=value"),
])
def test_bad_values_are_rejected(arg, message):
    with pytest.raises(UserError, match=message):
        configure(namespace(), [arg])


SCRIPTS = {"teacher": "train_teacher.py", "pseudo": "pseudo_label.py", "student": "train_student.py",
           "evaluate": "evaluate.py"}


def settings_block(script):
    """{NAME: default} from a script's settings block, read as --help reads it."""
    import ast
    import os
    from conftest import REPO
    from noisy.settings import settings_block as block
    return {name: ast.literal_eval(default) for name, default, _ in block(os.path.join(REPO, script))}


SETTINGS_PAGE = "docs/SETTINGS.md"  # the settings table; the README links to it


def settings_page_rows():
    """[(names, scripts, default cells)] from the settings table of docs/SETTINGS.md."""
    import os
    import re
    from conftest import REPO
    text = open(os.path.join(REPO, SETTINGS_PAGE)).read()
    table = text[text.index("| setting | script | default | meaning |"):].split("\n\n")[0].splitlines()[2:]
    rows = []
    for line in table:
        names, scripts, defaults = [cell.strip() for cell in line.strip("|").split("|")[:3]]
        scripts = list(SCRIPTS) if scripts == "all" else [s.strip() for s in scripts.split(",")]
        rows.append((re.findall(r"`([A-Z_]+)`", names), scripts, re.split(r",\s*(?=`)", defaults)))
    return rows


def test_the_settings_page_table_and_the_scripts_agree():
    import ast
    rows = settings_page_rows()
    for stage, script in SCRIPTS.items():
        block = settings_block(script)
        documented = {name for names, scripts, _ in rows if stage in scripts for name in names}
        assert documented == set(block), f"{script}: {SETTINGS_PAGE} lacks {set(block) - documented}, " \
                                         f"has extra {documented - set(block)}"
    checked = 0
    for names, scripts, defaults in rows:
        if len(defaults) != len(names):
            continue
        for name, cell in zip(names, defaults):
            per_script = [c.strip().strip("`") for c in cell.split(" / ")]
            for stage, text in zip(scripts if len(per_script) > 1 else scripts, per_script * len(scripts)
                                   if len(per_script) == 1 else per_script):
                try:
                    value = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    value = text  # a bare word: a string default
                if text != "teacher's":
                    assert settings_block(SCRIPTS[stage])[name] == value, f"{name}: {SCRIPTS[stage]}, {SETTINGS_PAGE}"
                    checked += 1
    assert checked > 40  # most defaults are checked, not skipped


def run_in_a_fresh_python(script, arg, cwd):
    """Run `script arg` through runpy in a new Python; the last two lines of its stdout say
    how it ended (SystemExit and its code, or the exception's type and message) and whether
    TensorFlow and Keras had been imported by then. Returns stdout, stderr (for an assertion's
    message) and those two lines."""
    import os
    import subprocess
    import sys
    from conftest import REPO
    code = ("import os, runpy, sys\nsys.argv = [sys.argv[1], sys.argv[2]]\n"
            "sys.path.insert(0, os.path.dirname(sys.argv[0]))\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
            "except BaseException as e:\n    print(type(e).__name__, e.code if isinstance(e, SystemExit) else e)\n"
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, os.path.join(REPO, script), arg], capture_output=True,
                            text=True, cwd=str(cwd))
    return result.stdout, result.stderr, result.stdout.strip().splitlines()[-2:]


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_settings_block_before_tensorflow_loads(flag):
    import re
    from conftest import REPO
    for stage, script in SCRIPTS.items():
        out, err, (ended, loaded) = run_in_a_fresh_python(script, flag, REPO)
        assert (ended, loaded) == ("SystemExit 0", "False False"), out + err
        assert "Settings (edit them at the top of the script" in out
        for name, default in settings_block(script).items():
            assert f"--{name.lower()}=" in out
        assert re.search(r"\n  --run_dir=\"runs/default\" +folder every stage reads from and writes to\n", out)


@pytest.mark.parametrize("script, arg, message", [
    ("train_teacher.py", "--lr=-1", "--lr must be > 0"),
    ("train_teacher.py", "--model=resnet18", "--model='resnet18': expected one of"),
    ("train_student.py", "--labeled_copies=0", "--labeled_copies=0: expected an integer >= 1"),
    ("train_student.py", "--mixed_precision=fp8", "--mixed_precision='fp8': expected one of"),
    ("train_teacher.py", "--jit_compile=maybe", "--jit_compile='maybe': expected 'auto', 'true' or 'false'"),
    ("train_teacher.py", "--seed=-1", "--seed=-1: expected an integer in [0, 2**32)"),
    ("train_teacher.py", "--num_labeled=-5", "--num_labeled=-5: expected >= 0"),
    ("pseudo_label.py", "--workers=0", "--workers=0: expected >= 1"),
])
def test_a_bad_setting_answers_before_keras_loads(script, arg, message, tmp_path):
    out, err, (ended, loaded) = run_in_a_fresh_python(script, arg, tmp_path)
    assert ended.startswith(f"UserError {message}") and loaded == "False False", out + err


def test_every_bench_script_has_a_settings_block_and_answers_help():
    """A bench script without rulers once ended every run in 'unexpected StopIteration'."""
    import glob
    import os
    import subprocess
    import sys
    from conftest import REPO
    scripts = [p for p in sorted(glob.glob(os.path.join(REPO, "bench", "*.py"))
                                 + glob.glob(os.path.join(REPO, "bench", "perf", "*.py")))
               if "configure(globals())" in open(p).read()]
    assert len(scripts) >= 6
    for path in scripts:
        out = subprocess.run([sys.executable, path, "--help"], capture_output=True, text=True, cwd=REPO)
        assert out.returncode == 0, (path, out.stderr)
        assert all(f"--{name.lower()}=" in out.stdout for name in settings_block(os.path.relpath(path, REPO)))


def test_a_script_without_a_settings_block_is_one_line_naming_it(tmp_path):
    from noisy.settings import settings_block as block
    script = tmp_path / "no_block.py"
    script.write_text('"""A script."""\nSTEPS = 3\n')
    with pytest.raises(UserError, match=r"no_block.py: no settings block"):
        block(str(script))
