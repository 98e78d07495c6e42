"""笔记里的“动手试试”不会过时：notes/*.md 里 `## 动手试试` 之下的每个 ```bash 块，都在仓库脚本的一份临时拷贝里
用测试自己的小语料和极小的超参数（max_iters=3 之类，追加在每个 `python 脚本.py …` 的末尾，所以优先）跑一遍，要求退出码为 0；
块里用 sed 复制出来的脚本必须真的和原脚本不同，否则说明 sed 的模式已经对不上代码了。
同一个块里同一个脚本再次出现时（只是换了种子或学习率），只检查它的参数、不再运行，好让整个文件一分钟左右跑完。
各个块在后台并行地跑（每个子进程只用一个线程），全部跑完再逐块检查；仓库里不留下任何文件，也不留下任何进程。
讲词牌的笔记（FULL_CORPUS_NOTES）要用真的词牌名（满江红、菩萨蛮……），它们的块改用完整语料（检查点也在完整语料上训练）；
找不到语料来源时跳过，CI 上算失败。"""
import ast
import contextlib
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import corpus as corpus_module
from common import apply_overrides, hyperparameters
from conftest import REPO, REQUIRE_CORPUS, TINY_TEXT, find_poetry_source

SECTION = "## 动手试试"
BASH_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)
PYTHON_CALL = re.compile(r"python (\S+\.py)((?: --\S+)*)")  # 脚本名，以及紧跟在后面的 --name=value 参数
SED_COPY = re.compile(r"^sed .* (\S+\.py) > (\S+\.py)$", re.M)  # sed '…' 原脚本.py > 新脚本.py
TIMEOUT = 120  # 单个块的上限（秒）；正常情况下每个块几秒钟就跑完
FULL_CORPUS_NOTES = {"cipai", "babygpt_sample_with_cipai"}
ROPE_NOTES = {"babygpt_sample_with_rope"}  # 这些笔记的块读的 babygpt.pt 是 RoPE 模型（v20 训练的），其余的是 v11 训练的
NO_CORPUS = "找不到完整语料的来源：设置 CHINESE_POETRY_DIR 指向 chinese-poetry 仓库，或联网运行一次 python corpus.py"
TINY = {"max_iters": "3", "eval_interval": "3", "eval_iters": "1", "max_new_tokens": "5", "prompts": "春江", "prompt": "春江",
        "n_chars": "200"}


def exercise_blocks():
    """[(笔记名#序号, bash 块的文本)]：只取每篇笔记里 `## 动手试试` 这一节（到下一个二级标题为止）的 bash 块。"""
    blocks = []
    for note in sorted((REPO / "notes").glob("*.md")):
        text = note.read_text(encoding="utf-8")
        if SECTION not in text:
            continue
        section = text.split(SECTION, 1)[1]
        section = re.split(r"^## ", section, flags=re.M)[0]
        for i, block in enumerate(BASH_BLOCK.findall(section), 1):
            blocks.append((f"{note.stem}#{i}", block))
    return blocks


BLOCKS = exercise_blocks()


def shrink(block, corpus, problems=None):
    """给块里每个 `python 脚本.py …` 的末尾追加它接受的极小超参数；sed 复制出的脚本按原脚本的超参数块来定。
    同一个块里同一个脚本第二次出现时（通常只是换了种子或学习率），不再真的运行，而是在这里检查它的参数
    （名字、类型、取值范围），换成一条什么也不做的 `true`，发现的问题追加到 problems 里。"""
    sources = {copy: original for original, copy in SED_COPY.findall(block)}
    seen = set()

    def add_overrides(match):
        script = REPO / sources.get(match.group(1), match.group(1))
        if not script.exists():
            return match.group(0)  # 脚本不存在：原样运行，让它自己报错
        if problems is not None and script in seen and "$" not in match.group(2):
            error = check_arguments(script, match.group(2).split())
            if error:
                problems.append(f"{match.group(0)}：{error}")
            return "true"
        seen.add(script)
        names = hyperparameters(script)
        tiny = {**TINY, "data_path": str(corpus)}
        return match.group(0) + "".join(f" --{name}={value}" for name, value in tiny.items() if name in names)

    return PYTHON_CALL.sub(add_overrides, block)


