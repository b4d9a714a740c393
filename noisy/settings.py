"""Script settings: UPPER_CASE constants at the top of a script, overridable as `--name=value`.

This is nanoGPT's configurator done as a function instead of `exec`: it works from any
folder, parses values with `ast.literal_eval`, accepts an int where a float is expected,
and rejects an unknown name with the list of valid ones.

    EPOCHS = 300  # passes over the training data
    settings = configure(globals())        # reads sys.argv[1:]

`python train_teacher.py --epochs=2 --data=/tmp/cifar10` then sets EPOCHS = 2 and
DATA = '/tmp/cifar10' in the script's namespace (a string needs no quotes).
"""
import ast
import sys

from noisy.errors import UserError


def _parse(name, text, current):
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # a bare word or path: keep it as a string
    if isinstance(current, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise UserError(f"--{name.lower()} expects True or False, got {text!r}")
    elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif isinstance(current, str) and not isinstance(value, str):
        value = text  # `--run_dir=2024` is the folder '2024', not the number
    elif current is not None and type(value) is not type(current):
        raise UserError(
            f"--{name.lower()} expects {type(current).__name__} (like {current!r}), got {text!r}")
    return value


def settings_block(path):
    """[(NAME, default as written, comment)] for the lines between a script's two rulers."""
    with open(path) as f:
        lines = f.read().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("# ---") and line.endswith("settings")), None)
    end = None if start is None else next((i for i in range(start + 1, len(lines)) if lines[i].startswith("# ---")), None)
    if end is None:
        raise UserError(f"{path}: no settings block (a '# --- settings' ruler, the settings, a closing '# ---' ruler)")
    rows = []
    for line in lines[start + 1:end]:
        assignment, _, comment = line.partition("  # ")
        name, _, default = assignment.partition("=")
        rows.append((name.strip(), default.strip(), comment.strip()))
    return rows


def settings_help(path):
    """The script's settings block as `--name=default  comment` lines."""
    rows = [(f"--{name.lower()}={default}", comment) for name, default, comment in settings_block(path)]
    width = max(len(option) for option, _ in rows)
    return "\n".join(f"  {option:<{width}}  {comment}" for option, comment in rows)


def configure(namespace, argv=None):
    """Apply `--name=value` arguments to the UPPER_CASE settings in `namespace`.

    `-h` or `--help` prints the script's docstring and settings and exits 0.
    Returns the resolved settings as a dict (lower-case keys) for config.json.
    Raises UserError for an unknown name, a malformed argument or a wrong type.
    """
    argv = sys.argv[1:] if argv is None else argv
    script = namespace.get("__file__")
    if {"-h", "--help"} & set(argv) and script:
        print((namespace.get("__doc__") or "").strip() + "\n\nSettings (edit them at the top of the script, or "
              "override any as --name=value; values are Python literals, a bare word is a string):\n\n"
              + settings_help(script))
        raise SystemExit(0)
    # A script's settings are the names of its settings block, not every UPPER_CASE name it
    # imported; a namespace without a file (a test's) offers all of its UPPER_CASE values.
    block = {name for name, _, _ in settings_block(script)} if script else None
    names = {k: k for k in namespace if k.isupper() and not k.startswith("_") and (block is None or k in block)
             and isinstance(namespace[k], (bool, int, float, str, tuple, list, type(None)))}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise UserError(f"argument {arg!r} is not of the form --name=value")
        key, text = arg[2:].split("=", 1)
        name = key.upper().replace("-", "_")
        if name not in names:
            valid = ", ".join("--" + n.lower() for n in sorted(names))
            raise UserError(f"unknown setting --{key}; valid settings: {valid}")
        namespace[name] = _parse(name, text, namespace[name])
    return {n.lower(): namespace[n] for n in names}
