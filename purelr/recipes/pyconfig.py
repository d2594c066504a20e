"""The Python that config files are written in, evaluated without running the file.

MMCV and MMEngine run a ``.py`` config as a program. ``run`` reads the same file as data: it walks
the syntax tree and evaluates the subset that configs use -- literals, arithmetic, comparisons,
names the file (or its bases) defines, ``dict``/``list``/``range``/``sum``-like builtins, the
methods of dicts, lists and strings, comprehensions, f-strings, ``if`` and ``for`` -- and refuses
anything else (``open``, ``exec``, ``lambda``, ``def``, ``while``, attributes starting with ``_``,
calls of imported names) with a ``ConfigError`` naming the file and line.

Imports are never executed: ``from torch.optim import SGD`` binds ``SGD`` to ``Imported(
'torch.optim.SGD')``, a placeholder that the recipe readers resolve by name. Dicts behave as
MMEngine's ``ConfigDict`` where the file reaches them through its bases: attribute access reads a
key (``_base_.model.backbone``), ``update`` merges nested dicts, and a dict stored into one is
copied into a config dict of its own.
"""

from __future__ import annotations

import ast
import builtins
import copy
import importlib
import math
import operator
import string
import sys
import types
from collections import ChainMap
from typing import Any, Callable, NamedTuple

from purelr.recipes.errors import ConfigError


class Imported(NamedTuple):
    """A name a config imports, kept as its dotted path (``torch.optim.SGD``), never imported.

    A NamedTuple, so a tuple: code that walks config values tests ``type(v) is tuple``."""

    name: str

    def __repr__(self):
        return f"<imported {self.name}>"


class Context(NamedTuple):
    path: str
    config_dicts: dict  # id -> dict: MMEngine ConfigDicts (attribute access, merging update)
    import_base: Callable | None  # (module, level, names, line) -> {name: value}, inside read_base()
    trust: bool  # run what the subset does not cover as Python, as MMCV/MMEngine run config files
    module_names: dict  # the file's namespace (the globals of what runs as Python)
    imported: set  # the names bound by import statements


SAFE_BUILTINS = {
    name: getattr(builtins, name)
    for name in (
        "abs",
        "all",
        "any",
        "bool",
        "dict",
        "divmod",
        "enumerate",
        "filter",
        "float",
        "frozenset",
        "int",
        "isinstance",
        "len",
        "list",
        "map",
        "max",
        "min",
        "pow",
        "range",
        "repr",
        "reversed",
        "round",
        "set",
        "sorted",
        "str",
        "sum",
        "tuple",
        "zip",
    )
} | {"True": True, "False": False, "None": None, "__name__": "builtins"}  # as in MMEngine's exec of a config

SAFE_METHODS = {
    dict: {"copy", "get", "items", "keys", "pop", "setdefault", "update", "values"},
    list: {"append", "copy", "count", "extend", "index", "insert", "pop", "remove", "reverse", "sort"},
    tuple: {"count", "index"},
    str: {
        "capitalize",
        "count",
        "endswith",
        "find",
        "format",
        "join",
        "lower",
        "lstrip",
        "replace",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "title",
        "upper",
        "zfill",
    },
    set: {"add", "copy", "difference", "intersection", "union", "update"},
}

BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}
IN_PLACE = {
    ast.Add: operator.iadd,
    ast.Sub: operator.isub,
    ast.Mult: operator.imul,
    ast.Div: operator.itruediv,
    ast.FloorDiv: operator.ifloordiv,
    ast.Mod: operator.imod,
    ast.Pow: operator.ipow,
    ast.BitAnd: operator.iand,
    ast.BitOr: operator.ior,
    ast.BitXor: operator.ixor,
    ast.LShift: operator.ilshift,
    ast.RShift: operator.irshift,
}
UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Not: operator.not_,
    ast.Invert: operator.invert,
}
COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
SAFE_MODULES = ("math", "copy")  # given for real: their public attributes are pure functions of config data
MAX_SIZE = 10**6  # the longest sequence and the largest exponent a config may build


def run(source: str, path: str, names: dict, **options) -> dict:
    """Evaluates the config ``source`` (the text of ``path``) in the namespace ``names`` and returns
    the namespace; ``options`` as ``execute_module``'s."""
    try:
        tree = ast.parse(source, filename=path)
    except SyntaxError as error:
        raise ConfigError(f"{path}: does not parse: {error}") from error
    return execute_module(tree, path, names, **options)


