"""Documentation that leads somewhere: no citation of a document users do not have, no work-item language in what
users read, relative links and their anchors that resolve. (docs/design.md's layer list is read by
tests/project/test_layers.py.)"""
import re
import subprocess
from pathlib import Path

import pytest

# Built from pieces so that this file does not match itself. Each names a document outside the repository that
# code, help or docs used to cite.
OUTSIDE_DOCUMENTS = [
    "reference" + r"\s+spec",
    "spec" + r"\s*§",
    r"§\s*\d+\.\d",
    "prediff-" + "reference-spec",
    "conventions" + r"\.md",
    "mindspore-" + "cpu-notes",
    r"\.\./" + "shared/",
    r"shared/" + "(reference|tools)/",
    "bench_" + "official",
]
# "issue 17", "issues 6, 14": a work item, not a feature ("issue #43" of another repository is a citation)
WORK_ITEM = re.compile(r"\b[Ii]ssues?\s+\d+")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".toml", ".cc", ".h", ".txt", ".cfg", ".ini"}


def _repository_files(root: Path) -> list:
    """The repository's text files: `git ls-files` (tracked and new, not ignored), else a walk without dot-folders."""
    try:
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=root,
                                capture_output=True, text=True, check=True).stdout.split("\n")
        paths = [root / p for p in listed if p]
    except (OSError, subprocess.CalledProcessError):
        paths = [p for p in root.rglob("*") if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    ci = [root / ".ci" / "run"]
    return [p for p in paths + ci if p.is_file() and (p.suffix in TEXT_SUFFIXES or p in ci)]


def citations_of_outside_documents(files) -> list:
    pattern = re.compile("|".join(OUTSIDE_DOCUMENTS), re.I)
    found = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path}:{number}: {line.strip()[:100]}")
    return found


def test_nothing_cites_a_document_outside_the_repository(repo_root):
    """Code, help, comments, configs and docs; not tests/, whose checks must name the phrases they forbid."""
    files = [p for p in _repository_files(repo_root) if p.relative_to(repo_root).parts[0] != "tests"]
    assert len(files) > 100
    found = citations_of_outside_documents(files)
    assert not found, "write the facts into docs/ or cite the official source file instead:\n" + "\n".join(found)


def test_the_citation_check_finds_one(tmp_path):
    cited = tmp_path / "x.py"
    cited.write_text('"""The noise schedule (' + 'reference spec §4.1).\n"""\n')
    other = tmp_path / "y.md"
    other.write_text("See ../" + "shared/reference/" + "conventions" + ".md for the scale.\n")
    assert len(citations_of_outside_documents([cited, other])) == 2


def _user_texts(repo_root) -> dict:
    """What users read: README, docs/, the CHANGELOG, every command's help and the public API's docstrings."""
    import prediff
    from prediff.cli.reference import cli_reference

    texts = {p.relative_to(repo_root).as_posix(): p.read_text(encoding="utf-8")
             for p in [repo_root / "README.md", repo_root / "CHANGELOG.md", *(repo_root / "docs").glob("*.md")]}
    texts["prediff --help (all commands)"] = cli_reference()
    for name in ("load_model", "Model", "read_radar", "forecast", "score", "installed_models"):
        texts[f"prediff.{name} docstring"] = getattr(prediff, name).__doc__ or ""
    texts["prediff.Model.forecast docstring"] = prediff.Model.forecast.__doc__ or ""
    texts["prediff docstring"] = prediff.__doc__ or ""
    return texts


def test_no_work_item_language_where_users_read(repo_root):
    found = [f"{where}: ...{text[max(m.start() - 40, 0):m.end() + 20]}..."
             for where, text in _user_texts(repo_root).items() for m in WORK_ITEM.finditer(text)]
    assert not found, "say what the feature does, not which work item asked for it:\n" + "\n".join(found)


def test_work_item_pattern():
    assert WORK_ITEM.search("the goal of issue 17 is") and WORK_ITEM.search("(issues 6, 14)")
    assert not WORK_ITEM.search("gaozhihan/PreDiff issue #43") and not WORK_ITEM.search("tissue 5")


# --------------------------------------------------------------------------------------------- links and anchors

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: the text without markup, lower case, punctuation other than - and _
    dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").replace("*", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: str) -> set:
    out, seen = set(), {}
    text = re.sub(r"```.*?```", "", markdown, flags=re.S)  # headings inside code blocks are not headings
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.M):
        base = slug(heading)
        n = seen.get(base, 0)
        out.add(base if n == 0 else f"{base}-{n}")
        seen[base] = n + 1
    return out


def broken_links(document: Path) -> list:
    text = re.sub(r"```.*?```", "", document.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans hold no links
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        if not file.exists():
            broken.append(f"{document.name}: {target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text(encoding="utf-8")):
            broken.append(f"{document.name}: {target} (no heading #{anchor} in {file.name})")
    return broken


def test_relative_links_in_readme_and_docs_resolve(repo_root):
    documents = [repo_root / "README.md", repo_root / "CHANGELOG.md", *sorted((repo_root / "docs").glob("*.md"))]
    broken = [b for d in documents for b in broken_links(d)]
    assert not broken, "\n".join(broken)


def test_link_check_finds_a_missing_file_and_anchor(tmp_path):
    (tmp_path / "a.md").write_text("# Title\n\n## The `forecast.nc` file\n")
    doc = tmp_path / "b.md"
    doc.write_text("[ok](a.md#the-forecastnc-file) [gone](c.md) [bad](a.md#nowhere) [web](https://x.org/a.md) "
                   "[self](#local)\n\n## Local\n")
    assert broken_links(doc) == ["b.md: c.md (no such file)", "b.md: a.md#nowhere (no heading #nowhere in a.md)"]


@pytest.mark.parametrize("heading,anchor", [("`prediff download weights`", "prediff-download-weights"),
                                            ("The forecast file, `forecast.nc`", "the-forecast-file-forecastnc"),
                                            ("`--grid SPEC`", "--grid-spec"),
                                            ("`prediff.load_model`", "prediffload_model"),
                                            ("Errors and exit codes", "errors-and-exit-codes")])
def test_slug_is_github_s(heading, anchor):
    assert slug(heading) == anchor
