"""The command-line reference, docs/cli.md, generated from the Typer app: every command's usage, description and
options with the same text and defaults that `prediff COMMAND --help` prints.

    python -m prediff.cli.reference > docs/cli.md          # write it again after changing a command
    python -m prediff.cli.reference --check docs/cli.md    # exit 1 when the file is not what the app says now

tests/cli/test_cli_reference.py runs the check, so the reference cannot drift from the commands.
"""
from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

HEADER = """# Command-line reference

Generated from the `prediff` command itself (`python -m prediff.cli.reference > docs/cli.md`); a test fails when
this file and `prediff COMMAND --help` disagree. Options shared by the forecasting and training commands, and where
settings come from, are explained in the [user guide](user-guide.md#settings); bad input always ends in one line
on stderr and exit code 2 ([user guide](user-guide.md#errors-and-exit-codes)).
"""


def _commands(command, ctx, path: Tuple[str, ...]) -> Iterator[tuple]:
    """(path, command, context) for `command` and every command under it, in the order `--help` lists them."""
    yield path, command, ctx
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
            yield from _commands(sub, sub_ctx, path + (name,))


def _text(text: Optional[str]) -> str:
    return inspect.cleandoc(text or "").strip()


def _escape(text: str) -> str:
    """Help text as Markdown text: `<name>` would be taken for an HTML tag and `*` for emphasis, so they (and the
    escape character) are escaped; backquoted names in help text stay code."""
    for char in ("\\", "*", "<"):
        text = text.replace(char, "\\" + char)
    return text


def _section(path: Tuple[str, ...], command, ctx) -> List[str]:
    name = " ".join(path)
    lines = [f"## `{name}`", ""]
    description = _text(command.help)
    if description:
        lines += [_escape(description), ""]
    lines += ["```text", command.get_usage(ctx).strip(), "```", ""]
    records = [p.get_help_record(ctx) for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    records = [r for r in records if r is not None]
    if records:
        lines += [f"- `{opts}`" + (f": {_escape(' '.join(help_.split()))}" if help_ else "") for opts, help_ in records]
        lines.append("")
    if hasattr(command, "list_commands") and len(path) > 1:  # (the root's commands are listed at the top)
        subs = [(n, command.get_command(ctx, n)) for n in command.list_commands(ctx)]
        lines += [f"- [`{name} {n}`](#{_anchor(name + ' ' + n)}): {_escape(_short(c))}"
                  for n, c in subs if c is not None and not getattr(c, "hidden", False)]
        lines.append("")
    return lines


def _short(command) -> str:
    return _text(command.help).split("\n\n", 1)[0].replace("\n", " ")


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading `title`: lower case, spaces to hyphens, punctuation other than - and _ dropped."""
    return "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def cli_reference() -> str:
    """docs/cli.md as the app describes itself now."""
    import typer.main

    from prediff.cli.app import app

    root = typer.main.get_command(app)
    ctx = root.make_context("prediff", [], resilient_parsing=True)
    sections = list(_commands(root, ctx, ("prediff",)))
    lines = [HEADER, "## Commands", ""]
    lines += [f"- [`{' '.join(path)}`](#{_anchor(' '.join(path))}): {_escape(_short(command))}"
              for path, command, _ in sections[1:]]
    lines.append("")
    for path, command, sub_ctx in sections:
        lines += _section(path, command, sub_ctx)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = cli_reference()
    if args[:1] == ["--check"] and len(args) == 2:
        path = Path(args[1])
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            sys.stderr.write(f"{path} differs from the commands' --help; run: python -m prediff.cli.reference > "
                             f"{path}\n")
            return 1
        return 0
    if args:
        sys.stderr.write("usage: python -m prediff.cli.reference [--check FILE]\n")
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
