"""The commands the docs show name what exists: every flag they pass to one of our tools
is one that tool defines; every gin file, script, `tools/study.py` action and `make`
target they name is there; every gin binding they pass parses. The docs are read as
text and no tool runs: seconds, where running every command shown would take hours."""

import functools
import glob
import os
import re
import shlex

import pytest

pytestmark = pytest.mark.jax

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Where commands are shown: the docs, the gin files' headers, the tools' and examples'
# docstrings, the Makefile's comments, the committed results' notes and scripts.
DOC_PATTERNS = ("README.md", "docs/*.md", "epsd_tf/**/README.md", "gin/*.gin", "tools/**/*.py",
                "epsd_tf/cli/*.py", "examples/*.py", "Makefile", "docs/results/**/*.md",
                "docs/results/**/*.sh")
CONSOLE_SCRIPTS = {"epsd-run": "epsd_tf/cli/run.py", "epsd-sweep": "epsd_tf/cli/sweep.py",
                   "epsd-export": "epsd_tf/cli/export.py"}
# absl's own flags, which every absl tool takes.
ABSL_FLAGS = {"help", "helpfull", "helpshort", "helpxml", "alsologtostderr", "logtostderr",
              "verbosity", "v", "flagfile", "undefok", "log_dir", "only_check_args"}
TOOL = r"(?<![\w/.-])(?:tools/[\w/]+\.py|epsd-run|epsd-sweep|epsd-export)\b"
# A tool and its arguments, up to the end of an inline code span or the next tool.
INVOCATION = re.compile(rf"({TOOL})(.*?)(?=`|{TOOL}|$)")
FLAG = re.compile(r"(?<![\w-])--(\w+)")


def _docs():
    paths = sorted({p for pattern in DOC_PATTERNS
                    for p in glob.glob(os.path.join(REPO, pattern), recursive=True)})
    assert len(paths) > 30
    for path in paths:
        with open(path, encoding="utf-8") as f:
            yield os.path.relpath(path, REPO), f.read()


def _sources(tool: str) -> list[str]:
    """The files whose code reads `tool`'s flags: the script, and the `epsd_tf.cli`
    module it hands over to."""
    if tool in CONSOLE_SCRIPTS:
        return [os.path.join(REPO, CONSOLE_SCRIPTS[tool])]
    path = os.path.join(REPO, tool)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [path, *(os.path.join(REPO, "epsd_tf", "cli", f"{name}.py")
                    for name in re.findall(r"from epsd_tf\.cli import (\w+)", text))]


@functools.cache
def defined_flags(tool: str) -> frozenset[str]:
    """absl `DEFINE_*` and argparse names, and the `"--name"` literals of scripts that
    read `sys.argv` themselves."""
    names = set()
    for path in _sources(tool):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        names |= set(re.findall(r"DEFINE_\w+\(\s*[\"'](\w+)[\"']", text))
        names |= set(re.findall(r"[\"']--(\w+)[\"'=]", text))
    return frozenset(names)


def _logical_lines(text: str):
    """`(number of its first line, line)`, a line ending in a backslash joined to the next
    (less the next's comment sign: a command in a gin file's header goes on in `#` lines)."""
    start, parts = None, []
    for number, line in enumerate(text.splitlines(), 1):
        if start is None:
            start = number
        else:
            line = re.sub(r"^\s*#", "", line)
        if line.endswith("\\"):
            parts.append(line[:-1])
            continue
        yield start, " ".join([*parts, line])
        start, parts = None, []


def _commands(text: str):
    """`(line number, tool, arguments)` of each command of one of our tools in `text`.
    A line continued with a backslash is one line; a shell comment, a `;`, `&` or `|`,
    the end of an inline code span or the next tool ends a command."""
    for number, line in _logical_lines(text):
        for match in INVOCATION.finditer(line):
            yield number, match.group(1), re.split(r"[;&|]|\s#", match.group(2))[0]


def flag_problems(doc: str, text: str) -> tuple[list[str], int]:
    """The flags `text` passes to our tools that they do not define (as `doc:line:
    ...` lines), and how many flags it passes."""
    problems, checked = [], 0
    for number, tool, arguments in _commands(text):
        if tool not in CONSOLE_SCRIPTS and not os.path.isfile(os.path.join(REPO, tool)):
            problems.append(f"{doc}:{number}: no such tool {tool}")
            continue
        names = defined_flags(tool) | ABSL_FLAGS
        for flag in FLAG.findall(arguments):
            checked += 1
            if flag not in names and not (flag.startswith("no") and flag[2:] in names):
                problems.append(f"{doc}:{number}: {tool} has no flag --{flag}")
    return problems, checked


