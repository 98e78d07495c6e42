"""
evaluate_format.py —— 量一个检查点写的词合不合词牌的格式：不受约束地写、按主体式受约束地写，两者并排，旁边是语料自己的合格率。
对首数最多的 n_cipai 个词牌（不含失调名），每个写 poems_per_cipai 首：给模型标题行“词牌 作者”（作者写过这个词牌），
写到空一行（这首词结束）或 max_new_tokens 个字为止，再用 cipai.match 判断合不合格式。结果写进 notes/format_<检查点>.md。
用法：python evaluate_format.py --checkpoint=babygpt.pt --n_cipai=10 --poems_per_cipai=5
笔记：notes/babygpt_sample_with_cipai.md
"""
import random
import sys
import time
from pathlib import Path

import torch

from babygpt_sample_with_cipai import form_masks, load_checkpoint
from cipai import LOST_NAME, body_chars, format_form, get_form, learn_forms, match, match_rate, parse_poems, top_cipai
from common import apply_overrides, hardware, pick_device, read_text

# ==================== 超参数（可用 --name=value 覆盖） ====================
checkpoint = "babygpt.pt"  # 要评估的检查点，由 v11–v20 中任何一个训练脚本写出
n_cipai = 10  # 评估首数最多的几个词牌（不含失调名和没有有据可查体式的），取值 [1, ∞)
poems_per_cipai = 5  # 每个词牌写几首；不受约束和受约束各写这么多首，标题行一样，取值 [1, ∞)
max_new_tokens = 300  # 不受约束时每首最多写多少个字；写到空一行就停，取值 [1, ∞)
temperature = 0.8  # 温度：<1 更保守，>1 更发散，取值 (0, ∞)
top_k = 200  # 只在概率最高的 top_k 个字里抽样，取值 [1, ∞)
min_count = 3  # 一种体式在同一词牌下至少出现几次才算有据可查，取值 [1, ∞)
shown = 3  # 结果里附几首样例（不受约束和受约束各几首），取值 [0, ∞)
device = "auto"  # 计算设备：auto 会依次尝试 cuda、mps、cpu，取值 {auto, cpu, cuda, mps}
seed = 42  # 随机种子：决定挑哪些作者和写出什么字
data_path = "ci.txt"  # 语料：从它学出词牌的体式和作者，也用它算语料自身的合格率
output = ""  # 结果写到哪个文件；留空则是 notes/format_<检查点文件名去掉 .pt>.md
# ==========================================================================

MODES = ("不受约束", "受约束（主体式）")


class AllEnded(Exception):
    """一批里每首都写到了空行：用来提前结束 generate。"""


def split_poem(generated):
    """生成的文字（接在标题行的换行后面）-> (正文, 是否写到了空行)。写到空行时只要空行之前的部分。"""
    text = "\n" + generated  # 标题行以换行结束：紧接着再来一个换行就是一首空词
    ended = "\n\n" in text
    return text.split("\n\n", 1)[0].lstrip("\n"), ended


def write_batch(model, tokenizer, headers, masks=None, wishes=None):
    """每个标题行写一首，一批一起写（标题行必须一样长），返回生成的文字列表。不受约束时全都写到空行就提前停。
    受约束时顺便记下模型自己（加掩码之前）想写什么，追加到 wishes 里（见 record_wishes）。"""
    context = torch.tensor([tokenizer.encode(h) for h in headers], dtype=torch.long, device=device)  # (B, T)
    rows = [[] for _ in headers]

    def collect(idx_next):
        for row, token in zip(rows, idx_next[:, 0].tolist()):
            row.append(token)
        if masks is None and all(split_poem(tokenizer.decode(row))[1] for row in rows):
            raise AllEnded

    steps = max_new_tokens if masks is None else len(masks)
    recorded = []  # 每一步最后一个位置的 logits（加掩码之前），(B, vocab_size)
    hook = model.lm_head.register_forward_hook(lambda module, inputs, output: recorded.append(output[:, -1, :]))
    try:
        model.generate(context, steps, temperature, top_k, on_token=collect, use_kv_cache=True,
                       masks=None if masks is None else masks.to(device))
    except AllEnded:
        pass
    finally:
        hook.remove()
    if masks is not None and wishes is not None:
        record_wishes(recorded, masks.to(device), wishes)
    return [tokenizer.decode(row) for row in rows]


