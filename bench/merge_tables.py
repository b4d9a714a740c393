"""One table over seeds that bench/effect.py ran in separate folders (a seed per working
session, say): the runners' effect.json files, of one configuration and settings and of
distinct seeds, merged into effect.md / effect.json / effect.png in OUT, mean ± std over
all their seeds, as one runner's table over those seeds would be.

    python bench/merge_tables.py --out=docs/results-cpu-24 --tables="('docs/results-cpu-24/seed0/effect.json','docs/results-cpu-24/seed1/effect.json','docs/results-cpu-24/seed2/effect.json')"
"""
import os
import shlex
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.arms import ARMS  # noqa: E402
from bench.table import write_table  # noqa: E402
from noisy.errors import install_error_hook, require  # noqa: E402
from noisy.files import read_json  # noqa: E402
from noisy.settings import configure  # noqa: E402

# ------------------------------------------------------------------------------ settings
TABLES = ()   # the effect.json files bench/effect.py wrote, one or more seeds each
OUT = ""      # the folder for the merged effect.md / effect.json / effect.png
# ------------------------------------------------------------------------------

PER_ARM = ("accuracy", "ece", "corrupted")  # a seed's results keyed by arm; "pseudo" is keyed by round


def read_table(path):
    """One runner's effect.json, its seeds and arms as the integers bench/table.py uses
    (JSON keeps keys as strings); refused, naming `path`, unless every seed has a score or
    null for every arm."""
    table = read_json(path, "is it an effect.json that bench/effect.py wrote?")
    results = table.get("results")
    arms = {str(arm) for arm in ARMS}

    def per_arm(value):
        return (isinstance(value, dict) and set(value) == arms
                and all(v is None or type(v) in (int, float) for v in value.values()))

    require({"config", "settings"} <= set(table) and isinstance(results, dict) and results
            and all(isinstance(seed, str) and seed.isdigit() and str(int(seed)) == seed for seed in results)
            and all(isinstance(r, dict) and per_arm(r.get("accuracy")) and isinstance(r.get("pseudo"), dict)
                    and all(isinstance(p, dict) and {"kept", "balanced"} <= set(p) for p in r["pseudo"].values())
                    and all(per_arm(r[key]) for key in PER_ARM[1:] if key in r) for r in results.values()),
            f"{path}: not an effect.json of bench/effect.py (config, settings, and results of one or more seeds, "
            "each with a score or null for every arm)")
    table["results"] = {int(seed): {key: {int(arm): v for arm, v in value.items()} if key in PER_ARM else value
                                    for key, value in result.items()}
                        for seed, result in results.items()}
    return table


def merge(paths):
    """(config, settings, results by seed) of the tables at `paths`: refused unless they
    are of one configuration and its settings, and no seed is in two of them."""
    tables = [(path, read_table(path)) for path in paths]  # a path named twice is read twice, and refused
    first = tables[0][1]
    results = {}
    for path, table in tables:
        require((table["config"], table["settings"]) == (first["config"], first["settings"]),
                f"{path} is of config {table['config']!r} with other settings than {paths[0]} "
                f"(config {first['config']!r}): a table is of one configuration")
        twice = sorted(set(results) & set(table["results"]))
        require(not twice, f"{path}: seed {', '.join(map(str, twice))} is also in another of --tables; "
                "name each seed's table once")
        results.update(table["results"])
    return first["config"], first["settings"], results


if __name__ == "__main__":
    install_error_hook()
    configure(globals())
    require(OUT.strip(), "--out is empty: name the folder for the merged table")
    require(len(TABLES) >= 1 and all(isinstance(t, str) for t in TABLES),
            f"--tables={TABLES!r}: expected a tuple of effect.json paths")
    target = os.path.join(OUT, "effect.json")
    require(not any(os.path.exists(target) and os.path.samefile(t, target) for t in TABLES if os.path.exists(t)),
            f"--out={OUT}: its effect.json is one of --tables, which the merge would overwrite; choose another --out")
    config, settings, results = merge(list(TABLES))
    os.makedirs(OUT, exist_ok=True)
    write_table(OUT, config, results, None, settings=settings,
                origin=f"Merged by `python bench/merge_tables.py {shlex.join(sys.argv[1:])}` from the runners' "
                       f"tables {', '.join(f'`{t}`' for t in TABLES)}: each names the command, machine and "
                       "wall time that made its seeds.")
