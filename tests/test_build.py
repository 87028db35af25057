"""BUILD matches the source tree: every module in a library, every test a target."""

import ast
import glob
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build_targets():
    """(rule, name, srcs) for each call in BUILD (Starlark parses as Python)."""
    tree = ast.parse(open(os.path.join(REPO, "BUILD")).read())
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            call = node.value
            kwargs = {k.arg: k.value for k in call.keywords}
            srcs = kwargs.get("srcs")
            names = [e.value for e in srcs.elts] if isinstance(srcs, ast.List) else []
            name = kwargs["name"].value if "name" in kwargs else None
            yield call.func.id, name, names


def test_every_module_belongs_to_exactly_one_library():
    owned = [s for rule, _, srcs in build_targets() if rule == "py_library" for s in srcs]
    modules = sorted(os.path.relpath(p, REPO) for p in
                     glob.glob(os.path.join(REPO, "epsd_tf", "**", "*.py"), recursive=True))
    assert sorted(owned) == modules


def test_every_test_file_has_a_py_test():
    tested = sorted(s for rule, _, srcs in build_targets() if rule == "py_test" for s in srcs)
    tests = sorted(os.path.relpath(p, REPO) for p in
                   glob.glob(os.path.join(REPO, "tests", "**", "test_*.py"), recursive=True))
    assert tested == tests


def test_one_library_per_package_and_a_run_binary():
    libraries = {name for rule, name, _ in build_targets() if rule == "py_library"}
    # Python packages (epsd_tf/gin/ holds package data, not code).
    packages = {d for d in os.listdir(os.path.join(REPO, "epsd_tf"))
                if os.path.isfile(os.path.join(REPO, "epsd_tf", d, "__init__.py"))}
    assert packages <= libraries
    binaries = {name for rule, name, _ in build_targets() if rule == "py_binary"}
    assert "run" in binaries


def test_build_is_what_the_generator_writes():
    result = subprocess.run([sys.executable, "tools/update_build.py", "--check"],
                            cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