def execute_module(
    tree: ast.Module,
    path: str,
    names: dict,
    *,
    config_dicts: dict | None = None,
    import_base: Callable | None = None,
    trust: bool = False,
    imported: set | None = None,
) -> dict:
    """Runs the statements of ``tree`` in ``names``. ``config_dicts`` (id -> dict) marks the dicts
    that behave as MMEngine's ``ConfigDict``; ``import_base`` reads the imports of ``with
    read_base():``; ``trust`` runs what the subset does not cover as Python; ``imported`` collects
    the names that import statements bind."""
    context = Context(
        path,
        {} if config_dicts is None else config_dicts,
        import_base,
        trust,
        names,
        set() if imported is None else imported,
    )
    for statement in tree.body:
        execute(statement, names, context)
    return names


def value_of(expression: ast.expr, path: str):
    """The value of one expression that uses no names (as ``_base_ = [...]``)."""
    return evaluate(expression, {}, Context(path, {}, None, False, {}, set()))


def mark(value, config_dicts: dict):
    """Marks ``value``'s dicts (nested in dicts, lists and tuples) as config dicts; returns it."""
    if isinstance(value, dict):
        config_dicts[id(value)] = value
        for item in value.values():
            mark(item, config_dicts)
    elif type(value) in (list, tuple):
        for item in value:
            mark(item, config_dicts)
    return value


def hooked(value, config_dicts: dict):
    """A value as ``ConfigDict`` stores it: dicts copied into config dicts, lists and tuples rebuilt."""
    if type(value) is dict:
        return mark({key: hooked(item, config_dicts) for key, item in value.items()}, config_dicts)
    if type(value) in (list, tuple):
        return type(value)(hooked(item, config_dicts) for item in value)
    return value


def refuse(node, context: Context, what: str, names=None):
    """A ``ConfigError`` naming the line; with ``trust``, the node run as Python instead."""
    if context.trust and names is not None:
        if isinstance(node, ast.stmt):
            return exec(compile(ast.Module([node], []), context.path, "exec"), context.module_names, names)
        return eval(compile(ast.Expression(node), context.path, "eval"), context.module_names, names)
    raise ConfigError(
        f"{context.path}, line {getattr(node, 'lineno', '?')}: {what} is not evaluated in a "
        f"config read as data; load it with trust=True (--trust-config) to run it as a program"
    )


def execute(node, names, context: Context):
    handler = STATEMENTS.get(type(node))
    if handler is None:
        return refuse(node, context, f"a {type(node).__name__} statement", names)
    handler(node, names, context)


def _assign(node, names, context):
    value = evaluate(node.value, names, context)
    for target in node.targets:
        store(target, value, names, context)


def _annotated_assign(node, names, context):
    if node.value is not None:
        store(node.target, evaluate(node.value, names, context), names, context)


def _augmented_assign(node, names, context):
    current = evaluate(node.target, names, context)  # the handlers read a Store node as a Load one
    store(
        node.target,
        binary(node, IN_PLACE[type(node.op)], current, evaluate(node.value, names, context), context),
        names,
        context,
    )


def store(target, value, names, context):
    if isinstance(target, ast.Name):
        names[target.id] = value
    elif isinstance(target, (ast.Tuple, ast.List)):
        values = list(value)
        starred = [i for i, element in enumerate(target.elts) if isinstance(element, ast.Starred)]
        after = len(target.elts) - 1 - starred[0] if starred else 0
        if len(values) < len(target.elts) - len(starred) or (not starred and len(values) != len(target.elts)):
            raise ConfigError(
                f"{context.path}, line {target.lineno}: cannot unpack {len(values)} values into {ast.unparse(target)}"
            )
        if starred:
            values = values[: starred[0]] + [values[starred[0] : len(values) - after]] + values[len(values) - after :]
        for element, item in zip(target.elts, values):
            store(element.value if isinstance(element, ast.Starred) else element, item, names, context)
    elif isinstance(target, ast.Subscript):
        container = evaluate(target.value, names, context)
        key = evaluate(target.slice, names, context)
        container[key] = hooked(value, context.config_dicts) if id(container) in context.config_dicts else value
    elif isinstance(target, ast.Attribute):
        container = evaluate(target.value, names, context)
        if not isinstance(container, dict) or target.attr.startswith("_"):
            refuse(target, context, f"setting the attribute {target.attr!r}")
        container[target.attr] = hooked(value, context.config_dicts) if id(container) in context.config_dicts else value
    else:
        refuse(target, context, f"assigning to a {type(target).__name__}")


