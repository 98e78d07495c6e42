"""v11 的检查点（原子写入、只存最好的一步、weights_only 读取）和三个采样脚本的命令行：正常路径与一整套错误输入。
带 RoPE 的采样脚本读学到位置向量的检查点时，必须和带缓存的那个一模一样。"""
import ast
import os
import pickle
import re
import signal

import pytest
import torch

from conftest import (REPO, TINY_TEXT, assert_clean_error, load_script, read_until, run_ok, run_script, samples,
                      start_script, stop)

# 带 RoPE 的采样脚本读检查点、处理坏输入的代码和带缓存的那个一字不差：它只跑正常路径和读检查点出错的几项，交互模式等只测前两个
SAMPLERS = ["babygpt_sample.py", "babygpt_sample_with_kvcache.py", "babygpt_sample_with_rope.py"]
KV_SAMPLER = "babygpt_sample_with_kvcache.py"
BLOCK_SIZE = 16
# 学习率故意很大：损失会上下跳，才能看出“变差的那次评估没有覆盖检查点”
TRAIN = ["--preset=cpu", "--max_iters=60", "--eval_interval=5", "--eval_iters=2", "--n_layer=2", "--n_embd=32",
         "--n_head=4", f"--block_size={BLOCK_SIZE}", "--max_new_tokens=5", "--learning_rate=0.05"]
EVAL_LINE = re.compile(r"^step +(\d+) \| train loss [\d.]+ \| val loss ([\d.]+)", re.M)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """用 v11 在自己写的小语料上训练几十步，返回 (检查点路径, 训练输出)；随后删掉语料，证明采样不再需要它。"""
    folder = tmp_path_factory.mktemp("v11")
    corpus = folder / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    result = run_ok("babygpt_v11_hyper_params.py", f"--data_path={corpus}", f"--checkpoint={folder / 'c.pt'}", *TRAIN)
    corpus.unlink()
    return folder / "c.pt", result.stdout


@pytest.fixture(scope="module")
def checkpoint(trained):
    return trained[0]


def sample(checkpoint, *args, stdin=None, sampler=KV_SAMPLER):
    return run_script(sampler, f"--checkpoint={checkpoint}", "--max_new_tokens=12", *args, stdin=stdin)


def test_checkpoint_carries_weights_config_vocabulary_and_progress(checkpoint):
    ckpt = torch.load(checkpoint, weights_only=True)
    assert set(ckpt) == {"model", "model_args", "chars", "iter", "best_val_loss"}
    assert ckpt["chars"] == sorted(set(TINY_TEXT))
    assert ckpt["model_args"]["vocab_size"] == len(ckpt["chars"])
    # 因果掩码是 persistent=False 的缓冲区：检查点里只有权重
    assert not [name for name in ckpt["model"] if name.endswith("tril")]


def test_checkpoint_holds_the_step_with_the_lowest_val_loss(trained):
    path, stdout = trained
    evals = [(int(step), float(loss)) for step, loss in EVAL_LINE.findall(stdout)]
    assert [step for step, _ in evals] == list(range(5, 61, 5))
    # 前提：至少有一次评估比之前最好的那次差，否则这个测试什么也证明不了
    assert any(loss > min(l for _, l in evals[:i]) for i, (_, loss) in enumerate(evals) if i > 0)
    best_step, best_loss = min(evals, key=lambda e: e[1])
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["iter"] == best_step
    assert round(ckpt["best_val_loss"], 4) == best_loss
    # 只有创新低的那几次评估写了检查点
    losses = [loss for _, loss in evals]
    new_lows = sum(1 for i, loss in enumerate(losses) if loss < min(losses[:i], default=float("inf")))
    assert stdout.count("已保存检查点") == new_lows < len(evals)


