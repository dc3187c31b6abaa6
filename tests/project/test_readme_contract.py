"""The README's Quick start and .ci/run stay in sync."""
import re


def test_ci_runs_the_readme_test_command(repo_root):
    readme = (repo_root / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme.split("## Quick start", 1)[1].split("\n## ", 1)[0], re.S)
    assert len(blocks) == 2, "the Quick start has exactly two commands"
    ci = (repo_root / ".ci" / "run").read_text()
    assert blocks[1].strip() in ci.splitlines()
    assert "pip install" in blocks[0] and "prediff " in blocks[0]
