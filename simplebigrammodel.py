"""
simplebigrammodel.py —— 把 bigram 写成“分词器 + 模型”的样子：Tokenizer 负责字与编号互换，
BigramLanguageModel 用随机抽取的 (batch_size, block_size) 批次数出“下一个字”的次数，再按次数生成。
纯 Python，不用任何库；后面所有脚本都沿用这个结构。
笔记：notes/simplebigrammodel.md
"""
import random
import sys
import time

from common import apply_overrides, read_text

# ==================== 超参数（可用 --name=value 覆盖） ====================
batch_size = 32  # 每一步随机抽多少段文本，取值 [1, ∞)
block_size = 8  # 每段文本有多少个字，取值 [1, ∞)
max_iters = 8000  # 训练（计数）多少步，取值 [1, ∞)
max_new_tokens = 100  # 每个提示词后面生成多少个字，取值 [1, ∞)
prompts = ["春江", "往事"]  # 生成时用的提示词，命令行里用逗号分隔
data_path = "ci.txt"  # 训练文本（UTF-8）；默认的 ci.txt 不存在时会自动构建
seed = 42  # 随机种子，让每次运行的结果都一样
# ==========================================================================


class Tokenizer:
    """字符级分词器：每个不同的字对应一个整数编号。"""

    def __init__(self, text):
        self.chars = sorted(set(text))
        self.vocab_size = len(self.chars)
        self.stoi = {ch: i for i, ch in enumerate(self.chars)}
        self.itos = {i: ch for i, ch in enumerate(self.chars)}

    def encode(self, s):
        unknown = sorted(set(s) - set(self.stoi))
        if unknown:
            raise ValueError(f"这些字不在词表里：{'、'.join(unknown)}（词表来自训练文本）")
        return [self.stoi[c] for c in s]

    def decode(self, ids):
        return "".join(self.itos[i] for i in ids)


def get_batch(data, batch_size, block_size):
    """随机取 batch_size 段长 block_size 的文本；y 是 x 向右错开一位，即每个字的“下一个字”。"""
    ix = [random.randint(0, len(data) - block_size - 1) for _ in range(batch_size)]
    x = [data[i:i + block_size] for i in ix]  # (B, T)
    y = [data[i + 1:i + block_size + 1] for i in ix]  # (B, T)
    return x, y


class BigramLanguageModel:
    """计数版 bigram：transition[a][b] 是字 a 后面紧跟字 b 的次数。"""

    def __init__(self, vocab_size):
        self.vocab_size = vocab_size
        self.transition = [[0] * vocab_size for _ in range(vocab_size)]  # (V, V)

    def count(self, idx, targets):
        """训练：把每一对 (当前字, 下一个字) 记一次数。"""
        for row_x, row_y in zip(idx, targets):
            for a, b in zip(row_x, row_y):
                self.transition[a][b] += 1

    def forward(self, idx):
        # 返回每个位置上“下一个字”的计数，它扮演后面神经网络里 logits 的角色
        return [[self.transition[a] for a in row] for row in idx]  # (B, T, V)

    def generate(self, idx, max_new_tokens):
        for _ in range(max_new_tokens):
            counts = self.forward([idx[-1:]])[0][-1]  # (V,)
            # 从没在训练中出现过的字没有任何计数，这时退回到均匀随机
            weights = counts if any(counts) else None
            idx = idx + random.choices(range(self.vocab_size), weights=weights)
        return idx


if __name__ == "__main__":
    apply_overrides(globals())
    random.seed(seed)
    text = read_text(data_path)
    tokenizer = Tokenizer(text)
    try:
        prompt_ids = [tokenizer.encode(p) for p in prompts]
    except ValueError as e:
        sys.exit(f"错误：{e}")
    data = tokenizer.encode(text)
    if len(data) <= block_size:
        sys.exit(f"错误：训练文本只有 {len(data)} 个字，必须比 block_size={block_size} 长。")
    print(f"文本 {len(data):,} 个字，词表 {tokenizer.vocab_size:,} 个字")

    model = BigramLanguageModel(tokenizer.vocab_size)
    start = time.time()
    for step in range(max_iters):
        xb, yb = get_batch(data, batch_size, block_size)
        model.count(xb, yb)
    print(f"计数用时 {time.time() - start:.3f} 秒（{max_iters} 步 × {batch_size} × {block_size} 对）")

    for prompt, ids in zip(prompts, prompt_ids):
        print(f"--- {prompt} ---")
        print(tokenizer.decode(model.generate(ids, max_new_tokens)))
