"""HyTorch's own modules import each other in one direction: no import cycle, counting the
imports inside functions (a cycle held open by a function-local import is still a cycle), and
the IR core and the backend never import the staging front end.

    IR core (hytorch/ir, hytorch.errors)  <-  staging (builder, values, lift, tensors, control, ...)  <-  api
    IR core  <-  backend (backend/*.hy)  <-  native (which api loads on the first compile)

The graph is read from the sources (Python with `ast`, Hy with `hy.read_many`), not from
what happens to be imported at run time.
"""
import ast
import functools
import pathlib
import textwrap

import hy
from hy.models import Expression, Keyword, List, String, Symbol

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = {"hytorch": "hytorch", "hytorch.ir": "hytorch/ir", "hytorch.backend": "backend",
            "hytorch.macros": "macros", "hytorch.examples": "examples"}
IR_CORE = ("hytorch.ir", "hytorch.errors")
BACKEND = "hytorch.backend"
# What each lower layer may import of HyTorch.
MAY_IMPORT = {"hytorch.ir": IR_CORE, BACKEND: IR_CORE + (BACKEND,)}


def module_files():
    """{module name: source file} of every module of HyTorch's packages."""
    files = {}
    for package, folder in PACKAGES.items():
        for path in sorted((ROOT / folder).iterdir()):
            if path.suffix in (".py", ".hy"):
                name = package if path.stem == "__init__" else f"{package}.{hy.mangle(path.stem)}"
                files[name] = path
    return files


# ---------------------------------------------------------------- reading imports

def python_imports(source, module, is_package=False):
    """(imported module, names imported from it, line) for every import in Python `source`,
    at any depth. A string constant holding a dotted name counts too: that is how a module
    is imported by name (`importlib.import_module`, hytorch/__init__.py's lazy API); the
    graph keeps it if it names one of HyTorch's modules."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, (), node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[:len(module.split(".")) - node.level + is_package]
                base = ".".join(package + ([base] if base else []))
            yield base, [alias.name for alias in node.names], node.lineno
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and "." in node.value:
            yield node.value, (), node.lineno


def _dotted(form):
    """The module name a Hy import form names: `a.b` is read as the expression `(. a b)`."""
    if isinstance(form, Expression) and form and form[0] == Symbol("."):
        return ".".join(hy.mangle(part) for part in form[1:])
    return hy.mangle(form) if isinstance(form, Symbol) else None


def _import_clauses(form):
    """(module, names) for each clause of `(import a b.c [x y] d :as e f *)`."""
    items = list(form[1:])
    i = 0
    while i < len(items):
        module, names = _dotted(items[i]), []
        following = items[i + 1] if i + 1 < len(items) else None
        if isinstance(following, Keyword):       # a :as b
            i += 2
        elif isinstance(following, List):        # a [x y :as z]
            names = [hy.mangle(n) for n in following if isinstance(n, Symbol)]
            i += 1
        elif following == Symbol("*"):           # a *
            i += 1
        if module is not None:
            yield module, names
        i += 1


def _hy_I_module(form):
    """The module of `hy.I.mod.attr` (read as `(. hy I mod attr)`), or None. `hy.I.a/b/c` is
    module a.b.c; `hy.I.a.b` is module a, its attribute b."""
    if (isinstance(form, Expression) and len(form) > 3 and form[0] == Symbol(".")
            and form[1] == Symbol("hy") and form[2] == Symbol("I")):
        return ".".join(hy.mangle(part) for part in str(form[3]).split("/"))
    return None


def hy_imports(source, filename="<string>"):
    """(imported module, names, line) for every `import`, `require` and `hy.I` in Hy `source`,
    at any depth; quoted code (code a macro generates) is not this module's import."""
    stack = list(hy.read_many(source, filename=filename))
    while stack:
        form = stack.pop()
        if isinstance(form, String):   # a module named in a string, as in Python
            if "." in form:
                yield str(form), (), getattr(form, "start_line", 0)
            continue
        if not isinstance(form, (Expression, List)) or not form:
            continue
        head = form[0]
        line = getattr(form, "start_line", 0)
        if head in (Symbol("quote"), Symbol("quasiquote")):
            continue
        if head in (Symbol("import"), Symbol("require")):
            for module, names in _import_clauses(form):
                yield module, names, line
            continue
        lazy = _hy_I_module(form)
        if lazy is not None:
            yield lazy, (), line
        stack.extend(form)


