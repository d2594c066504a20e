"""The config-language evaluator: what Python configs are written in evaluates as CPython runs it,
and everything else is refused with the file and line, before anything runs."""

import textwrap

import pytest

from purelr.recipes import pyconfig
from purelr.recipes.errors import ConfigError

EVALUATED = """
    import math
    from torch.optim import SGD
    import torch.nn as nn
    base_lr = 0.01
    lrs = [base_lr * 2 ** -i for i in range(4)]
    lrs += [0.0]
    table = {k: v for k, v in zip('abcde', lrs) if v > 0.001}
    names = sorted({name.upper() for name in table})
    label = f"{base_lr:.0e}-{len(lrs):03d}-{names[0]!r}"
    scaled = round(base_lr * 16 / 8, 6) if True and not False else None
    nested = dict(a=[1, 2, (3, 4)], b=dict(c=None), **dict(d=-1))
    nested['b']['c'] = nested['a'][1:]
    del nested['d']
    first, *rest = [1, 2, 3] if False else (1, 2)
    for i, lr in enumerate(lrs):
        if lr == 0.0:
            last = i
    text = '{}_{}'.format('x', 3).replace('_', '-').split('-')
    cosine = math.cos(math.pi)
    chained = 1 < 2 <= 2 != 3 and 'a' in 'abc' and 4 not in [1]
    bits = (6 & 3, 6 | 1, 6 ^ 2, 1 << 3, 16 >> 2, ~0, 7 // 2, 7 % 3, divmod(7, 2))
"""


def test_the_subset_configs_use_evaluates_as_python_runs_it():
    source = textwrap.dedent(EVALUATED)
    ours = pyconfig.run(source, "cfg.py", {})
    python: dict = {}
    exec(
        compile(
            source.replace("from torch.optim import SGD\n", "").replace("import torch.nn as nn\n", ""), "cfg.py", "exec"
        ),
        python,
    )
    for name, value in python.items():
        if not name.startswith("__") and name != "math":
            assert ours[name] == value, name
    assert ours["SGD"] == pyconfig.Imported("torch.optim.SGD")
    assert ours["nn"] == pyconfig.Imported("torch.nn")


def test_copy_deletion_and_unused_definitions_as_mmengine_reads_them():
    config_dicts = {}
    base = pyconfig.mark(dict(model=dict(depth=50), pipeline=[dict(scale=1)]), config_dicts)
    names = pyconfig.run(
        "import copy\nfrom copy import deepcopy\n"
        "pipeline = copy.deepcopy(base.pipeline)\npipeline[0]['scale'] = 2\n"
        "model = deepcopy(base.model)\nmodel.update(dict(depth=101))\n"
        "del base.model\n"
        "def main():\n    open('x')\n"
        "if __name__ == '__main__':\n    main()\n",
        "cfg.py",
        {"base": base},
        config_dicts=config_dicts,
    )
    assert names["pipeline"] == [dict(scale=2)] and base == dict(pipeline=[dict(scale=1)])
    assert names["model"] == dict(depth=101) and id(names["model"]) in config_dicts


def test_imported_names_are_placeholders_never_imported():
    names = pyconfig.run(
        "from mmdet.not_installed import RetinaNet\nimport mmpretrain.x as mp\n"
        "model = dict(type=RetinaNet, head=mp.Head, opt=dict(type=mp.optim.LARS))\n",
        "cfg.py",
        {},
    )
    assert names["model"] == dict(
        type=pyconfig.Imported("mmdet.not_installed.RetinaNet"),
        head=pyconfig.Imported("mmpretrain.x.Head"),
        opt=dict(type=pyconfig.Imported("mmpretrain.x.optim.LARS")),
    )


def test_config_dicts_read_keys_as_attributes_and_merge_on_update():
    config_dicts = {}
    base = pyconfig.mark(dict(model=dict(backbone=dict(depth=50, norm=dict(type="BN", eps=1e-5)))), config_dicts)
    names = pyconfig.run(
        "depth = base.model.backbone.depth\n"
        "base.model.backbone.update(dict(depth=101, norm=dict(eps=1e-3)))\n"
        "plain = dict(a=dict(b=1, c=2))\n"
        "plain.update(a=dict(b=3))\n"
        "stored = dict(x=1)\n"
        "base.model.head = stored\n"
        "stored['x'] = 2\n",
        "cfg.py",
        {"base": base},
        config_dicts=config_dicts,
    )
    assert names["depth"] == 50
    assert base["model"]["backbone"] == dict(depth=101, norm=dict(type="BN", eps=1e-3))  # ConfigDict.update merges
    assert names["plain"] == dict(a=dict(b=3))  # a plain dict's update replaces
    assert base["model"]["head"] == dict(x=1)  # ConfigDict copies what is stored into it


@pytest.mark.parametrize(
    "source,what",
    [
        ("open('/etc/passwd')", "the builtin 'open'"),
        ("x = eval('1')", "the builtin 'eval'"),
        ("exec('x = 1')", "the builtin 'exec'"),
        ("__import__('os')", "the builtin '__import__'"),
        ("print(1)", "the builtin 'print'"),
        ("x = getattr(1, 'real')", "the builtin 'getattr'"),
        ("f = lambda: 1", "a Lambda expression"),
        ("def f(lr):\n    return lr", "calling f, defined here by the config,"),
        ("class A:\n    pass", "calling A, defined here by the config,"),
        ("while True:\n    pass", "a While statement"),
        ("try:\n    pass\nexcept Exception:\n    pass", "a Try statement"),
        ("x = ().__class__", "the attribute '__class__'"),
        ("x = 'a'._formatter_parser", "the attribute '_formatter_parser'"),
        ("import os; os.system('ls')", "calling the imported os.system"),
        ("import subprocess; subprocess.run(['ls'])", "calling the imported subprocess.run"),
        ("x = '{0.__class__}'.format(1)", "a format string that reads attributes or items"),
        ("x = '{0[0]}'.format([1])", "a format string that reads attributes or items"),
        ("x = 'a' * 10**7", "a sequence longer than 10**6"),
        ("x = 2 ** 10**8", "an exponent of 100000000"),
        ("x = (1).real", "the attribute 'real' of a int"),
        ("with open('f') as f:\n    pass", "a 'with' block other than 'with read_base():'"),
        ("from .._base_.x import *", "'from .._base_.x import *' outside 'with read_base():'"),
        ("global x", "a Global statement"),
        ("x = [y := 1]", "a NamedExpr expression"),
        ("assert False", "a Assert statement"),
        ("raise ValueError", "a Raise statement"),
    ],
)
def test_anything_else_is_refused_naming_the_file_and_line(source, what):
    if "defined here" in what:
        source += f"\nx = {source.split()[1].split('(')[0].rstrip(':')}(1)"  # defining is allowed, calling is not
    with pytest.raises(ConfigError) as raised:
        pyconfig.run("a = 1\n" + source, "/configs/bad.py", {})
    message = str(raised.value)
    assert message.startswith("/configs/bad.py, line 2: " + what), message
    assert "trust=True" in message


def test_undefined_names_and_missing_keys_name_the_line():
    with pytest.raises(ConfigError, match=r"cfg.py, line 1: name 'undefined' is not defined"):
        pyconfig.run("x = undefined", "cfg.py", {})
    with pytest.raises(ConfigError, match=r"cfg.py, line 2: d has no key 'b' \(it has \['a'\]\)"):
        pyconfig.run("d = dict(a=1)\nx = d.b", "cfg.py", {})
    with pytest.raises(ConfigError, match="cfg.py: does not parse"):
        pyconfig.run("x = (", "cfg.py", {})
