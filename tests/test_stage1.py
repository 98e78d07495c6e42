"""第一阶段脚本的测试：计数版 bigram（纯 Python、列表、张量、逐行注释版）和五分钟 PyTorch。
检查它们能跑、输出格式对、注释版与原版代码一字不差、列表版和张量版数出同一张表、出错时只给一句中文说明。"""
import io
import random
import re
import tokenize

import pytest
import torch

from common import hyperparameters
from conftest import REPO, TINY_TEXT, assert_clean_error, load_script, run_ok, run_script, samples

# 第一阶段的每个计数脚本 -> (让它在小语料上很快跑完的额外参数, 它默认的提示词)
STAGE1 = {
    "simplemodel.py": ([], ["春江"]),
    "simplemodel_with_comments.py": ([], ["春江"]),
    "simplebigrammodel.py": (["--max_iters=50"], ["春江", "往事"]),
    "simplebigrammodel_with_comments.py": (["--max_iters=50"], ["春江", "往事"]),
    "simplebigrammodel_torch.py": (["--max_iters=50"], ["春江", "往事"]),
}
BIGRAMS = ["simplebigrammodel.py", "simplebigrammodel_torch.py"]  # 列表版和张量版
TORCH_SCRIPTS = ["simplebigrammodel_torch.py", "pytorch_5min.py"]
ALL_SCRIPTS = [*STAGE1, "pytorch_5min.py", "bench_bigram.py"]


def split_code(path):
    """返回 (代码行, 注释数)：代码行去掉了模块文档字符串、注释、行尾空白和空行。"""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    comments = [t for t in tokens if t.type == tokenize.COMMENT]
    for token in comments:
        row, col = token.start
        lines[row - 1] = lines[row - 1][:col].rstrip()
    docstring = next(t for t in tokens if t.type not in (tokenize.COMMENT, tokenize.NL))
    assert docstring.type == tokenize.STRING, f"{path.name} 应该以模块文档字符串开头"
    in_docstring = range(docstring.start[0] - 1, docstring.end[0])
    code = [line for i, line in enumerate(lines) if i not in in_docstring and line.strip()]
    return code, len(comments)


@pytest.mark.parametrize("script", STAGE1)
def test_script_runs_and_samples_start_with_prompt(script, tiny_corpus):
    extra, prompts = STAGE1[script]
    result = run_ok(script, f"--data_path={tiny_corpus}", "--max_new_tokens=30", *extra)
    assert "计数用时" in result.stdout
    generated = samples(result.stdout)
    assert list(generated) == prompts
    for prompt, text in generated.items():
        assert text.startswith(prompt) and len(text.strip()) > len(prompt)
        # 计数模型只会写出训练文本里出现过的字
        assert set(text) <= set(TINY_TEXT)


@pytest.mark.parametrize("script", STAGE1)
def test_char_without_successor_falls_back_to_uniform(script, tmp_path):
    # 文本只有“春江”两个字：“江”后面从来没有字，生成到“江”时只能在词表里均匀地随便挑
    path = tmp_path / "two.txt"
    path.write_text("春江", encoding="utf-8")
    extra = [] if script.startswith("simplemodel") else ["--block_size=1", "--max_iters=5", "--prompts=春江"]
    result = run_ok(script, f"--data_path={path}", "--max_new_tokens=20", *extra)
    text = samples(result.stdout)["春江"].strip()
    assert len(text) == 22 and set(text) == {"春", "江"}


@pytest.mark.parametrize("plain", ["simplemodel.py", "simplebigrammodel.py"])
def test_commented_version_has_identical_code(plain):
    plain_code, _ = split_code(REPO / plain)
    commented_code, n_comments = split_code(REPO / plain.replace(".py", "_with_comments.py"))
    assert commented_code == plain_code
    # “逐行注释”：注释至少和代码行一样多
    assert n_comments >= len(plain_code)


