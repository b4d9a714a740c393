"""The README and docs/: the commands CI relies on are there verbatim, and every relative
link points to a file that exists (pages moved out of the README must not leave dead
links)."""
import glob
import os
import re

from conftest import REPO

PAGES = ["README.md"] + sorted(os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, "docs", "*.md")))


def anchors(file):
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces as '-'."""
    headings = re.findall(r"^#+ (.+)$", open(file).read(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_the_readme_gives_the_ci_test_command_and_the_one_line_install():
    readme = open(os.path.join(REPO, "README.md")).read()
    ci = open(os.path.join(REPO, ".ci", "run")).read()
    assert "\n    python -m pytest -q -n 2 tests\n" in readme
    assert "\npython -m pytest -q -n 2 tests\n" in ci
    assert ("\n    python3 -m venv .venv && . .venv/bin/activate && pip install -r requirements.txt && "
            "python train_teacher.py && python pseudo_label.py && python train_student.py && python evaluate.py\n"
            ) in readme


def test_relative_links_point_to_files_that_exist():
    dead = []
    for page in PAGES:
        text = open(os.path.join(REPO, page)).read()
        targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"^\[[^\]]+\]:\s*(\S+)", text, re.M)
        for target in targets:
            path = target.split("#")[0]
            if re.match(r"[a-z]+://", path):
                continue
            file = os.path.join(REPO, os.path.dirname(page), path) if path else os.path.join(REPO, page)
            if not os.path.exists(file):
                dead.append(f"{page}: {target}")
            elif "#" in target and file.endswith(".md") and target.split("#")[1] not in anchors(file):
                dead.append(f"{page}: {target} (no such heading)")
    assert not dead, dead


def test_the_readme_names_every_page_under_docs():
    readme = open(os.path.join(REPO, "README.md")).read()
    missing = [p for p in PAGES[1:] if f"]({p})" not in readme and f"]: {p}" not in readme]
    assert not missing, missing
