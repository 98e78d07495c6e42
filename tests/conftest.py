"""测试共用的小工具：仓库路径、自己写出的小语料、以子进程运行脚本。"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # 让测试能 import 仓库里的脚本，不管从哪里启动 pytest
from corpus import build_corpus  # noqa: E402
POETRY_DIR = Path(os.environ.get("CHINESE_POETRY_DIR", REPO.parent / "shared" / "chinese-poetry")).resolve()

# 一小段测试自己写的“宋词”，包含默认提示词里的每个字
TINY_TEXT = (
    "江城子 测试\n春江潮水连海平，往事知多少。\n明月几时有，把酒问青天。\n\n"
    "浣溪沙 测试\n一曲新词酒一杯，去年天气旧亭台。\n夕阳西下几时回。\n\n"
) * 40


@pytest.fixture
def tiny_corpus(tmp_path):
    """写一个约 3,000 字的小语料，返回它的路径。"""
    path = tmp_path / "tiny.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


def run_script(script, *args, cwd=REPO, stdin=None, timeout=300, env=None):
    """用当前的 Python 运行仓库里的一个脚本，返回 CompletedProcess（stdout、stderr 都是文本）。"""
    full_env = {**os.environ, "CHINESE_POETRY_DIR": str(POETRY_DIR), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout, env=full_env,
    )


def samples(stdout):
    """从脚本输出里取出 {提示词: 生成的文本}：每个样本以 “--- 提示词 ---” 结尾的一行开头
    （交互模式下这一行前面还有输入提示，因为管道输入不会回显换行）。"""
    found, current = {}, None
    for line in stdout.splitlines():
        header = re.search(r"--- (.*) ---$", line)
        if header:
            current = header.group(1)
            found[current] = ""
        elif current is not None:
            found[current] += line + "\n"
    return found


def load_script(script):
    """从文件重新导入一个脚本（每次都是全新的模块对象）；__name__ 不是 "__main__"，所以不会训练。"""
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), REPO / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_ok(script, *args, **kwargs):
    """运行脚本并断言它成功退出，返回 CompletedProcess；kwargs 原样交给 run_script。"""
    result = run_script(script, *args, **kwargs)
    assert result.returncode == 0, result.stderr
    return result


def assert_clean_error(result, code=None):
    """脚本失败得体面：退出码非零（或等于 code），标准错误里有“错误”，没有 traceback。"""
    if code is None:
        assert result.returncode != 0, result
    else:
        assert result.returncode == code, result
    assert "错误" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="session")
def full_text(tmp_path_factory):
    """完整的 ci.txt 文本：整个测试会话只构建一次，放在临时目录里，不碰仓库里的 ci.txt。"""
    path = tmp_path_factory.mktemp("corpus") / "ci.txt"
    build_corpus(path, source_dir=POETRY_DIR)
    return path.read_text(encoding="utf-8")
