"""测试共用的小工具：仓库路径、自己写出的小语料、以子进程运行脚本。"""
import functools
import importlib.util
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # 让测试能 import 仓库里的脚本，不管从哪里启动 pytest
import corpus  # noqa: E402

# .ci/run 设置它：CI 上完整语料必须找得到，那几项测试不许跳过
REQUIRE_CORPUS = os.environ.get("BABYGPT_REQUIRE_CORPUS") == "1"
# 第四阶段：让训练变快（融合注意力、混合精度、编译）和用上多个进程（DDP）
STAGE4 = ["babygpt_v13_flash_attention.py", "babygpt_v14_mixed_precision.py", "babygpt_v15_compile.py", "babygpt_v16_ddp.py"]
# 第四阶段第二部分：同样的计算量换更低的损失（学习率调度、权重共享、RoPE），以及断点续训
STAGE4_PART2 = ["babygpt_v17_lr_schedule.py", "babygpt_v18_weight_tying.py", "babygpt_v19_rope.py", "babygpt_v20_resume.py"]

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
    """用当前的 Python 运行仓库里的一个脚本，返回 CompletedProcess（stdout、stderr 都是文本）。
    超时时 subprocess.run 会杀掉子进程，不留下任何进程。"""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(REPO / script), *args],
        cwd=cwd, input=stdin, capture_output=True, text=True, timeout=timeout, env=full_env,
    )


def start_script(script, *args, cwd=REPO, env=None):
    """在后台启动一个脚本（stdin/stdout/stderr 都是管道），返回 Popen。
    子进程里把 SIGINT 恢复成默认处理：如果测试本身是在“忽略 SIGINT”的环境里跑的（例如 nohup … &），
    Python 不会装上 KeyboardInterrupt 的处理器，Ctrl-C 就测不出来。调用者必须在 finally 里调用 stop()。"""
    return subprocess.Popen(
        [sys.executable, str(REPO / script), *args], cwd=cwd, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def stop(proc):
    """测试结束（无论成败）时确保子进程已经退出。"""
    if proc.poll() is None:
        proc.kill()
    proc.communicate()


def read_until(stream, marker):
    """从子进程的输出里一个字一个字地读，直到读到 marker；对方先退出时返回 None。"""
    seen = ""
    while marker not in seen:
        char = stream.read(1)
        if not char:
            return None
        seen += char
    return seen


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


def assert_sampler_rebuilds_the_model(sampler, training, checkpoint):
    """采样脚本（模块 sampler）从检查点重建的模型，和训练脚本（模块 training）自己的模型读同一个检查点，给出同样的 logits。"""
    import torch

    model, tokenizer = sampler.load_checkpoint(str(checkpoint), "cpu")
    ckpt = torch.load(checkpoint, weights_only=True)
    own = training.BabyGPT(**ckpt["model_args"])
    own.load_state_dict(ckpt["model"])
    idx = torch.tensor([tokenizer.encode("春江潮水连海平")])
    with torch.no_grad():
        assert (model.eval()(idx)[0] - own.eval()(idx)[0]).abs().max().item() <= 1e-5


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


@functools.cache
def find_poetry_source():
    """和脚本找语料的顺序一样：先看 CHINESE_POETRY_DIR；没有就用下载缓存（缺文件时先下载，校验 sha256）。
    返回可以当作 chinese-poetry 仓库根目录用的文件夹；哪里都找不到时返回 None。"""
    if os.environ.get("CHINESE_POETRY_DIR"):
        return Path(os.environ["CHINESE_POETRY_DIR"]).resolve()
    try:
        corpus.fetch_sources(source_dir=None, cache_dir=corpus.CACHE_DIR)
    except corpus.CorpusError:
        return None
    return corpus.CACHE_DIR


@pytest.fixture(scope="session")
def poetry_dir():
    """完整语料的来源目录；找不到时这几项测试跳过（CI 上则算失败），其余测试照常运行。"""
    found = find_poetry_source()
    if found is None:
        message = "找不到完整语料的来源：设置 CHINESE_POETRY_DIR 指向 chinese-poetry 仓库，或联网运行一次 python corpus.py"
        if REQUIRE_CORPUS:
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def full_text(tmp_path_factory, poetry_dir):
    """完整的 ci.txt 文本：整个测试会话只构建一次，放在临时目录里，不碰仓库里的 ci.txt。"""
    path = tmp_path_factory.mktemp("corpus") / "ci.txt"
    corpus.build_corpus(path, source_dir=poetry_dir)
    return path.read_text(encoding="utf-8")
