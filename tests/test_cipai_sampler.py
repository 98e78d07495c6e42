"""babygpt_sample_with_cipai.py 和 evaluate_format.py 的测试：
随机初始化的小模型在掩码下写出的词，和要求的体式一字不差（几个词牌、几个种子，开不开 KV 缓存都一样）；
贪心解码时开不开缓存写出同样的字；命令行上的一整套错误输入只给一行中文、退出码 2（交互模式则接着问）；
评估脚本在照抄的词上给出 1.0，把一个句段加长一个字就是 0.0。不留下任何进程和文件（都在 tmp_path 里）。"""
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

import cipai
import common
from conftest import assert_clean_error, load_script, run_script

SAMPLER = load_script("babygpt_sample_with_cipai.py")
EVALUATE = load_script("evaluate_format.py")
POOL = "春花秋月何时了往事知多少小楼昨夜又东风故国不堪回首明中雕栏玉砌应犹在只是朱颜改问君能有几愁恰似一江水向流"
# 词牌名 -> 紧凑写法的体式（数字是字数，/ 是换行），每种写 3 首，都算有据可查
FORMS = {
    "浣溪沙": ["7。/7。/7。/7，7。/7。"],
    "小令": ["5，5。/7。", "5，7。/5。"],  # 两种体式：编号 0 和 1
    "满江红": ["4，3、4。/3、4，4。/7，7。"],
    "问调": ["5？/7！/3，3。"],  # 要用“！”：命令行测试里的检查点词表故意没有它
    "菩萨蛮": ["7。/7。/5。/5。/5。/5。/5。/5。"],
    cipai.LOST_NAME: ["7。"],
}
AUTHORS = ["张三", "李四", "王五"]


def body_of(compact, offset=0):
    """按紧凑写法造一首正文：每个字从 POOL 里依次取（offset 让各首用字不同）。"""
    out, i = [], offset
    for number, mark in re.findall(r"(\d+)([^\d]+)", compact):
        out.append("".join(POOL[(i + j) % len(POOL)] for j in range(int(number))) + mark.replace("/", "\n"))
        i += int(number)
    return "".join(out).rstrip("\n") + "\n"


def make_corpus():
    poems = [f"{name} {AUTHORS[k]}\n{body_of(compact, 3 * k + i)}"
             for name, forms in FORMS.items() for i, compact in enumerate(forms) for k in range(3)]
    poems += [f"孤调 张三\n{body_of('3，3。')}"] * 2  # 只有 2 首：没有有据可查的体式
    return "\n".join(poems)


CORPUS = make_corpus()
TABLE = cipai.load(CORPUS)
PLAIN = cipai.body_chars(TABLE)
TOKENIZER = SAMPLER.Tokenizer(CORPUS)
BLOCK_SIZE = 16  # 比整首词短：生成到一半窗口开始滑动，缓存作废，这条路也要测到


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """这么小的模型，多线程只会互相等；测完恢复原来的线程数，不影响别的测试。"""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_model(vocab_size, seed=0):
    torch.manual_seed(seed)
    return SAMPLER.BabyGPT(vocab_size=vocab_size, n_embd=16, n_head=2, n_layer=2, block_size=BLOCK_SIZE, dropout=0.0).eval()


def constrained(model, name, seed, prompt="", k=0, **kwargs):
    """按词牌 name 的第 k 种体式写一首，返回标题行之后的全部文字（提示词加生成的字）。"""
    masks = SAMPLER.form_masks(cipai.get_form(TABLE, name, k), prompt, TOKENIZER, PLAIN)
    context = torch.tensor([TOKENIZER.encode(f"{name} 张三\n{prompt}")])
    torch.manual_seed(seed)
    idx = model.generate(context, len(masks), masks=masks, **kwargs)
    assert idx.shape[1] == context.shape[1] + len(masks)
    return prompt + TOKENIZER.decode(idx[0, context.shape[1]:].tolist())


