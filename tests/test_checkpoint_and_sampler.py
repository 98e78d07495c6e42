"""v11 的检查点（原子写入、weights_only 读取）和采样脚本的命令行：正常路径与一整套错误输入。"""
import os
import signal
import subprocess
import sys

import pytest
import torch

from conftest import REPO, TINY_TEXT, assert_clean_error, load_script, run_ok, run_script, samples

SAMPLER = "babygpt_sample_with_kvcache.py"
BLOCK_SIZE = 16


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """用 v11 在自己写的小语料上训练几步，得到检查点；随后删掉语料，证明采样不再需要它。"""
    folder = tmp_path_factory.mktemp("v11")
    corpus = folder / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    run_ok("babygpt_v11_hyper_params.py", f"--data_path={corpus}", f"--checkpoint={folder / 'c.pt'}",
           "--preset=cpu", "--max_iters=30", "--eval_interval=10", "--eval_iters=2", "--n_layer=2",
           "--n_embd=32", "--n_head=4", f"--block_size={BLOCK_SIZE}", "--max_new_tokens=5")
    corpus.unlink()
    return folder / "c.pt"


def sample(checkpoint, *args, stdin=None):
    return run_script(SAMPLER, f"--checkpoint={checkpoint}", "--max_new_tokens=12", *args, stdin=stdin)


def test_checkpoint_carries_weights_config_vocabulary_and_progress(checkpoint):
    ckpt = torch.load(checkpoint, weights_only=True)
    assert set(ckpt) == {"model", "model_args", "chars", "iter", "best_val_loss"}
    assert ckpt["chars"] == sorted(set(TINY_TEXT))
    assert ckpt["model_args"]["vocab_size"] == len(ckpt["chars"])
    assert ckpt["iter"] in (10, 20, 30)


@pytest.mark.parametrize("cache", ["True", "False"])
def test_one_shot_generation_from_checkpoint_without_corpus(checkpoint, cache):
    result = run_ok(SAMPLER, f"--checkpoint={checkpoint}", "--prompt=春江", "--num_samples=2",
                    "--max_new_tokens=12", f"--use_kv_cache={cache}")
    assert result.stdout.count("--- 春江 ---") == 2
    assert samples(result.stdout)["春江"].startswith("春江")
    assert "tokens/s" in result.stdout


def test_cached_and_uncached_cli_give_the_same_text(checkpoint):
    outputs = [sample(checkpoint, "--prompt=往事", f"--use_kv_cache={c}", "--top_k=1").stdout for c in ("True", "False")]
    texts = [samples(out)["往事"].splitlines()[:-1] for out in outputs]
    assert texts[0] == texts[1]


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


def test_pickled_object_in_checkpoint_is_refused(checkpoint, tmp_path):
    evil = tmp_path / "evil.pt"
    ckpt = torch.load(checkpoint, weights_only=True)
    ckpt["extra"] = Payload(str(tmp_path / "pwned"))
    torch.save(ckpt, evil)
    assert_clean_error(sample(evil, "--prompt=春江"), code=1)
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


def test_every_broken_checkpoint_gives_a_clear_error(checkpoint, tmp_path):
    for name, path in corrupt_files(checkpoint, tmp_path).items():
        result = sample(path, "--prompt=春江")
        assert_clean_error(result, code=1)
        assert "不是可用的 BabyGPT 检查点" in result.stderr, name


def test_missing_checkpoint_names_the_training_script(tmp_path):
    result = sample(tmp_path / "nope.pt", "--prompt=春江")
    assert_clean_error(result, code=1)
    assert "babygpt_v11_hyper_params.py" in result.stderr


@pytest.mark.parametrize("arg", ["--temperature=0", "--temperature=-1", "--top_k=0", "--max_new_tokens=0", "--num_samples=0"])
def test_out_of_range_sampling_settings_are_rejected(checkpoint, arg):
    result = sample(checkpoint, "--prompt=春江", arg)
    assert_clean_error(result)
    assert arg.split("=")[0].removeprefix("--") in result.stderr


def test_top_k_larger_than_vocabulary_is_clamped(checkpoint):
    assert sample(checkpoint, "--prompt=春江", "--top_k=1000000").returncode == 0


def test_out_of_vocabulary_one_shot_prompt_fails_cleanly(checkpoint):
    result = sample(checkpoint, "--prompt=春江龘")
    assert_clean_error(result, code=1)
    assert "龘" in result.stderr


def test_repl_survives_bad_input_and_exits_on_eof(checkpoint):
    long_prompt = "春江潮水" * BLOCK_SIZE
    result = sample(checkpoint, stdin=f"龘鼎\n\n{long_prompt}\n往事\n")
    assert result.returncode == 0, result.stderr
    assert "龘" in result.stderr and "Traceback" not in result.stderr
    found = samples(result.stdout)
    assert set(found) == {"（空提示词）", long_prompt, "往事"}
    assert f"只用最后 {BLOCK_SIZE} 个字" in result.stdout
    assert found[long_prompt].startswith(long_prompt[-BLOCK_SIZE:])
    assert "再见" in result.stdout


def test_ctrl_c_at_the_prompt_exits_cleanly(checkpoint):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, REPO / SAMPLER, f"--checkpoint={checkpoint}"], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "请输入文字" not in seen:
        char = proc.stdout.read(1)
        assert char, f"采样脚本没等到输入就退出了：{proc.communicate()[1]}"
        seen += char
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_ctrl_c_during_training_keeps_the_best_checkpoint(tmp_path):
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(TINY_TEXT, encoding="utf-8")
    path = tmp_path / "c.pt"
    args = [f"--data_path={corpus}", f"--checkpoint={path}", "--preset=cpu", "--max_iters=100000", "--eval_interval=5",
            "--eval_iters=1", "--n_layer=1", "--n_embd=32", "--n_head=4", f"--block_size={BLOCK_SIZE}"]
    proc = subprocess.Popen([sys.executable, REPO / "babygpt_v11_hyper_params.py", *args], cwd=REPO, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = "start"
    while line and "已保存检查点" not in line:
        line = proc.stdout.readline()
    assert line, f"训练还没存检查点就退出了：{proc.communicate()[1]}"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert "已中断" in err and "Traceback" not in err
    assert torch.load(path, weights_only=True)["iter"] >= 5
