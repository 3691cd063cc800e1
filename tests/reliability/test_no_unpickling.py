"""Nothing in src/ may run code from a file: no pickle (or its relatives), torch.load only with
weights_only=True, no trust_remote_code=True, no eval/exec, no numpy allow_pickle=True."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"
FORBIDDEN_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}


def _is_true(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def violations(tree: ast.AST, where: str) -> list[str]:
    """Every unsafe-loading construct in one module's syntax tree."""
    found = []
    for node in ast.walk(tree):
        line = f"{where}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in FORBIDDEN_MODULES:
                    found.append(f"{line}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{line}: from {node.module} import ...")
        elif isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_MODULES:
            found.append(f"{line}: .{node.attr}")
        elif isinstance(node, ast.Name) and node.id in FORBIDDEN_MODULES:
            found.append(f"{line}: {node.id}")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            kwargs = {k.arg: k.value for k in node.keywords}
            if isinstance(func, ast.Name) and func.id in ("eval", "exec"):
                found.append(f"{line}: {func.id}()")
            is_torch_load = (
                name == "load"
                and isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "torch"
            )
            if is_torch_load and not _is_true(kwargs.get("weights_only", ast.Constant(None))):
                found.append(f"{line}: torch.load without weights_only=True")
            if _is_true(kwargs.get("trust_remote_code", ast.Constant(None))):
                found.append(f"{line}: trust_remote_code=True")
            if _is_true(kwargs.get("allow_pickle", ast.Constant(None))):
                found.append(f"{line}: allow_pickle=True")
    return found


def test_src_has_no_unpickling_path() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        found += violations(tree, str(path.relative_to(SRC)))
    assert not found, "unsafe loading in src/:\n" + "\n".join(found)


def test_the_checker_catches_each_construct() -> None:
    bad = {
        "import pickle": 1,
        "from pickle import loads": 1,
        "import torch\ntorch.load(p)": 1,
        "import torch\ntorch.load(p, weights_only=False)": 1,
        "AutoModel.from_pretrained(x, trust_remote_code=True)": 1,
        "eval('1')": 1,
        "exec('x=1')": 1,
        "np.load(p, allow_pickle=True)": 1,
    }
    for code, n in bad.items():
        assert len(violations(ast.parse(code), "t")) >= n, code
    good = "import torch\ntorch.load(p, weights_only=True)\nmodel.eval()\nm.load_state_dict(s)"
    assert violations(ast.parse(good), "t") == []