def _delete(node, names, context):
    for target in node.targets:
        if isinstance(target, ast.Name):
            names.pop(target.id, None)
        elif isinstance(target, ast.Subscript):
            del evaluate(target.value, names, context)[evaluate(target.slice, names, context)]
        elif (
            isinstance(target, ast.Attribute)
            and isinstance(evaluate(target.value, names, context), dict)
            and not target.attr.startswith("_")
        ):
            del evaluate(target.value, names, context)[target.attr]  # ConfigDict's attribute deletion
        else:
            refuse(target, context, f"deleting a {type(target).__name__}")


def _expression(node, names, context):
    evaluate(node.value, names, context)


def _if(node, names, context):
    for statement in node.body if evaluate(node.test, names, context) else node.orelse:
        execute(statement, names, context)


def _for(node, names, context):
    if node.orelse:
        return refuse(node, context, "for ... else", names)
    for item in evaluate(node.iter, names, context):
        store(node.target, item, names, context)
        for statement in node.body:
            execute(statement, names, context)


def _import(node, names, context):
    for alias in node.names:
        bound = alias.asname or alias.name.split(".")[0]
        context.imported.add(bound)
        module = alias.name if alias.asname else bound
        if context.trust and standard_library(module):
            names[bound] = importlib.import_module(module)
        else:
            names[bound] = safe_module(module, context) if module in SAFE_MODULES else Imported(module)


def safe_module(name: str, context: Context):
    """``math``, or ``copy`` whose copies of config dicts are config dicts, as ``ConfigDict``'s are."""
    if name == "math":
        return math

    def copier(function):
        def copied(value, *args):
            result = function(value, *args)
            return mark(result, context.config_dicts) if id(value) in context.config_dicts else result

        return copied

    return types.SimpleNamespace(copy=copier(copy.copy), deepcopy=copier(copy.deepcopy))


def standard_library(module: str) -> bool:
    """Modules MMEngine imports for real when it reads a config: the standard library's."""
    return module.startswith("mmengine.config") or module.split(".")[0] in sys.stdlib_module_names


def _import_from(node, names, context):
    module = "." * node.level + (node.module or "")
    for alias in node.names:
        if alias.name == "*":
            refuse(node, context, f"'from {module} import *' outside 'with read_base():'")
        context.imported.add(alias.asname or alias.name)
        if module in SAFE_MODULES and not alias.name.startswith("_"):
            names[alias.asname or alias.name] = getattr(safe_module(module, context), alias.name)
        else:
            names[alias.asname or alias.name] = Imported(f"{module}.{alias.name}")


def _with(node, names, context):
    expression = node.items[0].context_expr if len(node.items) == 1 else None
    if not (
        isinstance(expression, ast.Call)
        and isinstance(expression.func, ast.Name)
        and expression.func.id == "read_base"
        and context.import_base is not None
    ):
        return refuse(node, context, "a 'with' block other than 'with read_base():'", names)
    for statement in node.body:
        if not isinstance(statement, ast.ImportFrom):
            refuse(statement, context, "a statement other than 'from ... import' inside 'with read_base():'")
        wanted = [alias.name for alias in statement.names]
        imported = mark(
            context.import_base(statement.module or "", statement.level, wanted, statement.lineno), context.config_dicts
        )
        for alias in statement.names:
            if alias.name == "*":
                names.update(imported)
            else:
                names[alias.asname or alias.name] = imported[alias.name]


def _pass(node, names, context):
    pass


def _definition(node, names, context):
    """``def f`` / ``class C``: MMEngine drops functions and classes from the config, so a file may
    define one unused; calling it needs trust."""
    if context.trust:
        return refuse(node, context, "", names)

    def defined(*args, **kwargs):
        refuse(node, context, f"calling {node.name}, defined here by the config,")

    names[node.name] = defined


