"""测试共用的小工具：仓库路径、自己写出的小语料、以子进程运行脚本。"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
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
    """从脚本输出里取出 {提示词: 生成的文本}：每个样本以一行 “--- 提示词 ---” 开头。"""
    found, current = {}, None
    for line in stdout.splitlines():
        if line.startswith("--- ") and line.endswith(" ---"):
            current = line[4:-4]
            found[current] = ""
        elif current is not None:
            found[current] += line + "\n"
    return found