def test_list_and_tensor_bigram_count_the_same_table():
    lists, tensors = map(load_script, BIGRAMS)
    data = lists.Tokenizer(TINY_TEXT).encode(TINY_TEXT)
    vocab_size = len(set(TINY_TEXT))
    list_model = lists.BigramLanguageModel(vocab_size)
    tensor_model = tensors.BigramLanguageModel(vocab_size, "cpu")
    random.seed(0)
    steps, batch_size, block_size = 100, 4, 8
    for _ in range(steps):
        xb, yb = lists.get_batch(data, batch_size, block_size)
        list_model.count(xb, yb)
        tensor_model.count(torch.tensor(xb), torch.tensor(yb))
    assert torch.equal(torch.tensor(list_model.transition), tensor_model.transition)
    assert tensor_model.transition.sum().item() == steps * batch_size * block_size


@pytest.mark.parametrize("script", BIGRAMS)
def test_targets_are_inputs_shifted_by_one(script):
    module = load_script(script)
    data = list(range(100))  # 第 i 个“字”的编号就是 i，于是下一个字的编号正好是 i + 1
    if script.endswith("_torch.py"):
        xb, yb = (batch.tolist() for batch in module.get_batch(torch.tensor(data), 16, 8, "cpu"))
    else:
        xb, yb = module.get_batch(data, 16, 8)
    assert len(xb) == len(yb) == 16
    for x, y in zip(xb, yb):
        assert len(x) == 8 and y == [i + 1 for i in x]


@pytest.mark.parametrize("script", BIGRAMS)
def test_tokenizer_round_trips_full_corpus(script, full_text):
    tokenizer = load_script(script).Tokenizer(full_text)
    assert tokenizer.vocab_size == 6_104
    assert tokenizer.decode(tokenizer.encode(full_text)) == full_text


def test_pytorch_5min_learns_the_line():
    result = run_ok("pytorch_5min.py")
    match = re.search(r"^学到的 w = (-?[\d.]+), b = (-?[\d.]+)$", result.stdout, re.MULTILINE)
    assert match, result.stdout
    w, b = map(float, match.groups())
    assert abs(w - 2) < 0.1 and abs(b - 1) < 0.1


@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_import_has_no_side_effects(script, capsys):
    load_script(script)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("script", ALL_SCRIPTS)
def test_help_lists_every_hyperparameter(script):
    result = run_ok(script, "--help")
    for name in hyperparameters(REPO / script):
        assert f"--{name}=" in result.stdout


@pytest.mark.parametrize(
    "script, arg",
    [
        ("simplemodel.py", "--nope=1"),
        ("simplemodel_with_comments.py", "--max_new_tokens=abc"),
        ("simplebigrammodel.py", "--max_iters=abc"),
        ("simplebigrammodel_with_comments.py", "max_iters=5"),
        ("simplebigrammodel_torch.py", "--max_iters=abc"),
        ("pytorch_5min.py", "--nope=1"),
        ("bench_bigram.py", "--runs=abc"),
    ],
)
def test_bad_override_is_a_one_line_error(script, arg):
    result = run_script(script, arg)
    assert_clean_error(result, code=2)
    assert len(result.stderr.strip().splitlines()) == 1
    for name in hyperparameters(REPO / script):
        assert name in result.stderr


@pytest.mark.parametrize(
    "script, arg, named",
    [
        ("simplemodel.py", "--prompt=ZZ", "Z"),
        ("simplemodel_with_comments.py", "--prompt=春Q", "Q"),
        ("simplemodel.py", "--prompt=", "--prompt 需要一个非空的值"),
        ("simplebigrammodel.py", "--prompts=春江,ZZ", "Z"),
        ("simplebigrammodel_with_comments.py", "--prompts=Q春", "Q"),
        ("simplebigrammodel_torch.py", "--prompts=春江,ZZ", "Z"),
    ],
)
def test_bad_prompt_is_refused(script, arg, named, tiny_corpus):
    result = run_script(script, f"--data_path={tiny_corpus}", arg)
    assert_clean_error(result)
    assert named in result.stderr
    assert "计数用时" not in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="这台机器真的有 CUDA")
@pytest.mark.parametrize("script", TORCH_SCRIPTS)
def test_unavailable_device_is_refused(script):
    # pick_device 在读数据之前就检查设备，所以不需要准备语料
    result = run_script(script, "--device=cuda")
    assert_clean_error(result, code=2)
    assert "cuda" in result.stderr
