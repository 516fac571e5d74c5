"""The package's layers point one way: the gateway never imports tools or the test harness; nothing installs a
generic top-level name; every gateway module stays small."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MAX_GATEWAY_MODULE_LINES = 350
# modules still over the limit while they are being split: each may only shrink, and the list only get shorter
STILL_OVER: dict[str, int] = {}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def test_gateway_never_imports_tools_or_the_harness():
    bad = [(str(p.relative_to(REPO)), m) for p in sorted((REPO / "gateway").rglob("*.py")) for m in _imports(p)
           if m.split(".")[0] in ("tools", "harness", "tests") or m.startswith(("fogline.tools", "fogline.tests"))]
    assert bad == []


def test_cpython_code_imports_fogline_names_only():
    """No installed module imports `gateway`, `tools` or `shared` as a top-level package (they exist only in a checkout)."""
    mp_only = {REPO / "tools" / n for n in ("demo_node.py", "hwcheck_board.py", "vboard_boot.py")}
    files = [p for top in ("gateway", "tools") for p in (REPO / top).rglob("*.py")
             if "bench" not in p.parts and "sim" not in p.parts and "sim_cpy" not in p.parts and p not in mp_only]
    bad = [(str(p.relative_to(REPO)), m) for p in sorted(files) for m in _imports(p)
           if m.split(".")[0] in ("gateway", "tools", "shared", "harness")]
    assert bad == []


def _changes_sys_path(path: Path) -> bool:
    """path calls sys.path.insert/append/extend or assigns to sys.path (reading it is fine)."""
    def is_sys_path(n: ast.AST) -> bool:
        return (isinstance(n, ast.Attribute) and n.attr == "path" and isinstance(n.value, ast.Name)
                and n.value.id == "sys")
    for n in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and is_sys_path(n.func.value) \
                and n.func.attr in ("insert", "append", "extend"):
            return True
        if isinstance(n, (ast.Assign, ast.AugAssign)) and any(
                is_sys_path(t) or (isinstance(t, ast.Subscript) and is_sys_path(t.value))
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target])):
            return True
    return False


def test_cpython_modules_leave_sys_path_alone():
    """A shipped module that puts its folder on sys.path makes `gateway`, `tools`, `shared` top-level names again
    (in an installed wheel: site-packages/fogline itself)."""
    mp_only = {REPO / "tools" / n for n in ("demo_node.py", "hwcheck_board.py", "vboard_boot.py")}
    files = [p for top in ("gateway", "tools", "shared") for p in (REPO / top).rglob("*.py")
             if "bench" not in p.parts and "sim" not in p.parts and "sim_cpy" not in p.parts and p not in mp_only]
    assert [str(p.relative_to(REPO)) for p in sorted(files) if _changes_sys_path(p)] == []


def test_shared_imports_its_siblings_relatively():
    """shared/ runs as `shared` on a board and as `fogline.shared` on CPython: sibling imports must be relative."""
    bad = [(p.name, m) for p in sorted((REPO / "shared").glob("*.py")) for m in _imports(p)
           if m.split(".")[0] in ("shared", "fogline")]
    assert bad == []


def test_no_gateway_module_is_over_the_size_limit():
    big = {str(p.relative_to(REPO)): n for p in sorted((REPO / "gateway").rglob("*.py"))
           if (n := len(p.read_text().splitlines())) > MAX_GATEWAY_MODULE_LINES}
    grown = {k: n for k, n in big.items() if n > STILL_OVER.get(k, MAX_GATEWAY_MODULE_LINES)}
    assert grown == {}
    assert sorted(STILL_OVER) == sorted(big), "a split module must leave STILL_OVER"
