"""One table over seeds that bench/effect.py ran in separate folders (a seed per working
session, say): the runners' effect.json files, of one configuration and settings and of
distinct seeds, merged into effect.md / effect.json / effect.png in OUT, mean ± std over
all their seeds, as one runner's table over those seeds would be.

    python bench/merge_tables.py --out=docs/results-cpu-24 --tables="('docs/results-cpu-24/seed0/effect.json','docs/results-cpu-24/seed1/effect.json','docs/results-cpu-24/seed2/effect.json')"
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench.table import write_table  # noqa: E402
from noisy.errors import install_error_hook, require  # noqa: E402
from noisy.files import read_json  # noqa: E402
from noisy.settings import configure  # noqa: E402

# ------------------------------------------------------------------------------ settings
TABLES = ()   # the effect.json files bench/effect.py wrote, one or more seeds each
OUT = ""      # the folder for the merged effect.md / effect.json / effect.png
# ------------------------------------------------------------------------------


def read_table(path):
    """One runner's effect.json, its seeds and arms as the integers bench/table.py uses
    (JSON keeps keys as strings)."""
    table = read_json(path, "is it an effect.json that bench/effect.py wrote?")
    require({"config", "settings", "results"} <= set(table), f"{path}: not an effect.json of bench/effect.py "
            "(it lacks config, settings or results)")
    table["results"] = {int(seed): {key: ({int(arm): v for arm, v in value.items()} if key != "pseudo" else value)
                                    for key, value in result.items()}
                        for seed, result in table["results"].items()}
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
    config, settings, results = merge(list(TABLES))
    os.makedirs(OUT, exist_ok=True)
    write_table(OUT, config, results, None, settings=settings,
                origin=f"Merged by `python bench/merge_tables.py {' '.join(sys.argv[1:])}` from the runners' "
                       f"tables {', '.join(f'`{t}`' for t in TABLES)}: each names the command, machine and "
                       "wall time that made its seeds.")