@pytest.mark.parametrize("script", ["babygpt_v11_hyper_params.py", "babygpt_v20_resume.py"])
def test_preset_auto_on_cpu_uses_the_cpu_preset(script, tiny_corpus, tmp_path):
    # README 的主命令（v20，以前是 v11）就是这条路：不写 --preset，只有 CPU 时自动换成 CPU 预设（这里只把步数改小）
    extra = ["--wandb_mode=disabled"] if script != "babygpt_v11_hyper_params.py" else []
    result = run_ok(script, f"--data_path={tiny_corpus}", f"--checkpoint={tmp_path / 'c.pt'}",
                    "--max_iters=12", "--eval_iters=2", "--max_new_tokens=5", "--device=cpu", *extra)
    assert "CPU 预设" in result.stdout and "max_iters" not in result.stdout.split("CPU 预设")[1].splitlines()[0]
    assert "预计总用时约" in result.stdout and "含评估" in result.stdout
    args = torch.load(tmp_path / "c.pt", weights_only=True)["model_args"]
    assert (args["n_layer"], args["n_head"], args["n_embd"], args["block_size"]) == (4, 4, 128, 64)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_one_shot_generation_from_checkpoint_without_corpus(checkpoint, sampler):
    result = run_ok(sampler, f"--checkpoint={checkpoint}", "--prompt=春江", "--num_samples=2", "--max_new_tokens=12")
    assert result.stdout.count("--- 春江 ---") == 2
    assert samples(result.stdout)["春江"].startswith("春江")
    assert "tokens/s" in result.stdout


@pytest.mark.parametrize("sampler,args", [(KV_SAMPLER, ["--use_kv_cache=True"]), (KV_SAMPLER, ["--use_kv_cache=False"]),
                                          ("babygpt_sample.py", []), ("babygpt_sample_with_rope.py", [])],
                         ids=["缓存", "不用缓存", "无缓存版", "RoPE 版"])
def test_greedy_cli_output_is_the_same_with_or_without_cache(checkpoint, sampler, args):
    # top_k=1 是贪心解码：几种方式（带缓存、关掉缓存、没有缓存的 babygpt_sample.py、带 RoPE 的那个）必须写出一模一样的字，两段也一样。
    # 40 个字加提示词超过了 block_size=16：学到位置向量的检查点超过窗口后整段重算，RoPE 版也必须这样做
    expected = sample(checkpoint, "--prompt=往事", "--top_k=1", "--num_samples=2", "--max_new_tokens=40").stdout
    got = sample(checkpoint, "--prompt=往事", "--top_k=1", "--num_samples=2", "--max_new_tokens=40", *args,
                 sampler=sampler).stdout
    texts = [line for line in got.splitlines() if line.startswith("往事")]
    assert len(texts) == 2 and texts[0] == texts[1]
    assert texts == [line for line in expected.splitlines() if line.startswith("往事")]


@pytest.mark.parametrize("sampler", SAMPLERS[:2])
def test_old_checkpoint_with_the_mask_still_loads(checkpoint, tmp_path, sampler):
    # 旧版本把 tril 也存进了检查点；现在它不进检查点，但旧文件必须照样能用
    ckpt = torch.load(checkpoint, weights_only=True)
    block = ckpt["model_args"]["block_size"]
    for name in [n for n in ckpt["model"] if n.endswith("key.weight")]:
        ckpt["model"][name.replace("key.weight", "tril")] = torch.tril(torch.ones(block, block))
    torch.save(ckpt, tmp_path / "old.pt")
    result = sample(tmp_path / "old.pt", "--prompt=春江", sampler=sampler)
    assert result.returncode == 0, result.stderr


def test_save_failure_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    v11 = load_script("babygpt_v11_hyper_params.py")
    path = tmp_path / "c.pt"
    v11.save_checkpoint(path, {"iter": 1})
    before = path.read_bytes()

    def crash_midway(obj, f):
        with open(f, "wb") as half:
            half.write(b"PK\x03\x04 half written")
        raise OSError("磁盘满了")

    monkeypatch.setattr(v11.torch, "save", crash_midway)
    with pytest.raises(OSError):
        v11.save_checkpoint(path, {"iter": 2})
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True) == {"iter": 1}


class Payload:
    """反序列化时会执行代码的对象：weights_only=True 必须拒绝它。"""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_every_torch_load_passes_weights_only_true():
    # torch 2.6 起 weights_only 默认就是 True，删掉这个参数测试也照样通过；所以直接检查每一处调用都明确写了它
    calls = 0
    for path in REPO.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                calls += 1
                flags = {kw.arg: ast.unparse(kw.value) for kw in node.keywords}
                assert flags.get("weights_only") == "True", f"{path.name}: {ast.unparse(node)}"
    assert calls >= 3


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_pickled_object_in_checkpoint_is_refused(checkpoint, tmp_path, sampler):
    evil = tmp_path / "evil.pt"
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["extra"] = Payload(str(tmp_path / "pwned"))
    torch.save(ckpt, evil)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(evil, weights_only=True)
    assert_clean_error(sample(evil, "--prompt=春江", sampler=sampler), code=1)
    assert not (tmp_path / "pwned").exists()


