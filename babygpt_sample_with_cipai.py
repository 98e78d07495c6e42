"""
babygpt_sample_with_cipai.py —— babygpt_sample_with_rope.py 加上词牌的体式：按词牌写，句数、字数、标点一个不差。
新概念：受约束的解码。cipai.py 从语料里学出词牌的体式（第几个位置写字、写哪个标点、在哪里换行），
这里把它变成每一步的掩码：不许出现的字，logits 设为 -inf。掩码在除以温度之后、top-k 之前加上，
所以 top-k 是在合格的字里挑；写完最后一句再写一个换行（空一行），这首词就结束了。
用法：python babygpt_sample_with_cipai.py                              # 交互模式：每行输入“浣溪沙”或“浣溪沙 苏轼”
      python babygpt_sample_with_cipai.py --cipai=浣溪沙 --prompt=春江   # 写一首就退出
笔记：notes/babygpt_sample_with_cipai.md
"""
import os
import sys
import time

import torch
import torch.nn as nn
from torch.nn import functional as F

from cipai import POEM_END, CipaiError, body_chars, check_prefix, describe, form_slots, get_form, load, lookup
from common import apply_overrides, pick_device, read_text

# ==================== 超参数（可用 --name=value 覆盖） ====================
checkpoint = "babygpt.pt"  # 检查点文件，由 babygpt_v11_hyper_params.py 到 babygpt_v20_resume.py 中的任何一个写出
cipai = ""  # 词牌名，例如 浣溪沙；留空则进入交互模式，每行输入“词牌”或“词牌 作者”
form_index = 0  # 用这个词牌的第几种有据可查的体式，0 是主体式（python cipai.py 词牌名 列出编号），取值 [0, ∞)
author = ""  # 标题行里的作者；留空则按 seed 从语料里写过这个词牌的词中随机挑一首，用它的作者
prompt = ""  # 第一句开头的几个字，必须合体式；可以留空
num_samples = 1  # 每个词牌写几首，取值 [1, ∞)
temperature = 0.8  # 温度：<1 更保守，>1 更发散，取值 (0, ∞)
top_k = 200  # 只在概率最高的 top_k 个字里抽样；大于词表时按词表大小算，取值 [1, ∞)
use_kv_cache = True  # 是否使用 KV 缓存；设为 False 可以比较速度
device = "auto"  # 计算设备：auto 会依次尝试 cuda、mps、cpu，取值 {auto, cpu, cuda, mps}
seed = 42  # 随机种子，让每次运行的结果都一样
data_path = "ci.txt"  # 从这份语料里学出词牌的体式（检查点里没有）；默认的 ci.txt 不存在时自动构建
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


def rope_angles(head_size, positions, base=10000.0):
    """每个位置在每个平面上转的角：(len(positions), head_size/2)。第 i 个平面每隔一个位置转 base^(-2i/head_size) 弧度。"""
    # 前面的平面转得快（看近处的字），后面的平面转得很慢（相隔几百个字角度也差不多，看远处的字）
    inv_freq = base ** (-torch.arange(0, head_size, 2, dtype=torch.float32, device=positions.device) / head_size)  # (head_size/2,)
    return torch.outer(positions.float(), inv_freq)  # (T, head_size/2)


def apply_rope(x, angles):
    """把 x 的前一半和后一半维度两两配对成平面，每个平面按 angles 旋转。x: (..., T, head_size)。"""
    x1, x2 = x.chunk(2, dim=-1)  # 各 (..., T, head_size/2)
    cos, sin = angles.cos(), angles.sin()  # (T, head_size/2)，对前面的维度广播
    # 二维旋转：(x1, x2) → (x1·cos − x2·sin, x1·sin + x2·cos)；角度是 float32，结果换回 x 的精度（autocast 下是 16 位）
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).type_as(x)  # (..., T, head_size)


