"""
simplebigrammodel_torch.py —— 同一个计数版 bigram，换成 PyTorch 张量：不再用 Python 循环一对一对地数，
而是一次取出全部 max_iters × batch_size 段文本，用一次 index_add_ 数完所有字对（向量化）。
笔记：notes/simplebigrammodel_torch.md
"""
import sys
import time

import torch

from common import apply_overrides, pick_device, read_text

# ==================== 超参数（可用 --name=value 覆盖） ====================
batch_size = 32  # 每一步随机抽多少段文本，取值 [1, ∞)
block_size = 8  # 每段文本有多少个字，取值 [1, ∞)
max_iters = 8000  # 训练（计数）多少步，取值 [1, ∞)
max_new_tokens = 100  # 每个提示词后面生成多少个字，取值 [1, ∞)
prompts = ["春江", "往事"]  # 生成时用的提示词，命令行里用逗号分隔
data_path = "ci.txt"  # 训练文本（UTF-8）；默认的 ci.txt 不存在时会自动构建
device = "auto"  # 计算设备：auto 会依次尝试 cuda、mps、cpu，取值 {auto, cpu, cuda, mps}
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


def get_batch(data, batch_size, block_size, device):
    """随机取 batch_size 段长 block_size 的文本；y 是 x 向右错开一位，即每个字的“下一个字”。"""
    ix = torch.randint(len(data) - block_size, (batch_size,))  # (B,)
    # unfold 把文本看成所有长 block_size+1 的窗口（不复制数据），再按 ix 一次取出 B 个窗口
    windows = data.unfold(0, block_size + 1, 1)[ix]  # (B, T+1)
    x, y = windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)
    return x.to(device), y.to(device)


class BigramLanguageModel:
    """计数版 bigram：transition[a][b] 是字 a 后面紧跟字 b 的次数。"""

    def __init__(self, vocab_size, device):
        self.vocab_size = vocab_size
        self.transition = torch.zeros(vocab_size, vocab_size, dtype=torch.long, device=device)  # (V, V)

    def count(self, idx, targets):
        """训练：把每一对 (当前字, 下一个字) 记一次数。"""
        # 字对 (a, b) 编成一个数 a*V+b，也就是它在展平的 transition 里的位置
        pairs = (idx * self.vocab_size + targets).flatten()  # (B*T,)
        # index_add_ 把每个字对在 transition 里对应的格子加 1，一次完成全部 B*T 对
        ones = torch.ones_like(pairs)  # (B*T,)
        self.transition.view(-1).index_add_(0, pairs, ones)

    def forward(self, idx):
        # 返回每个位置上“下一个字”的计数，它扮演后面神经网络里 logits 的角色
        return self.transition[idx]  # (B, T, V)

    def generate(self, idx, max_new_tokens):
        for _ in range(max_new_tokens):
            counts = self.forward(idx[:, -1:])[:, -1, :]  # (B, V)
            # 从没在训练中出现过的字没有任何计数，这时退回到均匀随机
            weights = (counts + (counts.sum(dim=-1, keepdim=True) == 0)).float()  # (B, V)
            idx = torch.cat((idx, torch.multinomial(weights, num_samples=1)), dim=1)  # (B, T+1)
        return idx


if __name__ == "__main__":
    apply_overrides(globals())
    device = pick_device(device)
    torch.manual_seed(seed)
    text = read_text(data_path)
    tokenizer = Tokenizer(text)
    try:
        prompt_ids = [tokenizer.encode(p) for p in prompts]
    except ValueError as e:
        sys.exit(f"错误：{e}")
    data = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    if len(data) <= block_size:
        sys.exit(f"错误：训练文本只有 {len(data)} 个字，必须比 block_size={block_size} 长。")
    print(f"文本 {len(data):,} 个字，词表 {tokenizer.vocab_size:,} 个字")

    model = BigramLanguageModel(tokenizer.vocab_size, device)
    start = time.time()
    # 不再一步一步地循环：max_iters 步的全部批次一次取出、一次数完
    xb, yb = get_batch(data, max_iters * batch_size, block_size, device)
    model.count(xb, yb)
    if device == "cuda":
        torch.cuda.synchronize()  # GPU 上的运算是异步的：等它真正算完再停表
    print(f"计数用时 {time.time() - start:.3f} 秒（{max_iters} 步 × {batch_size} × {block_size} 对）")

    for prompt, ids in zip(prompts, prompt_ids):
        print(f"--- {prompt} ---")
        context = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
        print(tokenizer.decode(model.generate(context, max_new_tokens)[0].tolist()))
