"""
babygpt_sample.py —— 读 v11 训练出的检查点写宋词：温度、top-k，边生成边显示，交互模式。
新概念：采样。不再训练，而是从检查点（权重 + 配置 + 词表）重建模型；logits 先除以温度、再只留 top_k 个候选，
然后按概率抽下一个字。每生成一个字就立刻打印出来（流式输出），不用等整段写完。
用法：python babygpt_sample.py                 # 交互模式：输入开头，边生成边显示
      python babygpt_sample.py --prompt=春江   # 生成一次就退出
笔记：notes/babygpt_sample.md
"""
import os
import sys
import time

import torch
import torch.nn as nn
from torch.nn import functional as F

from common import apply_overrides, pick_device

# ==================== 超参数（可用 --name=value 覆盖） ====================
checkpoint = "babygpt.pt"  # 检查点文件，由 babygpt_v11_hyper_params.py 或 babygpt_v12_wandb.py 写出
prompt = ""  # 提示词；留空则进入交互模式
num_samples = 1  # 每个提示词生成几段，取值 [1, ∞)
max_new_tokens = 200  # 每段生成多少个字，取值 [1, ∞)
temperature = 0.8  # 温度：<1 更保守，>1 更发散，取值 (0, ∞)
top_k = 200  # 只在概率最高的 top_k 个字里抽样；大于词表时按词表大小算，取值 [1, ∞)
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


class Head(nn.Module):
    """一个因果自注意力头：每个位置只能看到它自己和它前面的位置。"""

    def __init__(self, n_embd, head_size, block_size, dropout):
        super().__init__()
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        # 下三角矩阵：第 t 行只有前 t+1 个位置是 1，用来挡住“未来”的字；
        # persistent=False：它随时能重新算出来，不必存进检查点
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)), persistent=False)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        k = self.key(x)  # (B, T, head_size)
        q = self.query(x)  # (B, T, head_size)
        # 除以 √head_size：否则点积的方差随 head_size 增大，softmax 会变得过于尖锐
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (B, T, T)
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))  # (B, T, T)
        wei = F.softmax(wei, dim=-1)  # (B, T, T)，每一行是对上文各位置的注意力权重
        wei = self.dropout(wei)  # (B, T, T)
        v = self.value(x)  # (B, T, head_size)
        return wei @ v  # (B, T, head_size)


class MultiHeadAttention(nn.Module):
    """n_head 个注意力头并行计算，输出在最后一维拼接回 n_embd 维。"""

    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        assert n_embd % n_head == 0, f"n_embd={n_embd} 必须能被 n_head={n_head} 整除"
        self.heads = nn.ModuleList([Head(n_embd, n_embd // n_head, block_size, dropout) for _ in range(n_head)])
        # 输出投影：把各头拼接的结果混合起来，再写回残差主干
        self.proj = nn.Linear(n_embd, n_embd)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        out = torch.cat([h(x) for h in self.heads], dim=-1)  # (B, T, n_embd)
        return self.dropout(self.proj(out))  # (B, T, n_embd)


class FeedForward(nn.Module):
    """逐位置的前馈网络：先放大到 4*n_embd 维做非线性变换，再投影回 n_embd 维。"""

    def __init__(self, n_embd, dropout):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.ReLU(),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(dropout),
        )

    def forward(self, x):
        return self.net(x)  # (B, T, n_embd)


class Block(nn.Module):
    """一个 Transformer 块：注意力和前馈网络各自先过 LayerNorm，再加在残差“主干”上。"""

    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        self.sa = MultiHeadAttention(n_embd, n_head, block_size, dropout)
        self.ffwd = FeedForward(n_embd, dropout)
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)

    def forward(self, x):
        # 子层只学“在 x 上改多少”；梯度沿着加号直接流回前面的层
        x = x + self.sa(self.ln1(x))  # (B, T, C)
        x = x + self.ffwd(self.ln2(x))  # (B, T, C)
        return x


class BabyGPT(nn.Module):
    """字向量加位置向量，经过 n_layer 个 Transformer 块，再用线性层算出“下一个字”的 logits。"""

    def __init__(self, vocab_size, n_embd, n_head, n_layer, block_size, dropout):
        super().__init__()
        self.block_size = block_size
        self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
        self.position_embedding_table = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, block_size, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        tok_emb = self.token_embedding_table(idx)  # (B, T, C)
        pos_emb = self.position_embedding_table(torch.arange(T, device=idx.device))  # (T, C)
        x = tok_emb + pos_emb  # (B, T, C)，位置向量对批次里的每一段广播相加
        x = self.blocks(x)  # (B, T, C)
        x = self.ln_f(x)  # (B, T, C)，最后一个块的输出没有被 ln1/ln2 处理过，先归一化再进 lm_head
        logits = self.lm_head(x)  # (B, T, vocab_size)
        if targets is None:
            return logits, None
        # 交叉熵：正确答案的概率越小，损失越大；把 B*T 个位置当成 B*T 道题一起算平均
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, on_token=None):
        """逐个生成 max_new_tokens 个字，返回 (B, T+max_new_tokens)；每生成一个字就调用一次 on_token(idx_next)。"""
        for _ in range(max_new_tokens):
            # 模型最多只看最后 block_size 个字
            logits, _ = self(idx[:, -self.block_size:])  # (B, T, vocab_size)
            # 温度：logits 除以它再做 softmax；小于 1 让分布更尖（更保守），大于 1 让分布更平（更发散）
            logits = logits[:, -1, :] / temperature  # (B, vocab_size)
            if top_k is not None:
                # 只保留分数最高的 top_k 个字，其余设为 -inf（概率为 0）
                kth_best = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, [-1]]  # (B, 1)
                logits = logits.masked_fill(logits < kth_best, float("-inf"))
            probs = F.softmax(logits, dim=-1)  # (B, vocab_size)
            idx_next = torch.multinomial(probs, num_samples=1)  # (B, 1)
            idx = torch.cat((idx, idx_next), dim=1)  # (B, T+1)
            if on_token is not None:
                on_token(idx_next)
        return idx