class Head(nn.Module):
    """一个因果自注意力头：每个位置只能看到它自己和它前面的位置。"""

    def __init__(self, n_embd, head_size, block_size, dropout):
        super().__init__()
        self.block_size = block_size
        self.key = nn.Linear(n_embd, head_size, bias=False)
        self.query = nn.Linear(n_embd, head_size, bias=False)
        self.value = nn.Linear(n_embd, head_size, bias=False)
        # 下三角矩阵：第 t 行只有前 t+1 个位置是 1，用来挡住“未来”的字；
        # persistent=False：它随时能重新算出来，不必存进检查点
        self.register_buffer("tril", torch.tril(torch.ones(block_size, block_size)), persistent=False)
        self.dropout = nn.Dropout(dropout)
        # KV 缓存：已经算过的位置的 key 和 value（不是参数，不进检查点）
        self.cache_k = None  # (B, L, head_size)
        self.cache_v = None  # (B, L, head_size)

    def forward(self, x, use_cache=False, angles=None):
        B, T, C = x.shape
        k = self.key(x)  # (B, T, head_size)
        q = self.query(x)  # (B, T, head_size)
        v = self.value(x)  # (B, T, head_size)
        if angles is not None:
            # RoPE：按各自的位置旋转 q 和 k；缓存里存的就是转好的 key
            q, k = apply_rope(q, angles), apply_rope(k, angles)  # 各 (B, T, head_size)
        if use_cache:
            # 把这次新算的 T 个位置接在缓存后面；query 只需要新位置的
            if self.cache_k is not None:
                k = torch.cat((self.cache_k, k), dim=1)  # (B, L, head_size)
                v = torch.cat((self.cache_v, v), dim=1)  # (B, L, head_size)
            # 滚动：超过 block_size 就丢掉最老的位置，只留最近 block_size 个（只有 RoPE 模型会走到这么长）
            k, v = k[:, -self.block_size:], v[:, -self.block_size:]  # (B, L, head_size)，L ≤ block_size
            self.cache_k, self.cache_v = k, v
        L = k.shape[1]  # 缓存里的位置加上新位置；不用缓存时 L == T
        # 除以 √head_size：否则点积的方差随 head_size 增大，softmax 会变得过于尖锐
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5  # (B, T, L)
        # 新的 T 个位置是第 L-T … L-1 个，取因果掩码里对应的这几行
        wei = wei.masked_fill(self.tril[L - T:L, :L] == 0, float("-inf"))  # (B, T, L)
        wei = F.softmax(wei, dim=-1)  # (B, T, L)，每一行是对上文各位置的注意力权重
        wei = self.dropout(wei)  # (B, T, L)
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

    def forward(self, x, use_cache=False, angles=None):
        out = torch.cat([h(x, use_cache, angles) for h in self.heads], dim=-1)  # (B, T, n_embd)
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

    def forward(self, x, use_cache=False, angles=None):
        # 子层只学“在 x 上改多少”；梯度沿着加号直接流回前面的层
        x = x + self.sa(self.ln1(x), use_cache, angles)  # (B, T, C)
        x = x + self.ffwd(self.ln2(x))  # (B, T, C)
        return x