@functools.cache
def import_graph():
    """{module: {module it imports: line}} over HyTorch's own modules. `from P import x`
    imports P.x when that is a module, else P."""
    files = module_files()
    graph = {}
    for module, path in files.items():
        source = path.read_text()
        found = (python_imports(source, module, path.stem == "__init__") if path.suffix == ".py"
                 else hy_imports(source, str(path)))
        edges = graph[module] = {}
        for base, names, line in found:
            targets = [f"{base}.{n}" if f"{base}.{n}" in files else base for n in names] or [base]
            for target in targets:
                if target in files and target != module:
                    edges.setdefault(target, line)
    return graph


# ---------------------------------------------------------------- checking the graph

def find_cycle(graph):
    """Some cycle of `graph` as [a, b, ..., a], or None."""
    state = {}  # module -> "open" while on the path, "done" after
    path = []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for target in graph.get(module, ()):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle:
                return cycle
    return None


def show_path(graph, modules):
    return "\n  ".join(f"{a} imports {b} (line {graph[a][b]})" for a, b in zip(modules, modules[1:]))


def _layer(module):
    return next((layer for layer in MAY_IMPORT if module == layer or module.startswith(layer + ".")),
                None)


def _within(module, allowed):
    return any(module == a or module.startswith(a + ".") for a in allowed)


def test_no_import_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle:\n  " + show_path(graph, cycle)


def test_ir_core_and_backend_do_not_import_the_front_end():
    graph = import_graph()
    wrong = [f"{module} imports {target} (line {line})"
             for module, targets in sorted(graph.items()) if _layer(module)
             for target, line in sorted(targets.items())
             if not _within(target, MAY_IMPORT[_layer(module)])]
    assert not wrong, "\n".join(wrong)


def test_only_native_reaches_into_the_backend():
    """Staging builds IR with the IR core's vocabulary; the backend is loaded to compile."""
    graph = import_graph()
    users = sorted(f"{module} (line {line})" for module, targets in graph.items()
                   if not _within(module, (BACKEND,))
                   for target, line in targets.items() if _within(target, (BACKEND,)))
    assert [u.split()[0] for u in users] == ["hytorch.native"], users


# ---------------------------------------------------------------- the reader itself

def test_python_imports_at_any_depth_relative_and_by_name():
    source = textwrap.dedent("""
        import hytorch.errors
        from hytorch import builder
        def f():
            from hytorch.lift import stand_in
            from . import values
        API = {"stage": "hytorch.api"}
    """)
    found = {(m, tuple(n)) for m, n, _ in python_imports(source, "hytorch.control")}
    assert {("hytorch.errors", ()), ("hytorch", ("builder",)), ("hytorch.lift", ("stand_in",)),
            ("hytorch", ("values",)), ("hytorch.api", ())} <= found


def test_hy_imports_at_any_depth_lazy_and_not_quoted():
    source = textwrap.dedent("""
        (import math hytorch.ir.syntax [Sym] hytorch.backend.c-out :as out)
        (require hytorch [defstaged])
        (defn f [] (import hytorch.values) (hy.I.hytorch/macros/rewrite.expand 1))
        (defmacro g [] `(import hytorch.control :as _hyt))
    """)
    found = {m for m, _, _ in hy_imports(source)}
    assert {"math", "hytorch.ir.syntax", "hytorch.backend.c_out", "hytorch", "hytorch.values",
            "hytorch.macros.rewrite"} <= found
    assert "hytorch.control" not in found


def test_find_cycle():
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {}}) is None
    assert find_cycle({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == ["a", "b", "c", "a"]


def test_the_graph_holds_every_module_and_known_edges():
    graph = import_graph()
    assert {"hytorch", "hytorch.api", "hytorch.ir.syntax", "hytorch.backend.c_render",
            "hytorch.macros.rewrite"} <= set(graph)
    assert "hytorch.ir.syntax" in graph["hytorch.builder"]
    assert "hytorch.backend.c_render" in graph["hytorch.native"]
    assert "hytorch.macros.rewrite" in graph["hytorch.macros.defstaged"]   # through hy.I
