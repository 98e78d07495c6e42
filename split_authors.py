"""
split_authors.py —— 训练集和验证集里都是谁的词：像 BabyGPT 脚本一样按字数把文本切成前 train_ratio 和其余两份，
统计每一份里各位作者的词占多少首、多少个字，列出前 top 位；再看验证集里署名的作者有几位也在训练集里出现过，
以及含有 keyword 这个字的词在两份里各占多少。它说明了为什么验证损失从头到尾都比训练损失高：两份文本的作者很不一样。
用法：python split_authors.py
笔记：notes/babygpt_v10_dropout.md
"""
from collections import Counter

from common import apply_overrides, read_text

# ==================== 超参数（可用 --name=value 覆盖） ====================
data_path = "ci.txt"  # 要统计的文本（UTF-8），格式同 ci.txt：每首词以“词牌 作者”一行开头，词与词之间空一行
train_ratio = 0.9  # 前 90% 的字算训练集，其余算验证集，和 BabyGPT 脚本的切法一样，取值 (0, 1)
top = 5  # 每一份列出词最多的前几位作者，取值 [1, ∞)
keyword = "寿"  # 再数一数正文或标题里含有这个字的词在两份里各占多少
# ==========================================================================


def split_poems(text, train_ratio):
    """把文本切成一首首词，返回 (训练集的词, 验证集的词, 分界处的字下标)。
    每首词记成 (作者, 它在训练集里的字数, 它在验证集里的字数, 全文)。一首词按它的标题行落在哪一份就算哪一份的词；
    跨过分界的那一首，它的字按分界拆开算，所以两份的字数加起来正好是全文的字数。"""
    n = int(train_ratio * len(text))  # 和 BabyGPT 脚本一样：data[:n] 训练，data[n:] 验证
    train, val, start = [], [], 0
    for poem in text.split("\n\n"):
        end = min(start + len(poem) + 2, len(text))  # 连同后面的空行一起算
        if poem.strip():
            title = poem.split("\n", 1)[0]
            author = title.rsplit(" ", 1)[-1] if " " in title else "（没有署名）"
            record = (author, max(0, min(end, n) - start), max(0, end - max(start, n)), poem)
            (train if start < n else val).append(record)
        start = end
    return train, val, n


def pad(text, width, right=False):
    """按显示宽度补空格（汉字占两格），让表格对齐；right=True 时靠右。"""
    spaces = " " * max(0, width - sum(2 if ord(c) > 0x2E80 else 1 for c in text))
    return spaces + text if right else text + spaces


def percent(part, whole):
    """part 占 whole 的百分比，保留一位小数。"""
    return f"{100 * part / whole:.1f}%" if whole else "—"


def report(name, poems, everyone, top, keyword):
    """打印一份数据里词最多的前 top 位作者（首数按这一份的词算，字数按这一份里的每个字算），以及含 keyword 的词占多少。"""
    column = 1 if name == "训练集" else 2
    by_poems = Counter(poem[0] for poem in poems)
    by_chars = Counter()
    for poem in everyone:
        by_chars[poem[0]] += poem[column]
    chars = sum(by_chars.values())
    print(f"{name}：{len(poems):,} 首词，{chars:,} 个字，{len(by_poems):,} 位作者")
    print("  " + pad("作者", 12) + "".join(pad(h, w, right=True) for h, w in [("首数", 8), ("占首数", 10), ("字数", 12), ("占字数", 10)]))
    for author, count in by_poems.most_common(top):
        print(f"  {pad(author, 12)}{count:>8,}{percent(count, len(poems)):>10}"
              f"{by_chars[author]:>12,}{percent(by_chars[author], chars):>10}")
    with_keyword = sum(keyword in poem[3] for poem in poems)
    print(f"  含“{keyword}”字的词：{with_keyword:,} 首，占 {percent(with_keyword, len(poems))}")
    return by_poems


if __name__ == "__main__":
    apply_overrides(globals())
    text = read_text(data_path)
    train, val, n = split_poems(text, train_ratio)
    print(f"文本 {len(text):,} 个字；train_ratio={train_ratio}：前 {n:,} 个字是训练集，后 {len(text) - n:,} 个字是验证集")
    print("（一首词按它的标题行落在哪一份算；跨过分界的那一首，字数按分界拆开算）\n")
    train_authors = report("训练集", train, train + val, top, keyword)
    print()
    val_authors = report("验证集", val, train + val, top, keyword)
    named = [author for author in val_authors if author != "无名氏"]
    seen = [author for author in named if author in train_authors]
    print(f"\n验证集里署名（不是无名氏）的作者 {len(named):,} 位，其中 {len(seen):,} 位在训练集里也有词")
    print(f"无名氏的词：占训练集的 {percent(train_authors['无名氏'], len(train))}，"
          f"占验证集的 {percent(val_authors['无名氏'], len(val))}")
