"""
simplemodel.py —— 最简单的语言模型：数一数整篇文本里每个字后面跟过哪些字、各跟过几次，
再从提示词出发，照着这些次数一个字一个字地随机往下写（bigram，二元模型）。
没有类，没有分词器，不用任何第三方库，只有一张“字典套字典”的转移表。
笔记：notes/simplemodel.md
"""
import random
import sys
import time

from common import apply_overrides, read_text

# ==================== 超参数（可用 --name=value 覆盖） ====================
prompt = "春江"  # 生成时用的提示词
max_new_tokens = 100  # 提示词后面生成多少个字，取值 [1, ∞)
data_path = "ci.txt"  # 训练文本（UTF-8）；默认的 ci.txt 不存在时会自动构建
seed = 42  # 随机种子，让每次运行的结果都一样
# ==========================================================================


if __name__ == "__main__":
    apply_overrides(globals())
    random.seed(seed)
    text = read_text(data_path)
    vocab = sorted(set(text))
    unknown = sorted(set(prompt) - set(vocab))
    if unknown:
        sys.exit(f"错误：这些字不在词表里：{'、'.join(unknown)}（词表来自训练文本）")
    print(f"文本 {len(text):,} 个字，词表 {len(vocab):,} 个字")

    # transition[a][b] 是字 a 后面紧跟字 b 的次数
    start = time.time()
    transition = {}
    for a, b in zip(text, text[1:]):
        followers = transition.setdefault(a, {})
        followers[b] = followers.get(b, 0) + 1
    print(f"计数用时 {time.time() - start:.3f} 秒（{len(text) - 1:,} 对）")

    out = prompt
    for _ in range(max_new_tokens):
        followers = transition.get(out[-1])
        if followers:
            # 跟得越多的字越容易被抽中：次数就是抽签的权重
            out += random.choices(list(followers), weights=list(followers.values()))[0]
        else:
            # 这个字只在文本末尾出现过，后面没有字可学，只好在整个词表里均匀地随便挑
            out += random.choice(vocab)
    print(f"--- {prompt} ---")
    print(out)
