"""超参数的取值在解析时就检查一次：每个脚本、每个超参数的越界值都只得到一行中文错误、退出码 2，而且什么文件都不写。
范围写在超参数注释的末尾（区间 [1, ∞)、集合 {auto, cpu} 等），由 common.apply_overrides 统一检查。"""
import contextlib
import io
import math
import re

import pytest

import common
from conftest import REPO, assert_clean_error, load_script, run_script

SCRIPTS = sorted(p.name for p in REPO.glob("*.py")
                 if sum(line.startswith(common.FENCE) for line in p.read_text(encoding="utf-8").splitlines()) == 2)
NO_RANGE = {"seed"}  # 任何整数都是合法的随机种子


def declared(script):
    """[(名字, 默认值, 注释)]：脚本超参数块里的每一项。"""
    module = load_script(script)
    return [(name, getattr(module, name), comment) for name, comment in common.hyperparameters(REPO / script).items()]


def bad_values(default, comment):
    """按注释里写明的范围，造出几个越界的值（命令行上的字符串）。"""
    values = []
    interval = common.INTERVAL.search(comment)
    if interval and not isinstance(default, bool):
        left, low, high, right = interval.groups()
        low, high = float(low.replace("∞", "inf")), float(high.replace("∞", "inf"))
        step = 1 if isinstance(default, int) else 0.5
        if math.isfinite(low):
            values.append(low if left == "(" else low - step)
        if math.isfinite(high):
            values.append(high if right == ")" else high + step)
        values = [str(int(v)) if isinstance(default, int) else str(v) for v in values]
    if isinstance(default, float):
        values += ["nan", "inf"]
    if common.CHOICES.search(comment):
        values.append("不存在的选项")
    if isinstance(default, list) or (isinstance(default, str) and default):
        values.append("")
    return values


CASES = [(script, name, value) for script in SCRIPTS for name, default, comment in declared(script)
         for value in bad_values(default, comment)]


def apply_in_process(script, argv):
    """用脚本真实的超参数块调用 apply_overrides；返回 (退出码, 标准错误)。比起几百次启动子进程快得多。"""
    module = load_script(script)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            common.apply_overrides(vars(module), argv)
        except SystemExit as e:
            return e.code, err.getvalue()
    return 0, err.getvalue()


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_number_declares_a_range_that_its_default_satisfies(script):
    for name, default, comment in declared(script):
        if isinstance(default, (int, float)) and not isinstance(default, bool) and name not in NO_RANGE:
            assert common.INTERVAL.search(comment), f"{script} 的 {name} 没有在注释末尾写明取值范围"
        assert common.out_of_range(default, comment) is None, f"{script} 的 {name} 默认值不在它自己的范围里"


@pytest.mark.parametrize("script, name, value", CASES)
def test_out_of_range_value_is_a_one_line_error(script, name, value):
    code, err = apply_in_process(script, [f"--{name}={value}"])
    assert code == 2, err
    assert err.startswith("错误：") and len(err.strip().splitlines()) == 1, err
    assert f"--{name}" in err


# issue 里逐条试出来的输入：以前是 traceback 或者悄悄出错，现在都要在真正的命令行上得到一行错误
ISSUE_TABLE = [
    ("babygpt_v1.py", "--eval_interval=0"),
    ("babygpt_v4_multihead_attention.py", "--n_head=0"),
    ("babygpt_v10_dropout.py", "--dropout=1.5"),
    ("babygpt_sample_with_kvcache.py", "--temperature=nan"),
    ("babygpt_v11_hyper_params.py", "--eval_iters=0"),
    ("babygpt_v1.py", "--batch_size=0"),
    ("babygpt_v3_self_attention.py", "--device"),
    ("simplebigrammodel.py", "--prompts="),
]


@pytest.mark.parametrize("script, arg", ISSUE_TABLE + [(script, f"--{name}={value}") for script, name, value in
                                                          {c[0]: c for c in CASES}.values()])
def test_real_cli_refuses_and_writes_nothing(script, arg, tmp_path):
    # 在空目录里运行：默认的 ci.txt、babygpt.pt、wandb/ 都相对于当前目录，检查失败后目录必须还是空的
    result = run_script(script, arg, cwd=tmp_path)
    assert_clean_error(result, code=2)
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.search(rf"--{arg.split('=')[0].removeprefix('--')}\b", result.stderr), result.stderr
    assert not list(tmp_path.iterdir())


def test_values_inside_the_range_are_accepted():
    assert apply_in_process("babygpt_v10_dropout.py", ["--dropout=0", "--train_ratio=0.5", "--device=cpu"])[0] == 0
    assert apply_in_process("babygpt_sample.py", ["--temperature=1e-3", "--top_k=1", "--prompt="])[0] == 0
