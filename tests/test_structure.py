"""The package's shape (issue 30): imports run one way, with no circle between modules."""

import ast
import pathlib

import tfhash

PACKAGE = pathlib.Path(tfhash.__file__).parent


def module_names():
    """{dotted module name: path} of every module of the package (a package is its __init__)."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ("tfhash", *path.relative_to(PACKAGE).with_suffix("").parts)
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports_of(name, path, modules):
    """The package's modules that `name` imports anywhere in its file, inside functions included.
    `from a import b` counts as importing the module a.b where there is one, else a."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                stem = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*stem, base] if base else stem)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # tfhash.x.function -> tfhash.x
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def circles(graph):
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in graph:
        if node not in index:
            visit(node)
    return groups


def test_no_import_circle_between_modules():
    modules = module_names()
    graph = {name: imports_of(name, path, modules) for name, path in modules.items()}
    assert len(modules) > 50 and graph["tfhash.train"] >= {"tfhash.registry", "tfhash.precision"}
    assert circles(graph) == []


def test_the_circle_finder_finds_a_circle():
    """The check itself: a two-module circle and a three-module one are found, a chain is not."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(circles(graph)) == [["a", "b"], ["c", "d", "e"]]
    assert circles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_seeds_are_derived_in_one_place():
    """Every part's seed comes from tfhash.seeds (the rule that keeps figures reproducible): no
    `seed * N` arithmetic anywhere else in the package."""
    import re

    from tfhash.seeds import derive_seed, seed_stream

    assert derive_seed(3, 7) == 3007 and derive_seed(3, 2, stride=10) == 32 and derive_seed(None, 7) is None
    stream = seed_stream(2)
    assert [next(stream) for _ in range(3)] == [2000, 2001, 2002]
    assert next(seed_stream(None)) is None
    pattern = re.compile(r"\bseed\s*\*\s*\d+|\d+\s*\*\s*seed\b")
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name != "seeds.py":
            code = [line.split("#")[0] for line in path.read_text().splitlines()]
            found += [f"{path.name}:{i + 1}" for i, line in enumerate(code) if pattern.search(line)]
    assert not found, f"seed arithmetic outside tfhash/seeds.py: {found}"