def record_wishes(recorded, masks, wishes):
    """只许写一个字符（标点或换行）的那些步：记下它在模型自己的 logits 里排第几（0 是第一选择）；
    写字的那些步：记下模型的第一选择是不是不许写的字符（标点、换行……）。"""
    for step, logits in enumerate(recorded):
        allowed = masks[step]  # (vocab_size,)
        if allowed.sum() == 1:
            wishes["mark"] += (logits > logits[:, allowed]).sum(dim=-1).tolist()
        else:
            wishes["plain"] += (~allowed[logits.argmax(dim=-1)]).tolist()


def pick_headers(entry, count, rng):
    """随机挑 count 首这个词牌的词，用它们的作者（写得多的人更容易被挑中）写标题行“词牌 作者”；
    按长度分批返回：这个模型没有填充，一批里每一行必须一样长，而作者名大多是两三个字，所以一般只有两三批。"""
    batches = {}
    for _ in range(count):
        header = f"{entry.name} {rng.choice(entry.poems).author}\n"
        batches.setdefault(len(header), []).append(header)
    return list(batches.values())


def summarize(results):
    """[(Match, 是否写到空行, 是否按字数合格)] -> 五个数：合有据可查、合主体式、句段数差、写到空行、只比字数合有据可查。"""
    n = len(results)
    return (sum(m.attested for m, _, _ in results) / n, sum(m.main for m, _, _ in results) / n,
            sum(m.segment_diff for m, _, _ in results) / n, sum(e for _, e, _ in results), sum(l for _, _, l in results) / n)


def evaluate(model, tokenizer, table, entries):
    """对每个词牌、每种写法写 poems_per_cipai 首，返回 {(词牌, 写法): [(标题行, 生成的文字, Match, 写到空行, 只比字数合格)]}。"""
    rng, plain_chars, results, wishes = random.Random(seed), body_chars(table), {}, {"mark": [], "plain": []}
    for entry in entries:
        batches = pick_headers(entry, poems_per_cipai, rng)
        masks = form_masks(get_form(table, entry.name, 0, min_count), "", tokenizer, plain_chars)
        for mode in MODES:
            start, rows = time.time(), []
            for headers in batches:
                written = write_batch(model, tokenizer, headers, None if mode == MODES[0] else masks, wishes)
                for header, generated in zip(headers, written):
                    body, ended = split_poem(generated)
                    strict = match(table, entry.name, body, min_count)
                    lengths = match(table, entry.name, body, min_count, marks=False)
                    rows.append((header, generated, strict, ended, lengths is not None and lengths.attested))
            results[entry.name, mode] = rows
            print(f"{entry.name}\t{mode}\t合有据可查的体式 {sum(r[2].attested for r in rows)}/{len(rows)}"
                  f"\t（{time.time() - start:.1f} 秒）", flush=True)
    return results, wishes