class BabyGPT(nn.Module):
    """字向量加位置向量（RoPE 模型不加，改在注意力里旋转），经过 n_layer 个 Transformer 块，再用线性层算出“下一个字”的 logits。"""

    def __init__(self, vocab_size, n_embd, n_head, n_layer, block_size, dropout, rope=False):
        super().__init__()
        self.block_size = block_size
        self.rope = rope
        self.head_size = n_embd // n_head
        self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
        if not rope:
            self.position_embedding_table = nn.Embedding(block_size, n_embd)
        # ModuleList 而不是 Sequential：前向时要把 use_cache 传给每一块（参数名不变，检查点照样能读）
        self.blocks = nn.ModuleList([Block(n_embd, n_head, block_size, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size)

    def forward(self, idx, targets=None, use_cache=False, start_pos=0):
        B, T = idx.shape
        tok_emb = self.token_embedding_table(idx)  # (B, T, C)
        # 解码时新字不在第 0 个位置，而在缓存的字之后：位置从 start_pos 开始数
        positions = torch.arange(start_pos, start_pos + T, device=idx.device)  # (T,)
        if self.rope:
            # RoPE：位置不加在输入上，而是每个头里旋转 q 和 k；start_pos 可以超过 block_size，要紧的只是相对距离
            x, angles = tok_emb, rope_angles(self.head_size, positions)  # (B, T, C), (T, head_size/2)
        else:
            x, angles = tok_emb + self.position_embedding_table(positions), None  # (B, T, C)，位置向量对批次里的每一段广播相加
        for block in self.blocks:
            x = block(x, use_cache, angles)  # (B, T, C)
        x = self.ln_f(x)  # (B, T, C)，最后一个块的输出没有被 ln1/ln2 处理过，先归一化再进 lm_head
        logits = self.lm_head(x)  # (B, T, vocab_size)
        if targets is None:
            return logits, None
        # 交叉熵：正确答案的概率越小，损失越大；把 B*T 个位置当成 B*T 道题一起算平均
        loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def reset_cache(self):
        for module in self.modules():
            if isinstance(module, Head):
                module.cache_k = module.cache_v = None

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, on_token=None, use_kv_cache=True, masks=None):
        """逐个生成 max_new_tokens 个字，返回 (B, T+max_new_tokens)；每生成一个字就调用一次 on_token(idx_next)。
        masks：(max_new_tokens, vocab_size) 的布尔张量，第 step 步只许写 masks[step] 为 True 的字；None 表示不受约束。"""
        # 每次生成都从空缓存开始；start_pos 是下一个要喂给模型的字的位置，也是缓存里已有的位置数
        self.reset_cache()
        start_pos = 0
        for step in range(max_new_tokens):
            if use_kv_cache and (self.rope or idx.shape[1] <= self.block_size):
                # 第一次喂整段提示词（预填充），之后每次只喂上一步新生成的那个字（解码）
                logits, _ = self(idx[:, start_pos:], use_cache=True, start_pos=start_pos)  # (B, T_new, vocab_size)
                start_pos = idx.shape[1]
            else:
                # 模型最多只看最后 block_size 个字；学到的位置向量超过 block_size 后每个字的位置都变了，缓存作废，整个窗口重算
                logits, _ = self(idx[:, -self.block_size:])  # (B, T, vocab_size)
            # 温度：logits 除以它再做 softmax；小于 1 让分布更尖（更保守），大于 1 让分布更平（更发散）
            logits = logits[:, -1, :] / temperature  # (B, vocab_size)
            if masks is not None:
                # 体式：这一步不许写的字 logits 设为 -inf（概率为 0）。要在 top-k 之前：top-k 才是从合格的字里挑，
                # 先 top-k 再加掩码，留下的 k 个字可能全都不合格（比如该写“。”的地方），那就一个字也抽不出来了
                logits = logits.masked_fill(~masks[step], float("-inf"))  # (B, vocab_size)
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
        sys.exit(f"错误：找不到检查点 {path}。请先运行 python babygpt_v20_resume.py（或 v11–v19 中的任何一个）训练一个。")
    try:
        # weights_only=True：只读张量、数字、字符串这类数据，拒绝执行检查点里夹带的任意 Python 对象
        ckpt = torch.load(path, map_location=device, weights_only=True)
        tokenizer = Tokenizer("".join(ckpt["chars"]))
        # v19 起的检查点没有位置向量表：那是 RoPE 模型
        model = BabyGPT(**ckpt["model_args"], rope="position_embedding_table.weight" not in ckpt["model"])
        # 第四阶段（v13 起）的检查点存的是合并的 qkv 权重，这里的模型仍是 v11 那样每个头一组：先拆开再读
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


def form_masks(form, text, tokenizer, plain_chars):
    """把体式变成每一步的掩码 (步数, vocab_size)。text 是已经写好的正文开头（提示词），从它后面接着写：
    该写字的位置只许 plain_chars 里的字（cipai.body_chars：正文里出现过的普通的字，没有标点、换行和只在标题行里的字），
    该写标点或换行的位置只许那一个字符；最后再写一个换行（空一行），这首词就结束了。"""
    check_prefix(form, text)
    steps = form_slots(form)[len(text):] + [POEM_END]
    missing = sorted({slot for slot in steps if slot is not None} - set(tokenizer.stoi))
    if missing:
        raise CipaiError(f"检查点的词表里没有“{'、'.join(map(describe, missing))}”，没法按这个体式写")
    plain = torch.tensor([ch in plain_chars for ch in tokenizer.chars])  # (vocab_size,)
    if not plain.any():
        raise CipaiError("检查点的词表里没有一个字在语料的正文里出现过，没法按体式写")
    masks = torch.zeros(len(steps), tokenizer.vocab_size, dtype=torch.bool)  # (步数, vocab_size)
    for i, slot in enumerate(steps):
        if slot is None:
            masks[i] = plain
        else:
            masks[i, tokenizer.stoi[slot]] = True
    return masks


def request(line, tokenizer):
    """“词牌”或“词牌 作者” -> (给模型的开头：标题行加提示词, 掩码)；输入不对时抛 CipaiError（一句中文）。"""
    name, _, who = line.strip().partition(" ")
    if not name:
        raise CipaiError("请输入一个词牌名，例如“浣溪沙”或“浣溪沙 苏轼”")
    form = get_form(table, name, form_index)
    if not (who.strip() or author):  # 没给作者：按 seed 随机挑一首这个词牌的词，用它的作者（写得多的人更容易被挑中）
        poems = lookup(table, name).poems
        who = poems[torch.randint(len(poems), (1,)).item()].author
    return f"{name} {who.strip() or author}\n{prompt}", form_masks(form, prompt, tokenizer, plain_chars)


def sample(model, tokenizer, line, device):
    """按一个词牌写 num_samples 首，边生成边打印；词牌、作者或提示词不对时只报错，返回 False。"""
    try:
        text, masks = request(line, tokenizer)
        ids = tokenizer.encode(text)
    except ValueError as e:  # CipaiError 也是一种 ValueError
        print(f"错误：{e}", file=sys.stderr)
        return False
    if len(ids) > model.block_size:
        print(f"（提示词超过 block_size={model.block_size} 个字，只用最后 {model.block_size} 个字）")
    context = torch.tensor([ids[-model.block_size:]], dtype=torch.long, device=device)  # (1, T)
    for _ in range(num_samples):
        print(f"--- {line.strip()} ---")
        print(tokenizer.decode(context[0].tolist()), end="", flush=True)
        start = time.time()
        model.generate(context, len(masks), temperature, top_k, on_token=print_token(tokenizer), use_kv_cache=use_kv_cache,
                       masks=masks.to(device))
        print(f"（{len(masks)} 个字，{len(masks) / (time.time() - start):,.1f} tokens/s，KV 缓存：{'开' if use_kv_cache else '关'}）")
    return True


if __name__ == "__main__":
    apply_overrides(globals())
    device = pick_device(device)
    torch.manual_seed(seed)
    model, tokenizer = load_checkpoint(checkpoint, device)
    # 生成前必须 eval()：关闭 dropout，否则每次前向都会随机丢掉一部分激活
    model.eval()
    # 体式从语料里现学（检查点里只有词表和权重）；plain_chars：正文里出现过的普通的字
    table = load(read_text(data_path))
    if not table:
        sys.exit(f"错误：{data_path} 里没有“词牌 作者”一行加正文的词，学不出体式。")
    plain_chars = body_chars(table)
    if cipai:
        sys.exit(0 if sample(model, tokenizer, cipai, device) else 2)
    try:
        while True:
            sample(model, tokenizer, input("请输入词牌（可以加作者，如“浣溪沙 苏轼”；Ctrl-D 退出）："), device)
    except (EOFError, KeyboardInterrupt):
        print("\n再见。")