def corrupt_files(checkpoint, folder):
    """各种坏检查点：截断的、乱码的、别的程序的 zip、缺键的、配置与权重不符的。"""
    good = checkpoint.read_bytes()
    files = {"truncated": good[: len(good) // 2], "garbage": os.urandom(4096), "text": "不是检查点".encode()}
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.pt"
        paths[name].write_bytes(data)
    ckpt = torch.load(checkpoint, weights_only=True)
    torch.save({"weights": ckpt["model"]}, folder / "missing_keys.pt")
    torch.save({**ckpt, "model_args": {**ckpt["model_args"], "n_layer": 3}}, folder / "wrong_config.pt")
    paths.update(missing_keys=folder / "missing_keys.pt", wrong_config=folder / "wrong_config.pt")
    return paths


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_broken_checkpoint_gives_a_clear_error(checkpoint, tmp_path, sampler):
    for name, path in corrupt_files(checkpoint, tmp_path).items():
        result = sample(path, "--prompt=春江", sampler=sampler)
        assert_clean_error(result, code=1)
        assert "不是可用的 BabyGPT 检查点" in result.stderr, name


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_missing_checkpoint_names_the_training_script(tmp_path, sampler):
    result = sample(tmp_path / "nope.pt", "--prompt=春江", sampler=sampler)
    assert_clean_error(result, code=1)
    assert re.search(r"python babygpt_v\d+_\w+\.py", result.stderr)


@pytest.mark.parametrize("sampler", SAMPLERS[:2])  # 取值检查是共用的 common.apply_overrides，两个就够（test_bad_values.py 查遍所有脚本）
@pytest.mark.parametrize("arg", ["--temperature=0", "--temperature=-1", "--temperature=nan", "--top_k=0",
                                 "--max_new_tokens=0", "--num_samples=0"])
def test_out_of_range_sampling_settings_are_rejected(checkpoint, arg, sampler):
    result = sample(checkpoint, "--prompt=春江", arg, sampler=sampler)
    assert_clean_error(result, code=2)
    assert arg.split("=")[0] in result.stderr


@pytest.mark.parametrize("sampler", SAMPLERS[:2])
def test_top_k_larger_than_vocabulary_is_clamped(checkpoint, sampler):
    assert sample(checkpoint, "--prompt=春江", "--top_k=1000000", sampler=sampler).returncode == 0


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_out_of_vocabulary_one_shot_prompt_fails_cleanly(checkpoint, sampler):
    result = sample(checkpoint, "--prompt=春江龘", sampler=sampler)
    assert_clean_error(result, code=1)
    assert "龘" in result.stderr


@pytest.mark.parametrize("sampler", SAMPLERS[:2])
def test_repl_survives_bad_input_and_exits_on_eof(checkpoint, sampler):
    long_prompt = "春江潮水" * BLOCK_SIZE
    result = sample(checkpoint, stdin=f"龘鼎\n\n{long_prompt}\n往事\n", sampler=sampler)
    assert result.returncode == 0, result.stderr
    assert "龘" in result.stderr and "Traceback" not in result.stderr
    found = samples(result.stdout)
    assert set(found) == {"（空提示词）", long_prompt, "往事"}
    assert f"只用最后 {BLOCK_SIZE} 个字" in result.stdout
    assert found[long_prompt].startswith(long_prompt[-BLOCK_SIZE:])
    assert "再见" in result.stdout


@pytest.mark.parametrize("sampler", SAMPLERS[:2])
def test_ctrl_c_at_the_prompt_exits_cleanly(checkpoint, sampler):
    proc = start_script(sampler, f"--checkpoint={checkpoint}")
    try:
        assert read_until(proc.stdout, "请输入文字") is not None, "采样脚本没等到输入就退出了"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "Traceback" not in err
    finally:
        stop(proc)


def test_ctrl_c_during_training_keeps_the_best_checkpoint(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    path = tmp_path / "c.pt"
    proc = start_script("babygpt_v11_hyper_params.py", f"--data_path={corpus}", f"--checkpoint={path}", "--preset=cpu",
                        "--max_iters=100000", "--eval_interval=5", "--eval_iters=1", "--n_layer=1", "--n_embd=32",
                        "--n_head=4", f"--block_size={BLOCK_SIZE}")
    try:
        assert read_until(proc.stdout, "已保存检查点") is not None, "训练还没存检查点就退出了"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode != 0
        assert "已中断" in err and "Traceback" not in err
        assert torch.load(path, weights_only=True)["iter"] >= 5
    finally:
        stop(proc)
