"""v16 的数据并行，用真正的 torchrun（python -m torch.distributed.run）在 CPU 上以 gloo 启动：
2 个进程各算半个批次训练一步，参数和 1 个进程算整个批次完全一样；DDP 写出的检查点没有 module. 前缀，采样脚本能读；
一个进程出错时 torchrun 几秒内以非零退出码结束、不挂起，已保存的检查点完好；进程数多于 batch_size 时只有一行中文错误。
每个子进程都在自己的进程组里启动，测试结束时（无论成败）整组杀掉，不留下任何进程。"""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import REPO, TINY_TEXT, load_script, read_until, run_ok, samples

SCRIPT = str(REPO / "babygpt_v16_ddp.py")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]  # --standalone：自己找一个空闲端口
# dropout=0：两边唯一的差别就只剩“一个进程算整批”还是“两个进程各算半批再 all_reduce”
ONE_STEP = ["--preset=cpu", "--max_iters=1", "--eval_interval=1", "--eval_iters=1", "--n_layer=2", "--n_embd=32",
            "--n_head=4", "--block_size=16", "--batch_size=8", "--dropout=0", "--max_new_tokens=5", "--wandb_mode=disabled"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
if sys.platform == "linux":
    # gloo 默认按主机名找网卡；有的容器里主机名解析不到本机，就明确走回环网卡
    ENV.setdefault("GLOO_SOCKET_IFNAME", "lo")
# 包一层再运行 v16：1 号进程第 CRASH_AT 次更新参数时抛出异常，抛之前把时间写进一个文件
CRASH_WRAPPER = '''
import os, runpy, sys, time
import torch

sys.path.insert(0, {repo!r})
if os.environ.get("RANK") == "1":
    original, calls = torch.optim.AdamW.step, []

    def step(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == {crash_at}:
            with open({marker!r}, "w") as f:
                f.write(str(time.time()))
            raise RuntimeError("测试：1 号进程故意出错")
        return original(self, *args, **kwargs)

    torch.optim.AdamW.step = step
sys.argv[0] = {script!r}
runpy.run_path({script!r}, run_name="__main__")
'''


def start(command, cwd):
    """在新的进程组里启动，好在结束时连 torchrun 起的子进程一起杀掉。
    SIGINT 恢复成默认处理：测试本身若在“忽略 SIGINT”的环境里跑，子进程就收不到 Ctrl-C。"""
    return subprocess.Popen(command, cwd=cwd, env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def finish(proc, timeout):
    """等进程结束，返回 (退出码, 标准输出, 标准错误)；超时或出错时整组杀掉。"""
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


@pytest.fixture(scope="module")
def one_step(tmp_path_factory):
    """同一个批次训练一步：1 个进程用 batch 8，torchrun 2 个进程各用 4；两次同时启动。返回 {进程数: (退出码, 输出, 错误, 检查点)}。"""
    folder = tmp_path_factory.mktemp("ddp")
    corpus = folder / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    runs = {1: [sys.executable, SCRIPT], 2: [*TORCHRUN, "--nproc_per_node=2", SCRIPT]}
    procs = {n: start([*command, f"--data_path={corpus}", f"--checkpoint={folder / f'{n}.pt'}", *ONE_STEP], folder)
             for n, command in runs.items()}
    try:
        return {n: (*finish(proc, timeout=240), folder / f"{n}.pt") for n, proc in procs.items()}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()


def test_two_ranks_with_half_batches_equal_one_process_with_the_whole_batch(one_step):
    for n, (code, out, err, _) in one_step.items():
        assert code == 0, f"{n} 个进程：{err[-3000:]}"
    assert "数据并行：2 个进程，每个进程每步算 4 段" in one_step[2][1]
    assert "数据并行" not in one_step[1][1]
    single = torch.load(one_step[1][3], weights_only=True)
    ddp = torch.load(one_step[2][3], weights_only=True)
    assert single["iter"] == ddp["iter"] == 1
    assert single["model"].keys() == ddp["model"].keys()
    # 前提：这一步真的改了参数，否则“相等”什么也证明不了
    torch.manual_seed(42)
    init = load_script("babygpt_v16_ddp.py").BabyGPT(**single["model_args"]).state_dict()
    assert max((single["model"][k] - init[k]).abs().max().item() for k in init) > 1e-4
    assert max((single["model"][k] - ddp["model"][k]).abs().max().item() for k in init) <= 1e-6


def test_only_rank_zero_prints(one_step):
    out = one_step[2][1]
    assert out.count("初始损失") == 1 and out.count("已保存检查点") == 1 and out.count("--- 春江 ---") == 1


def test_ddp_checkpoint_has_no_prefix_and_loads_in_the_sampler(one_step):
    checkpoint = one_step[2][3]
    assert not [k for k in torch.load(checkpoint, weights_only=True)["model"] if k.startswith(("module.", "_orig_mod."))]
    result = run_ok("babygpt_sample_with_kvcache.py", f"--checkpoint={checkpoint}", "--prompt=春江", "--max_new_tokens=8",
                    cwd=checkpoint.parent)
    assert samples(result.stdout)["春江"].startswith("春江")


def test_a_crashing_rank_ends_torchrun_quickly_and_keeps_the_checkpoint(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    checkpoint, marker, wrapper = tmp_path / "c.pt", tmp_path / "crashed_at", tmp_path / "crash.py"
    wrapper.write_text(CRASH_WRAPPER.format(repo=str(REPO), script=SCRIPT, marker=str(marker), crash_at=12), encoding="utf-8")
    # 不设上限的训练：没有人出来结束它的话，测试只能等到超时
    proc = start([*TORCHRUN, "--nproc_per_node=2", str(wrapper), f"--data_path={corpus}", f"--checkpoint={checkpoint}",
                  "--preset=cpu", "--max_iters=1000000", "--eval_interval=5", "--eval_iters=1", "--n_layer=1", "--n_embd=32",
                  "--n_head=4", "--block_size=16", "--batch_size=8", "--wandb_mode=disabled"], tmp_path)
    code, out, err = finish(proc, timeout=240)
    ended = time.time()
    assert code != 0
    assert "测试：1 号进程故意出错" in err
    assert ended - float(marker.read_text()) < 30, "出错之后 torchrun 过了太久才结束"
    # 第 5、10 步的评估已经在出错前写过检查点；它完好，采样脚本能读
    ckpt = torch.load(checkpoint, weights_only=True)
    assert ckpt["iter"] in (5, 10)
    model, _ = load_script("babygpt_sample.py").load_checkpoint(str(checkpoint), "cpu")
    assert model.block_size == 16


def test_ctrl_c_ends_every_rank_quickly_and_keeps_the_checkpoint(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    checkpoint = tmp_path / "c.pt"
    proc = start([*TORCHRUN, "--nproc_per_node=2", SCRIPT, f"--data_path={corpus}", f"--checkpoint={checkpoint}",
                  "--preset=cpu", "--max_iters=1000000", "--eval_interval=5", "--eval_iters=1", "--n_layer=1", "--n_embd=32",
                  "--n_head=4", "--block_size=16", "--batch_size=8", "--wandb_mode=disabled"], tmp_path)
    pressed = None
    try:
        if read_until(proc.stdout, "已保存检查点") is not None:
            os.killpg(proc.pid, signal.SIGINT)  # 终端里按 Ctrl-C：整个前台进程组（torchrun 和两个进程）都收到 SIGINT
            pressed = time.time()
    finally:
        code, _, err = finish(proc, timeout=60)  # 超时也会整组杀掉
    assert pressed is not None, err[-3000:]
    assert code != 0
    assert time.time() - pressed < 30, "Ctrl-C 之后 torchrun 过了太久才结束"
    assert "已中断（Ctrl-C）" in err
    ckpt = torch.load(checkpoint, weights_only=True)  # 中断前写好的检查点完好
    assert ckpt["iter"] % 5 == 0 and ckpt["iter"] >= 5


def test_more_processes_than_batch_size_is_one_clear_error(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    proc = start([*TORCHRUN, "--nproc_per_node=2", SCRIPT, f"--data_path={corpus}", "--batch_size=1",
                  f"--checkpoint={tmp_path / 'c.pt'}", "--wandb_mode=disabled"], tmp_path)
    code, out, err = finish(proc, timeout=120)
    assert code != 0
    errors = [line for line in err.splitlines() if "错误：" in line]
    assert len(errors) == 1 and "batch_size=1 必须能被进程数 2 整除" in errors[0], err
    assert "初始损失" not in out and not (tmp_path / "c.pt").exists()
