"""
babygpt_v7_residual_connection.py —— 残差连接：x = x + 子层(x)，让信息和梯度可以绕过子层直达。
新概念：residual connection。有了这条“高速公路”，叠几层的网络才容易训练。
笔记：notes/babygpt_v7_residual_connection.md
"""
import math
import sys
import time

import torch
import torch.nn as nn
from torch.nn import functional as F

from common import apply_overrides, pick_device, read_text

# ==================== 超参数（可用 --name=value 覆盖） ====================
batch_size = 32  # 每一步随机抽多少段文本，取值 [1, ∞)
block_size = 8  # 每段文本有多少个字，也是模型最多能看到的上下文长度，取值 [1, ∞)
max_iters = 5000  # 训练多少步，取值 [1, ∞)
eval_interval = 200  # 每隔多少步估计一次训练集和验证集上的损失，取值 [1, ∞)
eval_iters = 100  # 估计损失时平均多少个批次，取值 [1, ∞)
learning_rate = 1e-2  # AdamW 的学习率，取值 (0, ∞)
n_embd = 32  # 每个字的向量有多少维，取值 [1, ∞)
n_head = 4  # 注意力头的个数，n_embd 必须能被它整除，取值 [1, ∞)
n_layer = 3  # 叠多少个 Transformer 块，取值 [1, ∞)
train_ratio = 0.9  # 前 90% 的文本用来训练，其余用来验证，取值 (0, 1)
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


class Head(nn.Module):
    """一个因果自注意力头：每个位置只能看到它自己和它前面的位置。"""

    def __init__(self, n_embd, head_size, block_size):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        # 下三角矩阵：第 t 行只有前 t+1 个位置是 1，用来挡住“未来”的字；
        # persistent=False：它随时能重新算出来，不必存进检查点
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)  # (B, T, head_size)
        q = self.query(x)  # (B, T, head_size)
        # 除以 √head_size：否则点积的方差随 head_size 增大，softmax 会变得过于尖锐
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (B, T, T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))  # (B, T, T)
        wei = F.softmax(wei, dim=-1)  # (B, T, T)，每一行是对上文各位置的注意力权重
        v = self.value(x)  # (B, T, head_size)
        return wei @ v  # (B, T, head_size)


class MultiHeadAttention(nn.Module):
    """n_head 个注意力头并行计算，输出在最后一维拼接回 n_embd 维。"""

    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        assert n_embd % n_head == 0, f"n_embd={n_embd} 必须能被 n_head={n_head} 整除"
        self.heads = nn.ModuleList([Head(n_embd, n_embd // n_head, block_size) for _ in range(n_head)])

    def forward(self, x):
        return torch.cat([h(x) for h in self.heads], dim=-1)  # (B, T, n_embd)


class FeedForward(nn.Module):
    """逐位置的前馈网络：每个位置各自经过同一个 Linear + ReLU。"""

    def __init__(self, n_embd):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_embd, n_embd), nn.ReLU())

    def forward(self, x):
        return self.net(x)  # (B, T, n_embd)


class Block(nn.Module):
    """一个 Transformer 块：注意力和前馈网络各自加在残差“主干”上。"""

    def __init__(self, n_embd, n_head, block_size):
        super().__init__()
        self.sa = MultiHeadAttention(n_embd, n_head, block_size)
        self.ffwd = FeedForward(n_embd)

    def forward(self, x):
        # 子层只学“在 x 上改多少”；梯度沿着加号直接流回前面的层
        x = x + self.sa(x)  # (B, T, C)
        x = x + self.ffwd(x)  # (B, T, C)
        return x


class BabyGPT(nn.Module):
    """字向量加位置向量，经过 n_layer 个 Transformer 块，再用线性层算出“下一个字”的 logits。"""

    def __init__(self, vocab_size, n_embd, n_head, n_layer, block_size):
        super().__init__()
        self.block_size = block_size
        self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
        self.position_embedding_table = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, block_size) for _ in range(n_layer)])
        self.lm_head = nn.Linear(n_embd, vocab_size)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        tok_emb = self.token_embedding_table(idx)  # (B, T, C)
        pos_emb = self.position_embedding_table(torch.arange(T, device=idx.device))  # (T, C)
        x = tok_emb + pos_emb  # (B, T, C)，位置向量对批次里的每一段广播相加
        x = self.blocks(x)  # (B, T, C)
        logits = self.lm_head(x)  # (B, T, vocab_size)
        if targets is None:
            return logits, None
        # 交叉熵：正确答案的概率越小，损失越大；把 B*T 个位置当成 B*T 道题一起算平均
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens):
        for _ in range(max_new_tokens):
            # 模型最多只看最后 block_size 个字
            logits, _ = self(idx[:, -self.block_size:])  # (B, T, vocab_size)
            probs = F.softmax(logits[:, -1, :], dim=-1)  # (B, vocab_size)
            idx_next = torch.multinomial(probs, num_samples=1)  # (B, 1)
            idx = torch.cat((idx, idx_next), dim=1)  # (B, T+1)
        return idx