STATEMENTS = {
    ast.Assign: _assign,
    ast.AnnAssign: _annotated_assign,
    ast.AugAssign: _augmented_assign,
    ast.Delete: _delete,
    ast.Expr: _expression,
    ast.If: _if,
    ast.For: _for,
    ast.Import: _import,
    ast.ImportFrom: _import_from,
    ast.With: _with,
    ast.Pass: _pass,
    ast.FunctionDef: _definition,
    ast.ClassDef: _definition,
}


def evaluate(node, names, context: Context) -> Any:
    handler = EXPRESSIONS.get(type(node))
    if handler is None:
        return refuse(node, context, f"a {type(node).__name__} expression", names)
    return handler(node, names, context)


def _name(node, names, context):
    if node.id in names:
        return names[node.id]
    if node.id in SAFE_BUILTINS:
        return SAFE_BUILTINS[node.id]
    if hasattr(builtins, node.id):
        return refuse(node, context, f"the builtin {node.id!r}", names)
    raise ConfigError(f"{context.path}, line {node.lineno}: name {node.id!r} is not defined")


def _attribute(node, names, context):
    value = evaluate(node.value, names, context)
    if node.attr.startswith("_"):
        return refuse(node, context, f"the attribute {node.attr!r}", names)
    if isinstance(value, Imported):
        return Imported(f"{value.name}.{node.attr}")
    if isinstance(value, (types.ModuleType, types.SimpleNamespace)):  # the safe modules
        return getattr(value, node.attr)
    if (
        isinstance(value, str)
        and node.attr == "format"
        and any(field and any(c in field for c in ".[") for _, field, _, _ in string.Formatter().parse(value))
    ):
        return refuse(node, context, "a format string that reads attributes or items", names)
    methods = next((allowed for kind, allowed in SAFE_METHODS.items() if isinstance(value, kind)), set())
    if node.attr in methods:
        if isinstance(value, dict) and node.attr == "update" and id(value) in context.config_dicts:
            return lambda *args, **kwargs: config_update(value, dict(*args, **kwargs), context)
        return getattr(value, node.attr)
    if node.attr == "merge" and id(value) in context.config_dicts:
        return lambda other: config_merge(value, other, context)
    if isinstance(value, dict):
        if node.attr not in value:
            raise ConfigError(
                f"{context.path}, line {node.lineno}: {ast.unparse(node.value)} has no key "
                f"{node.attr!r} (it has {sorted(map(str, value))})"
            )
        return value[node.attr]
    return refuse(node, context, f"the attribute {node.attr!r} of a {type(value).__name__}", names)


def config_merge(target: dict, other: dict, context: Context):
    """``ConfigDict.merge``: ``other`` merged into copies of ``target``'s values (``_delete_=True``
    replaces a dict), then written back into ``target``."""
    absent = object()

    def merged(a, b):
        if not isinstance(a, dict):
            return b if a is absent else a
        if not isinstance(b, dict):
            a.pop("_delete_", None)
            return a
        if a.pop("_delete_", False):
            b.clear()
        return {key: merged(a.get(key, absent), b.get(key, absent)) for key in [*b, *a] if key != "_delete_"}

    result = merged(copy.deepcopy(other), copy.deepcopy(target))
    target.clear()
    target.update(hooked(result, context.config_dicts))


def config_update(target: dict, other: dict, context: Context):
    """``ConfigDict.update``: nested dicts merge key by key, anything else replaces."""
    for key, value in other.items():
        if isinstance(target.get(key), dict) and isinstance(value, dict):
            config_update(target[key], value, context)
        else:
            target[key] = hooked(value, context.config_dicts)


def _call(node, names, context):
    function = evaluate(node.func, names, context)
    if isinstance(function, Imported):
        refuse(node, context, f"calling the imported {function.name}")
    args = unpacked(node.args, names, context)
    kwargs = {}
    for keyword in node.keywords:
        if keyword.arg is None:
            kwargs.update(evaluate(keyword.value, names, context))
        else:
            kwargs[keyword.arg] = evaluate(keyword.value, names, context)
    return function(*args, **kwargs)