def test_check_the_test_corpus():
    assert cipai.format_form(TABLE["满江红"].main_form) == FORMS["满江红"][0]
    assert [cipai.format_form(f) for f in TABLE["小令"].attested()] == FORMS["小令"]
    assert " " not in PLAIN and not set(cipai.MARKS + "\n") & PLAIN


@pytest.mark.parametrize("use_kv_cache", [True, False], ids=["缓存", "不用缓存"])
@pytest.mark.parametrize("name, k", [("浣溪沙", 0), ("小令", 1), ("满江红", 0), ("问调", 0), ("菩萨蛮", 0)])
def test_random_model_writes_exactly_the_requested_form(name, k, use_kv_cache):
    model = random_model(TOKENIZER.vocab_size)
    form = cipai.get_form(TABLE, name, k)
    for seed in range(3):
        for top_k in (None, 3):
            text = constrained(model, name, seed, k=k, temperature=1.5, top_k=top_k, use_kv_cache=use_kv_cache)
            assert text.endswith("\n\n") and "\n\n" not in text[:-2]  # 写完最后一句再空一行，就停
            assert cipai.poem_form(text) == form
            assert cipai.match(TABLE, name, text).attested
            assert all(ch in PLAIN for ch in text if cipai.is_plain(ch))  # 没有空格、没有只在标题行里的字


def test_prompt_is_continued_and_counts_toward_the_form():
    model = random_model(TOKENIZER.vocab_size, seed=1)
    text = constrained(model, "浣溪沙", 0, prompt="春花秋月何时了。\n小楼", temperature=1.0)
    assert text.startswith("春花秋月何时了。\n小楼") and cipai.poem_form(text) == TABLE["浣溪沙"].main_form


def test_greedy_output_is_the_same_with_or_without_the_cache():
    # top_k=1：掩码若在 top-k 之后才加，留下的那一个字多半不合格，就抽不出字了；所以这也证明了先掩码、后 top-k
    model = random_model(TOKENIZER.vocab_size, seed=2)
    for name in ("浣溪沙", "满江红"):
        cached = constrained(model, name, 0, top_k=1, use_kv_cache=True)
        plain = constrained(model, name, 5, top_k=1, use_kv_cache=False)
        assert cached == plain and cipai.poem_form(cached) == TABLE[name].main_form
        context = torch.tensor([TOKENIZER.encode(f"{name} 张三\n")])
        free = model.generate(context, len(cached), top_k=1)  # 不受约束的贪心解码写的是别的东西
        assert TOKENIZER.decode(free[0, context.shape[1]:].tolist()) != cached


def test_masks_allow_exactly_one_character_at_marks_and_end_the_poem():
    form = TABLE["小令"].main_form  # 5，5。/7。
    masks = SAMPLER.form_masks(form, "春花", TOKENIZER, PLAIN)
    assert masks.shape == (len(cipai.form_slots(form)) - 2 + 1, TOKENIZER.vocab_size)
    allowed = [{TOKENIZER.itos[i] for i in row.nonzero()[:, 0].tolist()} for row in masks]
    assert allowed[0] == allowed[2] == PLAIN & set(TOKENIZER.chars)
    assert allowed[3] == {"，"} and allowed[9] == {"。"} and allowed[10] == {"\n"}
    assert allowed[-2:] == [{"\n"}, {"\n"}]  # 最后一句的换行，再空一行
    with pytest.raises(cipai.CipaiError, match="没有“！”"):
        SAMPLER.form_masks(TABLE["问调"].main_form, "", SAMPLER.Tokenizer(CORPUS.replace("！", "")), PLAIN)
    with pytest.raises(cipai.CipaiError, match="应该是“，”"):
        SAMPLER.form_masks(form, "春花秋月何时", TOKENIZER, PLAIN)