def check_arguments(script, argv):
    """不运行脚本，只用 common.apply_overrides 检查 argv 里的 --name=value；没问题返回 None，否则返回它的错误信息。
    默认值从超参数块里按字面量读出来，所以不需要 import 脚本（也就不用 import torch）。"""
    lines = script.read_text(encoding="utf-8").splitlines()
    fences = [i for i, line in enumerate(lines) if line.startswith("# ===")]
    defaults = {"__file__": str(script)}
    for line in lines[fences[0] + 1:fences[1]]:
        name, _, rest = line.partition("=")
        try:
            defaults[name.strip()] = ast.literal_eval(rest.split("  #")[0].strip())
        except (ValueError, SyntaxError):
            pass
    hook, messages = sys.excepthook, io.StringIO()
    try:
        with contextlib.redirect_stdout(messages), contextlib.redirect_stderr(messages):
            apply_overrides(defaults, argv)
    except SystemExit:
        return messages.getvalue().strip()
    finally:
        sys.excepthook = hook  # apply_overrides 会装上自己的 excepthook，测试进程里不要留下它
    return None


def run_block(block, workdir, env):
    """在 workdir 里用 bash -e 运行一个块，返回 (退出码, 输出)；超时或出错时整组子进程都会被杀掉。"""
    process = subprocess.Popen(["bash", "-e", "-c", block], cwd=workdir, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=TIMEOUT)
        return process.returncode, output
    except subprocess.TimeoutExpired:
        return None, f"超过 {TIMEOUT} 秒还没跑完"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def sed_copies_differ(block, workdir, env):
    """先单独执行块里的每条 sed 复制命令，返回 [(原脚本, 新脚本, 两者是否不同)]，再删掉复制出来的文件。"""
    checked = []
    for line in SED_COPY.finditer(block):
        original, copy = line.group(1), line.group(2)
        subprocess.run(["bash", "-e", "-c", line.group(0)], cwd=workdir, env=env, check=True, timeout=30)
        differ = (workdir / original).read_bytes() != (workdir / copy).read_bytes()
        (workdir / copy).unlink()
        checked.append((original, copy, differ))
    return checked


@pytest.fixture(scope="module")
def results():
    """把所有块放在同一个临时目录的各自副本里并行地跑完，返回 {块名: (退出码, 输出, sed 检查, 参数问题)}；结束时删掉临时目录。"""
    with tempfile.TemporaryDirectory(prefix="exercises-") as tmp:
        tmp = Path(tmp)
        corpus = tmp / "tiny.txt"
        corpus.write_text(TINY_TEXT, encoding="utf-8")
        bin_dir = tmp / "bin"  # 块里写的是 python：让它就是运行测试的这个解释器
        bin_dir.mkdir()
        (bin_dir / "python").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        (bin_dir / "python").chmod(0o755)
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
               "PYTHONUNBUFFERED": "1"}

        full = None  # 完整语料，只给 FULL_CORPUS_NOTES 的块用
        if any(name.split("#")[0] in FULL_CORPUS_NOTES for name, _ in BLOCKS) and find_poetry_source() is not None:
            full = tmp / "ci.txt"
            corpus_module.build_corpus(full, source_dir=find_poetry_source())

        # 采样脚本的练习要读 babygpt.pt：先在每份语料上训练一个极小的检查点（词表跟着语料走），放进每个副本。
        # 一般用 v11（学到的位置向量）；ROPE_NOTES 的块用 v20（RoPE），只需要小语料上的那一个
        checkpoints = {}
        for text_path, trainer in ((corpus, "babygpt_v11_hyper_params.py"), (full, "babygpt_v11_hyper_params.py"),
                                   (corpus, "babygpt_v20_resume.py")):
            if text_path is None or not any("babygpt_sample" in block for _, block in BLOCKS):
                continue
            checkpoints[text_path, trainer] = tmp / f"babygpt_{text_path.stem}_{trainer.split('_')[1]}.pt"
            extra = ["--wandb_mode=disabled"] if trainer != "babygpt_v11_hyper_params.py" else []
            subprocess.run([sys.executable, str(REPO / trainer), f"--data_path={text_path}",
                            f"--checkpoint={checkpoints[text_path, trainer]}", "--preset=cpu", "--max_iters=3", "--eval_iters=1",
                            "--n_layer=1", "--n_head=4", "--n_embd=32", "--block_size=16", "--max_new_tokens=1", *extra],
                           cwd=tmp, env=env, capture_output=True, check=True, timeout=TIMEOUT)

        def run(item):
            name, block = item
            text_path = full if name.split("#")[0] in FULL_CORPUS_NOTES else corpus
            if text_path is None:
                return name, (None, NO_CORPUS, [], [])
            workdir = tmp / name.replace("#", "_")
            workdir.mkdir()
            for script in REPO.glob("*.py"):  # 只拷脚本，不碰仓库里的 ci.txt
                shutil.copy(script, workdir)
            shutil.copy(text_path, workdir / "ci.txt")  # 命令里直接读 ci.txt 的，读到的也是同一份语料
            trainer = "babygpt_v20_resume.py" if name.split("#")[0] in ROPE_NOTES else "babygpt_v11_hyper_params.py"
            if (text_path, trainer) in checkpoints:
                shutil.copy(checkpoints[text_path, trainer], workdir / "babygpt.pt")
            problems = []
            try:
                checked = sed_copies_differ(block, workdir, env)
                code, output = run_block(shrink(block, text_path, problems), workdir, env)
            except (OSError, subprocess.SubprocessError) as e:
                checked, code, output = [], None, f"{type(e).__name__}: {e}"
            return name, (code, output, checked, problems)

        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
            yield dict(pool.map(run, BLOCKS))