def split_qkv(state_dict, n_head):
    """v13 起的检查点把所有头的 query、key、value 存在一个 qkv 权重里；按行切开，还原成每个头各自的三个权重。"""
    split = {}
    for name, weight in state_dict.items():
        if name.endswith(".sa.qkv.weight"):
            # qkv 的输出依次是所有头的 query、key、value；每一段里再按头排，每个头 head_size 行
            for kind, part in zip(("query", "key", "value"), weight.chunk(3)):
                for h, rows in enumerate(part.chunk(n_head)):
                    split[name.replace("qkv.weight", f"heads.{h}.{kind}.weight")] = rows
        else:
            split[name] = weight
    return split


def load_checkpoint(path, device):
    """读检查点，按里面的配置和词表重建模型；文件有任何问题都给出中文说明并以退出码 1 结束。"""
    if not os.path.exists(path):
        sys.exit(f"错误：找不到检查点 {path}。请先运行 python babygpt_v11_hyper_params.py（或 babygpt_v12_wandb.py）训练一个。")
    try:
        # weights_only=True：只读张量、数字、字符串这类数据，拒绝执行检查点里夹带的任意 Python 对象
        ckpt = torch.load(path, map_location=device, weights_only=True)
        if "position_embedding_table.weight" not in ckpt["model"]:
            sys.exit(f"错误：{path} 是 v19 起的 RoPE 模型（没有位置向量表），这个脚本读不了；请用 python babygpt_sample_with_rope.py。")
        tokenizer = Tokenizer("".join(ckpt["chars"]))
        model = BabyGPT(**ckpt["model_args"])
        # 第四阶段（v13–v16）的检查点存的是合并的 qkv 权重，这里的模型仍是 v11 那样每个头一组：先拆开再读
        ckpt["model"] = split_qkv(ckpt["model"], ckpt["model_args"]["n_head"])
        # 旧版本的检查点里还存着因果掩码 tril；它现在不进检查点（persistent=False），读的时候跳过
        model.load_state_dict({k: v for k, v in ckpt["model"].items() if not k.endswith(".tril")})
        if tokenizer.vocab_size != ckpt["model_args"]["vocab_size"]:
            raise ValueError("词表大小和模型配置不一致")
        iteration, best_val_loss = int(ckpt["iter"]), float(ckpt["best_val_loss"])
    except Exception as e:  # 截断、损坏、不是 BabyGPT 的文件、缺少键、形状不符……原因很多，统一给出说明
        reason = (str(e).strip().splitlines() or [""])[0]
        sys.exit(f"错误：{path} 不是可用的 BabyGPT 检查点（{type(e).__name__}: {reason}）。请重新训练生成它。")
    print(f"已读取 {path}：第 {iteration} 步，验证损失 {best_val_loss:.4f}，词表 {tokenizer.vocab_size:,} 个字")
    return model.to(device), tokenizer


def print_token(tokenizer):
    """返回一个回调：把刚生成的字立刻打印出来（flush，不等换行），这就是“流式输出”。"""
    return lambda idx_next: print(tokenizer.decode(idx_next[0].tolist()), end="", flush=True)


def sample(model, tokenizer, text, device):
    """为一个提示词生成 num_samples 段，边生成边打印；提示词里有词表外的字时只报错，返回 False。"""
    try:
        ids = tokenizer.encode(text or "\n")  # 空提示词：从一个换行开始，相当于“从头写一首”
    except ValueError as e:
        print(f"错误：{e}", file=sys.stderr)
        return False
    if len(ids) > model.block_size:
        print(f"（提示词超过 block_size={model.block_size} 个字，只用最后 {model.block_size} 个字）")
    context = torch.tensor([ids[-model.block_size:]], dtype=torch.long, device=device)  # (1, T)
    for _ in range(num_samples):
        print(f"--- {text or '（空提示词）'} ---")
        print(tokenizer.decode(context[0].tolist()), end="", flush=True)
        start = time.time()
        model.generate(context, max_new_tokens, temperature, top_k, on_token=print_token(tokenizer))
        print(f"\n（{max_new_tokens} 个字，{max_new_tokens / (time.time() - start):,.1f} tokens/s）")
    return True


if __name__ == "__main__":
    apply_overrides(globals())
    device = pick_device(device)
    torch.manual_seed(seed)
    model, tokenizer = load_checkpoint(checkpoint, device)
    # 生成前必须 eval()：关闭 dropout，否则每次前向都会随机丢掉一部分激活
    model.eval()
    if prompt:
        sys.exit(0 if sample(model, tokenizer, prompt, device) else 1)
    try:
        while True:
            sample(model, tokenizer, input("请输入文字（直接回车：从头写一首；Ctrl-D 退出）："), device)
    except (EOFError, KeyboardInterrupt):
        print("\n再见。")