def test_request_builds_the_header_and_picks_an_author_from_the_seed(monkeypatch):
    monkeypatch.setattr(SAMPLER, "table", TABLE, raising=False)
    monkeypatch.setattr(SAMPLER, "plain_chars", PLAIN, raising=False)
    monkeypatch.setattr(SAMPLER, "prompt", "春花")
    text, masks = SAMPLER.request("小令 李白", TOKENIZER)
    assert text == "小令 李白\n春花" and len(masks) == len(cipai.form_slots(TABLE["小令"].main_form)) - 1
    picked = []
    for _ in range(2):
        torch.manual_seed(7)
        picked.append(SAMPLER.request("小令", TOKENIZER)[0])
    assert picked[0] == picked[1] and picked[0].split("\n")[0].split(" ")[1] in AUTHORS
    with pytest.raises(cipai.CipaiError, match="不是一个词牌"):
        SAMPLER.request(cipai.LOST_NAME, TOKENIZER)


def test_evaluate_format_splits_poems_so_copied_poems_match_and_lengthened_ones_do_not():
    for name, entry in TABLE.items():
        if name in (cipai.LOST_NAME, "孤调"):
            continue
        for poem in entry.poems:
            body, ended = EVALUATE.split_poem("\n".join(poem.lines) + "\n\n" + "下一首 某人\n")
            assert ended and cipai.match(TABLE, name, body).attested
            longer = "春" + body
            assert not cipai.match(TABLE, name, longer).attested
    assert EVALUATE.split_poem("\n春江") == ("", True)  # 标题行之后直接空行：一首空词
    assert EVALUATE.split_poem("春江。\n潮水") == ("春江。\n潮水", False)  # 没写到空行：全部文字都算