@torch.no_grad()
def estimate_loss(model, splits, eval_iters, batch_size, block_size, device):
    """在每个数据集上平均 eval_iters 个批次的损失，比单个批次的损失稳定得多。"""
    model.eval()
    out = {}
    for name, data in splits.items():
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            x, y = get_batch(data, batch_size, block_size, device)
            _, loss = model(x, y)
            losses[k] = loss.item()
        out[name] = losses.mean().item()
    model.train()
    return out


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
    n = int(train_ratio * len(data))
    splits = {"train": data[:n], "val": data[n:]}
    if min(len(split) for split in splits.values()) <= block_size:
        sys.exit(f"错误：训练集或验证集不足 block_size={block_size}+1 个字，请换更长的文本或调整 train_ratio。")
    print(f"文本 {len(data):,} 个字，词表 {tokenizer.vocab_size:,} 个字")

    model = BabyGPT(tokenizer.vocab_size, n_embd, n_head, n_layer, block_size).to(device)
    print(f"参数量：{sum(p.numel() for p in model.parameters()):,}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    # 刚初始化的模型几乎是均匀乱猜，每个字的概率约 1/vocab_size，所以损失应接近 ln(vocab_size)
    losses = estimate_loss(model, splits, eval_iters, batch_size, block_size, device)
    print(f"初始损失：train {losses['train']:.4f}，val {losses['val']:.4f}；ln(vocab_size) = {math.log(tokenizer.vocab_size):.4f}")

    start = time.time()
    eval_seconds = 0.0
    for step in range(1, max_iters + 1):
        xb, yb = get_batch(splits["train"], batch_size, block_size, device)
        _, loss = model(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # 每 eval_interval 步和最后一步各评估一次；tokens/s 只算训练花的时间
        if step % eval_interval == 0 or step == max_iters:
            # GPU 上的计算是排队异步执行的：先等排好的训练步真正算完，再读时钟，tokens/s 才准
            if device == "cuda":
                torch.cuda.synchronize()
            eval_start = time.time()
            losses = estimate_loss(model, splits, eval_iters, batch_size, block_size, device)
            eval_seconds += time.time() - eval_start
            tokens_per_sec = step * batch_size * block_size / (time.time() - start - eval_seconds)
            print(f"step {step:5d} | train loss {losses['train']:.4f} | val loss {losses['val']:.4f} | {tokens_per_sec:,.0f} tokens/s")
    print(f"训练用时 {time.time() - start:.1f} 秒")

    model.eval()
    for prompt, ids in zip(prompts, prompt_ids):
        print(f"--- {prompt} ---")
        context = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
        print(tokenizer.decode(model.generate(context, max_new_tokens)[0].tolist()))