def binary(node, op, left, right, context):
    if context.trust:
        return op(left, right)
    if op is operator.pow and isinstance(right, (int, float)) and abs(right) > MAX_SIZE:
        refuse(node, context, f"an exponent of {right}")
    if op is operator.mul and any(isinstance(a, (str, list, tuple)) for a in (left, right)):
        count = right if isinstance(left, (str, list, tuple)) else left
        if isinstance(count, int) and count * len(left if count is right else right) > MAX_SIZE:
            refuse(node, context, "a sequence longer than 10**6")
    return op(left, right)


def _binary(node, names, context):
    return binary(
        node, BINARY[type(node.op)], evaluate(node.left, names, context), evaluate(node.right, names, context), context
    )


def _unary(node, names, context):
    return UNARY[type(node.op)](evaluate(node.operand, names, context))


def _bool(node, names, context):
    value = None
    for operand in node.values:
        value = evaluate(operand, names, context)
        if bool(value) == isinstance(node.op, ast.Or):
            return value
    return value


def _compare(node, names, context):
    left = evaluate(node.left, names, context)
    for op, comparator in zip(node.ops, node.comparators):
        right = evaluate(comparator, names, context)
        if not COMPARE[type(op)](left, right):
            return False
        left = right
    return True


def _if_expression(node, names, context):
    return evaluate(node.body if evaluate(node.test, names, context) else node.orelse, names, context)


def unpacked(elements, names, context) -> list:
    """The values of ``elements``, each ``*starred`` one spread, as in a call or a display."""
    items = []
    for element in elements:
        if isinstance(element, ast.Starred):
            items.extend(evaluate(element.value, names, context))
        else:
            items.append(evaluate(element, names, context))
    return items


def _sequence(node, names, context):
    return {ast.List: list, ast.Tuple: tuple, ast.Set: set}[type(node)](unpacked(node.elts, names, context))


def _dict(node, names, context):
    result = {}
    for key, value in zip(node.keys, node.values):
        if key is None:
            result.update(evaluate(value, names, context))
        else:
            result[evaluate(key, names, context)] = evaluate(value, names, context)
    return result


def _subscript(node, names, context):
    return evaluate(node.value, names, context)[evaluate(node.slice, names, context)]


def _slice(node, names, context):
    return slice(
        *(None if part is None else evaluate(part, names, context) for part in (node.lower, node.upper, node.step))
    )


def _comprehension(node, names, context):
    results = []

    def loop(generators, scope):
        if not generators:
            if isinstance(node, ast.DictComp):
                results.append((evaluate(node.key, scope, context), evaluate(node.value, scope, context)))
            else:
                results.append(evaluate(node.elt, scope, context))
            return
        generator = generators[0]
        for item in evaluate(generator.iter, scope, context):
            inner = scope.new_child()
            store(generator.target, item, inner, context)
            if all(evaluate(condition, inner, context) for condition in generator.ifs):
                loop(generators[1:], inner)

    loop(node.generators, ChainMap({}, names))
    return {ast.ListComp: list, ast.GeneratorExp: list, ast.SetComp: set, ast.DictComp: dict}[type(node)](results)


def _formatted(node, names, context):
    value = evaluate(node.value, names, context)
    value = {-1: value, 115: str(value), 114: repr(value), 97: ascii(value)}[node.conversion]
    return format(value, "" if node.format_spec is None else evaluate(node.format_spec, names, context))


def _joined(node, names, context):
    return "".join(str(evaluate(part, names, context)) for part in node.values)


EXPRESSIONS = {
    ast.Constant: lambda node, names, context: node.value,
    ast.Name: _name,
    ast.Attribute: _attribute,
    ast.Call: _call,
    ast.BinOp: _binary,
    ast.UnaryOp: _unary,
    ast.BoolOp: _bool,
    ast.Compare: _compare,
    ast.IfExp: _if_expression,
    ast.List: _sequence,
    ast.Tuple: _sequence,
    ast.Set: _sequence,
    ast.Dict: _dict,
    ast.Subscript: _subscript,
    ast.Slice: _slice,
    ast.ListComp: _comprehension,
    ast.SetComp: _comprehension,
    ast.DictComp: _comprehension,
    ast.GeneratorExp: _comprehension,
    ast.FormattedValue: _formatted,
    ast.JoinedStr: _joined,
}