@pytest.mark.parametrize("script", ["babygpt_sample_with_cipai.py", "evaluate_format.py"])
def test_import_reads_no_data(script, monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("导入脚本时读了语料")

    monkeypatch.setattr(common, "read_text", refuse)
    monkeypatch.chdir(tmp_path)
    assert hasattr(load_script(script), "BabyGPT" if "sample" in script else "evaluate")
    assert not list(tmp_path.iterdir())


# ---------------- 命令行：小检查点 + 小语料，全部在 tmp_path 里 ----------------

@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """小语料，以及一个随机初始化、词表里故意没有“！”的检查点（键和 v11 写出的一样）。"""
    folder = tmp_path_factory.mktemp("cipai_cli")
    corpus = folder / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    chars = sorted(set(CORPUS) - {"！"})
    args = dict(vocab_size=len(chars), n_embd=16, n_head=2, n_layer=1, block_size=BLOCK_SIZE, dropout=0.0)
    torch.manual_seed(0)
    model = SAMPLER.BabyGPT(**args)
    torch.save({"model": model.state_dict(), "model_args": args, "chars": chars, "iter": 0, "best_val_loss": 9.0},
               folder / "c.pt")
    return folder


BAD = {
    "unknown": (["--cipai=浣溪纱"], "最接近的有：浣溪沙"),
    "no_form": (["--cipai=孤调"], "没有出现至少 3 次的体式"),
    "form_index": (["--cipai=小令", "--form_index=2"], "0 到 1 之间"),
    "long_prompt": (["--cipai=小令", "--prompt=春花秋月何时"], "第 6 个字符不合体式：这里应该是“，”"),
    "punctuation": (["--cipai=小令", "--prompt=春，花"], "第 2 个字符“，”不合体式"),
    "vocab_mark": (["--cipai=问调"], "检查点的词表里没有“！”"),
    "vocab_prompt": (["--cipai=小令", "--prompt=李白"], "不在词表里"),
}
OK_ARGS = ["--cipai=小令", "--form_index=1", "--prompt=春花", "--author=春风", "--num_samples=2"]
REPL_INPUT = f"浣溪纱\n孤调\n{cipai.LOST_NAME}\n\n小令 李四\n"


@pytest.fixture(scope="module")
def cli(files):
    """把全部命令行调用并行地跑完（每个子进程一个线程），返回 {名字: CompletedProcess}。"""
    common_args = [f"--checkpoint={files / 'c.pt'}", f"--data_path={files / 'corpus.txt'}"]
    env = {"OMP_NUM_THREADS": "1"}
    jobs = {name: ("babygpt_sample_with_cipai.py", [*common_args, *args], None) for name, (args, _) in BAD.items()}
    jobs["ok"] = ("babygpt_sample_with_cipai.py", [*common_args, *OK_ARGS], None)
    jobs["repl"] = ("babygpt_sample_with_cipai.py", common_args, REPL_INPUT)
    report = files / "format_c.md"
    jobs["evaluate"] = ("evaluate_format.py", [*common_args, "--n_cipai=3", "--poems_per_cipai=3", "--max_new_tokens=30",
                                               f"--output={report}"], None)
    jobs["evaluate_vocab"] = ("evaluate_format.py", [*common_args, "--n_cipai=10", f"--output={files / 'no.md'}"], None)

    def run(item):
        name, (script, args, stdin) = item
        return name, run_script(script, *args, stdin=stdin, env=env, timeout=120)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(pool.map(run, jobs.items()))
    results["report"] = report.read_text(encoding="utf-8") if report.exists() else ""
    results["no_report"] = not (files / "no.md").exists()
    return results


@pytest.mark.parametrize("name", BAD)
def test_bad_input_is_one_chinese_line_and_exit_code_2(cli, name):
    result = cli[name]
    assert_clean_error(result, 2)
    assert BAD[name][1] in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_one_shot_writes_the_form_with_header_prompt_and_author(cli):
    result = cli["ok"]
    assert result.returncode == 0, result.stderr
    poems = re.findall(r"--- 小令 ---\n(.*?)（(\d+) 个字", result.stdout, re.S)
    assert len(poems) == 2
    form = cipai.get_form(TABLE, "小令", 1)
    for text, steps in poems:
        header, body = text.split("\n", 1)
        assert header == "小令 春风" and body.startswith("春花") and body.endswith("\n\n")
        assert cipai.poem_form(body) == form and int(steps) == len(body) - 2


def test_repl_reports_errors_and_keeps_going(cli):
    result = cli["repl"]
    assert result.returncode == 0 and "Traceback" not in result.stderr
    assert result.stderr.count("错误：") == 4
    for expected in ("最接近的有：浣溪沙", "没有出现至少 3 次的体式", "不是一个词牌", "请输入一个词牌名"):
        assert expected in result.stderr
    text = result.stdout.split("--- 小令 李四 ---\n")[1]
    header, body = text.split("（")[0].split("\n", 1)
    assert header == "小令 李四" and cipai.poem_form(body) == TABLE["小令"].main_form
    assert result.stdout.rstrip().endswith("再见。")


def test_evaluate_format_writes_the_report(cli):
    result = cli["evaluate"]
    assert result.returncode == 0, result.stderr
    report = cli["report"]
    assert "| 受约束（主体式） | 9 | 1.000 | 1.000 | 0.00 | 9/9 | 1.000 |" in report
    assert "| 语料自身（同样 3 个词牌） | 12 | 1.000 |" in report  # 小令 6 首、浣溪沙 3 首、满江红 3 首
    assert "- 命令：`python evaluate_format.py --checkpoint=" in report and "- 硬件：" in report
    assert re.search(r"^\| 不受约束 \| 9 \| [\d.]+ \|", report, re.M)
    for name in ("小令", "浣溪沙", "满江红"):
        assert f"| {name} | {cipai.format_form(TABLE[name].main_form)} |" in report
    # 词表里没有“！”：轮到问调时只给一行中文错误，也不写出半份结果
    assert_clean_error(cli["evaluate_vocab"], 2)
    assert "没有“！”" in cli["evaluate_vocab"].stderr and cli["no_report"]