def test_every_step_note_has_exercises():
    """每篇步骤笔记都以“动手试试”结尾，里面有 2–3 道题，每道题都有命令和折叠起来的实测结果。"""
    steps = [p for p in (REPO / "notes").glob("*.md")
             if p.stem in ("simplemodel", "simplebigrammodel", "simplebigrammodel_torch", "pytorch_5min")
             or re.fullmatch(r"babygpt_(v\d+|sample)(_.*)?", p.stem)]
    assert len(steps) == 4 + 20 + 4  # 第一阶段 4 篇，v1–v20，4 个采样脚本
    for note in steps:
        text = note.read_text(encoding="utf-8")
        assert SECTION in text, f"{note.name} 没有“{SECTION}”"
        section = text.split(SECTION, 1)[1]
        assert not re.search(r"^## ", section, flags=re.M), f"{note.name} 的“{SECTION}”不是最后一节"
        exercises = re.findall(r"^### ", section, flags=re.M)
        assert 2 <= len(exercises) <= 3, f"{note.name} 有 {len(exercises)} 道题"
        assert section.count("<summary>实测结果</summary>") == len(exercises), f"{note.name} 的每道题都要有实测结果"
        assert len(BASH_BLOCK.findall(section)) >= len(exercises), f"{note.name} 的每道题都要有命令"


def test_shrink_appends_overrides_after_the_learners_own():
    block = "sed 's/a/b/' babygpt_v3_self_attention.py > v3_copy.py\npython v3_copy.py --max_iters=1000 --seed=1 && echo ok"
    shrunk = shrink(block, "tiny.txt")
    assert "python v3_copy.py --max_iters=1000 --seed=1 --max_iters=3 --eval_interval=3 --eval_iters=1" in shrunk
    assert "--data_path=tiny.txt" in shrunk and shrunk.endswith(" && echo ok")
    assert "--prompt=" not in shrunk  # 只追加脚本认识的名字：v3 有 prompts，没有 prompt
    assert shrink('python -c "print(1)"', "tiny.txt") == 'python -c "print(1)"'


def test_repeated_calls_are_checked_instead_of_run():
    problems = []
    block = "python babygpt_v1.py --seed=1\npython babygpt_v1.py --seed=2\npython babygpt_v1.py --learning_rate=-1 --nosuch=3"
    lines = shrink(block, "tiny.txt", problems).splitlines()
    assert lines[0].startswith("python babygpt_v1.py --seed=1 --max_iters=3") and lines[1:] == ["true", "true"]
    assert len(problems) == 1 and "learning_rate" in problems[0]


@pytest.mark.parametrize("name", [name for name, _ in BLOCKS])
def test_exercise_command_runs(name, results):
    code, output, checked, problems = results[name]
    if output == NO_CORPUS:
        if REQUIRE_CORPUS:
            pytest.fail(NO_CORPUS)
        pytest.skip(NO_CORPUS)
    for original, copy, differ in checked:
        assert differ, f"{name}：sed 没有改动 {original}（{copy} 和它一模一样），模式已经对不上代码了"
    assert not problems, f"{name} 里有参数不对：\n" + "\n".join(problems)
    assert code == 0, f"{name} 运行失败（退出码 {code}）：\n{output[-3000:]}"