def report(results, wishes, table, entries, info, seconds):
    """把结果写成 Markdown。"""
    names = [entry.name for entry in entries]
    poems = [p for entry in entries for p in entry.poems]
    corpus, corpus_lengths = match_rate(table, poems, min_count), match_rate(table, poems, min_count, marks=False)
    command = "python " + " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    lines = [
        f"# 格式评估：{Path(checkpoint).name}",
        "",
        "由 `evaluate_format.py` 写出，定义和解读见 [babygpt_sample_with_cipai.md](babygpt_sample_with_cipai.md)。",
        "",
        f"- 命令：`{command}`",
        f"- 检查点：{info}",
        f"- 硬件：{hardware()}，设备 {device}（见 [hardware.md](hardware.md)）；用时 {seconds:.0f} 秒",
        f"- 词牌：首数最多的 {len(names)} 个（不含{LOST_NAME}）：{'、'.join(names)}；每个 {poems_per_cipai} 首，"
        f"标题行“词牌 作者”里的作者按 seed={seed} 从这个词牌的词里随机挑",
        f"- 采样：temperature={temperature}，top_k={top_k}；不受约束时写到空一行或 {max_new_tokens} 个字为止，"
        "没写到空行的按写出的全部文字评估",
        f"- 合格：正文的体式（每个句段的字数、结束它的标点、换行）和这个词牌下出现至少 {min_count} 次的某种体式完全相同；"
        "“只比字数”只比各句段的字数",
        "",
        "## 总体",
        "",
        "| | 首数 | 合有据可查的体式 | 合主体式 | 句段数与主体式平均差 | 写到空行 | 只比字数：合有据可查 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in MODES:
        rows = [(r[2], r[3], r[4]) for name in names for r in results[name, mode]]
        attested, main, diff, ended, lengths = summarize(rows)
        lines.append(f"| {mode} | {len(rows)} | {attested:.3f} | {main:.3f} | {diff:.2f} | {ended}/{len(rows)} | "
                     f"{lengths:.3f} |")
    lines.append(f"| 语料自身（同样 {len(names)} 个词牌） | {corpus.n:,} | {corpus.attested:.3f} | {corpus.main:.3f} | "
                 f"{corpus.segment_diff:.2f} | — | {corpus_lengths.attested:.3f} |")
    lines += ["", "## 各词牌", "",
              "合有据可查的体式的比例；括号里是句段数与主体式的平均差。", "",
              "| 词牌 | 主体式 | 不受约束 | 受约束 | 语料自身 |", "|---|---|---:|---:|---:|"]
    for entry in entries:
        cells = []
        for mode in MODES:
            attested, _, diff, _, _ = summarize([(r[2], r[3], r[4]) for r in results[entry.name, mode]])
            cells.append(f"{attested:.2f}（{diff:.1f}）")
        own = match_rate(table, entry.poems, min_count)
        cells.append(f"{own.attested:.2f}（{own.segment_diff:.1f}）")
        lines.append(f"| {entry.name} | {format_form(entry.main_form)} | {' | '.join(cells)} |")
    ranks, plain = torch.tensor(wishes["mark"]), torch.tensor(wishes["plain"], dtype=torch.float)
    if len(ranks) and len(plain):
        share = {k: f"{(ranks < k).float().mean().item():.3f}" for k in (1, 5, top_k)}
        lines += ["", "## 受约束时，模型自己想写什么", "",
                  "按 logits 加掩码之前模型自己排的先后（和温度无关）。如果先 top-k 再加掩码，"
                  "必须写的那个字符不在前 k 个里的每一步，k 个候选都会被划掉，一个字也抽不出来；"
                  "top_k=1 时，模型第 1 选择不许写的每一步都是这样。", "",
                  f"- 只许写一个标点或换行的 {len(ranks):,} 步：那个字符是模型的第 1 选择 {share[1]}，"
                  f"在前 5 个里 {share[5]}，在前 {top_k} 个里 {share[top_k]}",
                  f"- 该写字的 {len(plain):,} 步：模型的第 1 选择是不许写的字符（多是标点或换行）{plain.mean().item():.3f}"]
    if shown:
        lines += ["", "## 样例", "", f"每种写法的前 {shown} 个词牌各一首；不受约束的只列到空行（或上限）为止。"]
        for mode in MODES:
            lines += ["", f"### {mode}"]
            for name in names[:shown]:
                header, generated, strict, ended, _ = results[name, mode][0]
                body, _ = split_poem(generated)
                verdict = "合有据可查的体式" if strict.attested else f"不合（句段数差 {strict.segment_diff}）"
                lines += ["", f"{name}：{verdict}{'' if ended else f'，{max_new_tokens} 个字内没写到空行'}", "",
                          "```text", (header + body).rstrip("\n"), "```"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    apply_overrides(globals())
    device = pick_device(device)
    torch.manual_seed(seed)
    model, tokenizer = load_checkpoint(checkpoint, device)
    model.eval()
    table = learn_forms(parse_poems(read_text(data_path)))
    entries = [e for e in top_cipai(table, len(table), exclude={LOST_NAME}) if e.attested(min_count)][:n_cipai]
    if not entries:
        print(f"错误：{data_path} 里没有哪个词牌的某种体式出现了至少 {min_count} 次，没法评估。", file=sys.stderr)
        sys.exit(2)
    start = time.time()
    try:
        results, wishes = evaluate(model, tokenizer, table, entries)
    except ValueError as e:  # 检查点的词表里缺标题行要用的字，或缺某个标点（CipaiError），没法写
        print(f"错误：{e}。检查点和 --data_path 要来自同一份语料。", file=sys.stderr)
        sys.exit(2)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)  # 只为了在结果里写明第几步、验证损失
    info = (f"{Path(checkpoint).name}，第 {int(ckpt['iter'])} 步，验证损失 {float(ckpt['best_val_loss']):.4f}，"
            f"词表 {tokenizer.vocab_size:,} 个字，block_size {model.block_size}，"
            f"参数量 {sum(p.numel() for p in model.parameters()):,}")
    path = Path(output or f"notes/format_{Path(checkpoint).stem}.md")
    text = report(results, wishes, table, entries, info, time.time() - start)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        print(f"错误：写不了 {path}（{e}）", file=sys.stderr)
        sys.exit(1)
    print(text.split("## 各词牌")[0].rstrip())
    print(f"\n已写入 {path}")