@pytest.mark.backend_free
def test_every_flag_the_docs_pass_to_a_tool_is_one_it_defines():
    problems, checked = [], 0
    for doc, text in _docs():
        found, n = flag_problems(doc, text)
        problems, checked = problems + found, checked + n
    assert not problems, "\n".join(problems)
    assert checked > 300  # the docs show a few hundred flags: the parsing found them


@pytest.mark.backend_free
def test_the_flag_check_names_a_misspelt_flag_and_a_missing_tool():
    text = ("Run it:\n\n    python tools/study.py device --mps --seconds=470 \\\n"
            "        --start_befor=60 --to=$OUT  # --not_a_flag\n"
            "`epsd-run --gin_file=smoke --nooverwrite`, then `python tools/nope.py --x`;\n"
            "KERAS_BACKEND=jax PYTHONPATH=. python tools/benchmarks/gpu.py --smoke | tee log\n"
            "#   python tools/sweep.py --root=runs/x \\\n#       --seedz=0,1\n")
    problems, checked = flag_problems("doc.md", text)
    assert problems == ["doc.md:3: tools/study.py has no flag --start_befor",
                        "doc.md:5: no such tool tools/nope.py",
                        "doc.md:7: tools/sweep.py has no flag --seedz"]
    # mps, seconds, start_befor, to; gin_file and `no` + a boolean (absl's negation);
    # gpu.py reads sys.argv itself: its "--smoke" literal defines the flag; root, seedz.
    assert checked == 9


@pytest.mark.backend_free
def test_every_gin_file_script_action_and_make_target_the_docs_name_exists():
    with open(os.path.join(REPO, "Makefile"), encoding="utf-8") as f:
        targets = set(re.findall(r"^([\w-]+):", f.read(), re.M))
    with open(os.path.join(REPO, "epsd_tf", "cli", "study.py"), encoding="utf-8") as f:
        # Read, not imported: each CLI module defines absl flags for its own process.
        actions = re.findall(r"\"(\w+)\"", re.search(r"^ACTIONS = \((.*?)\)", f.read(),
                                                    re.M | re.S).group(1))
    assert "device" in actions and "report" in actions
    missing = []
    for doc, text in _docs():
        for path in re.findall(r"(?<![\w/.<-])((?:epsd_tf/)?gin/[\w./-]+\.gin|"
                               r"(?:tools|examples|tests|epsd_tf)/[\w/]+\.py)", text):
            if not os.path.isfile(os.path.join(REPO, path)):
                missing.append(f"{doc}: {path}")
        missing += [f"{doc}: tools/study.py {action}" for action in
                    re.findall(r"tools/study\.py (\w+)", text) if action not in actions]
        missing += [f"{doc}: make {target}" for target in
                    re.findall(r"(?:`|^)make ([a-z][\w-]*)", text, re.M) if target not in targets]
    assert not missing, "\n".join(missing)


def documented_bindings(text: str) -> set[str]:
    """The gin bindings `text` passes with `--gin_bindings`: double-quoted anywhere, and
    in any shell quoting within a command line of one of our tools."""
    found = set(re.findall(r'--gin_bindings="([^"]*)"', text))
    for _, _, arguments in _commands(text):
        if "--gin_bindings" in arguments and "{" not in arguments:  # not a Python f-string
            found |= {word.split("=", 1)[1] for word in shlex.split(arguments)
                      if word.startswith("--gin_bindings=")}
    return found


def test_every_gin_binding_the_docs_show_parses():
    from epsd_tf.train import config
    bindings = {(doc, b) for doc, text in _docs() for b in documented_bindings(text)}
    assert len({b for _, b in bindings}) > 15
    problems = []
    for doc, binding in sorted(bindings):
        try:
            config.parse(["gin/smoke.gin"], [binding])
        except ValueError as error:
            problems.append(f"{doc}: {binding!r}: {str(error)[:400]}")
    assert not problems, "\n".join(problems)
    assert documented_bindings(
        """python tools/sweep.py '--gin_bindings=prune_at_init.scope = '"'"'erk'"'"'' \\
        --gin_bindings="run.epochs = 1"  # --gin_bindings=x""") == {
            "prune_at_init.scope = 'erk'", "run.epochs = 1"}
    with pytest.raises(ValueError, match="not_a_parameter"):
        config.parse(["gin/smoke.gin"], ["run.not_a_parameter = 1"])
