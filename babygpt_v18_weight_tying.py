"""
babygpt_v18_weight_tying.py —— 权重共享：输出层 lm_head 和输入的字向量表用同一个矩阵。
新概念：weight tying。字向量表把“第 i 个字”变成一个 n_embd 维向量；lm_head 反过来，拿最后的向量和每个字的一行点积，
给出“下一个字是第 i 个”的分数。两者都是 vocab_size × n_embd 的矩阵，共享之后意思相近的字在输入和输出两头用同一个向量，
每个字在两头收到的梯度都更新这一份；参数少了 vocab_size × n_embd 个（完整配置 15.4M 里的 2.3M，CPU 预设 2.37M 里的 0.78M）。
用法：python babygpt_v18_weight_tying.py；torchrun 的用法和 v16 一样
笔记：notes/babygpt_v18_weight_tying.md
"""
import contextlib
import importlib.util
import math
import netrc
import os
import shutil
import sys
import time
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from common import apply_overrides, fail, hyperparameters, pick_device, read_text

try:
    import wandb
except ImportError:  # 没装 wandb 也照样训练，只是什么都不记录
    wandb = None

# ==================== 超参数（可用 --name=value 覆盖） ====================
batch_size = 64  # 每一步随机抽多少段文本，取值 [1, ∞)
block_size = 256  # 每段文本有多少个字，也是模型最多能看到的上下文长度，取值 [1, ∞)
max_iters = 5000  # 训练多少步，取值 [1, ∞)
eval_interval = 200  # 每隔多少步估计一次训练集和验证集上的损失，取值 [1, ∞)
eval_iters = 100  # 估计损失时平均多少个批次，取值 [1, ∞)
learning_rate = 1e-3  # 学习率的峰值：升温结束时达到它，取值 (0, ∞)
warmup_iters = 100  # 升温：前这么多步学习率从 0 线性升到 learning_rate，取值 [0, ∞)
min_lr = 1e-4  # 余弦衰减的终点：最后一步的学习率，取值 [0, ∞)
weight_decay = 0.1  # AdamW 的权重衰减，只用在矩阵上，取值 [0, ∞)
grad_clip = 1.0  # 梯度的总范数超过它就按比例缩小；0 表示不裁剪，取值 [0, ∞)
n_embd = 384  # 每个字的向量有多少维，取值 [1, ∞)
n_head = 6  # 注意力头的个数，n_embd 必须能被它整除，取值 [1, ∞)
n_layer = 6  # 叠多少个 Transformer 块，取值 [1, ∞)
dropout = 0.2  # 训练时随机置零的比例，取值 [0, 1)
train_ratio = 0.9  # 前 90% 的文本用来训练，其余用来验证，取值 (0, 1)
max_new_tokens = 100  # 每个提示词后面生成多少个字，取值 [1, ∞)
prompts = ["春江", "往事"]  # 生成时用的提示词，命令行里用逗号分隔
data_path = "ci.txt"  # 训练文本（UTF-8）；默认的 ci.txt 不存在时会自动构建
device = "auto"  # 计算设备：auto 会依次尝试 cuda、mps、cpu，取值 {auto, cpu, cuda, mps}
seed = 42  # 随机种子，让每次运行的结果都一样
checkpoint = "babygpt.pt"  # 检查点文件：验证损失创新低时写入，采样脚本 babygpt_sample.py 从这里读
preset = "auto"  # auto：GPU 上用上面的完整配置，CPU 上换成 CPU_PRESET，取值 {auto, full, cpu}
wandb_mode = "auto"  # auto：已登录 wandb 就 online，否则 offline，取值 {auto, online, offline, disabled}
wandb_project = "babygpt"  # wandb 里的项目名
dtype = "auto"  # 训练时矩阵乘法用的精度：auto 在 GPU 上用 bfloat16（老 GPU 用 float16），CPU 上用 float32，取值 {auto, float32, bfloat16, float16}
compile = "auto"  # 是否用 torch.compile：auto 只在 CUDA 上编译，True 在任何设备上都试，取值 {auto, True, False}
ddp_timeout = 300  # 多进程训练时最多等其他进程多少秒：某个进程出了事，其余进程到点报错退出，不会永远卡住，取值 [1, ∞)
# ==========================================================================

# 完整配置在 2 核 CPU 上每步约 18 秒（约 900 tokens/s），5000 步加上评估要 30 多个小时。
# CPU 上改用这组小配置：约 12 分钟就能学会“词牌 作者”加上以“。”结尾的句子。命令行里明确给出的值仍然优先。
# v17 起：有了调度，峰值学习率提到 3e-3；步数从 2500 减到 2000，少花两成时间，val loss 仍比 v11 的 2500 步低（见 v20 的笔记）
CPU_PRESET = dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=32, dropout=0.1,
                  learning_rate=3e-3, min_lr=3e-4, max_iters=2000, eval_interval=250, eval_iters=20)


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


def get_batch(data, batch_size, block_size, device, generator=None):
    """随机取 batch_size 段长 block_size 的文本；y 是 x 向右错开一位，即每个字的“下一个字”。"""
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    # unfold 把文本看成所有长 block_size+1 的窗口（不复制数据），再按 ix 一次取出 B 个窗口
    windows = data.unfold(0, block_size + 1, 1)[ix]  # (B, T+1)
    x, y = windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)
    return x.to(device), y.to(device)


class CausalSelfAttention(nn.Module):
    """所有头的因果自注意力一次算完：一个线性层算出各头的 q、k、v，头数是张量的一维，注意力交给融合内核。"""

    def __init__(self, n_embd, n_head, dropout):
        super().__init__()
        assert n_embd % n_head == 0, f"n_embd={n_embd} 必须能被 n_head={n_head} 整除"
        self.n_head = n_head
        # 一个 n_embd → 3*n_embd 的线性层代替 3*n_head 个小线性层：输出依次是所有头的 query、key、value
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        # 输出投影：把各头拼接的结果混合起来，再写回残差主干
        self.proj = nn.Linear(n_embd, n_embd)
        self.attn_dropout = dropout  # 注意力权重上的 dropout 比例，交给融合内核去做
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)  # 各 (B, T, C)
        # 把 C 拆成 n_head 个 head_size，再把头挪到第 1 维：每个头就像批次里独立的一份，一次矩阵乘法算完所有头
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, n_head, T, head_size)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, n_head, T, head_size)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, n_head, T, head_size)
        # 和 v12 的 Head 是同一个式子：softmax(q·kᵀ/√head_size，挡住未来) 做 dropout 后乘 v；
        # 融合成一个内核，GPU 上还不必把 (T, T) 的注意力矩阵写进显存（FlashAttention）
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                             dropout_p=self.attn_dropout if self.training else 0.0)  # (B, n_head, T, head_size)
        out = out.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)，各头的输出拼接回 n_embd 维
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
        self.sa = CausalSelfAttention(n_embd, n_head, dropout)
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
        # 权重共享：lm_head 的权重就是字向量表这个张量本身（不是复制），两处的梯度加在一起更新它
        self.lm_head.weight = self.token_embedding_table.weight
        # nn.Embedding 默认按标准差 1 初始化，拿它当 lm_head，初始 logits 的标准差约 √n_embd，初始损失远高于 ln(vocab_size)。
        # 改用 GPT-2 的 0.02；位置向量也用 0.02，免得刚开始字向量被位置向量淹没
        for table in (self.token_embedding_table, self.position_embedding_table):
            nn.init.normal_(table.weight, std=0.02)

    def forward(self, idx, targets=None):
        B, T = idx.shape
        tok_emb = self.token_embedding_table(idx)  # (B, T, C)
        pos_emb = self.position_embedding_table(torch.arange(T, device=idx.device))  # (T, C)
        x = tok_emb + pos_emb  # (B, T, C)，位置向量对批次里的每一段广播相加
        x = self.blocks(x)  # (B, T, C)
        x = self.ln_f(x)  # (B, T, C)，最后一个块的输出没有被 ln1/ln2 处理过，先归一化再进 lm_head
        # autocast 下 logits 是 16 位的：换回 float32 再算交叉熵和采样概率，免得 softmax 丢精度
        logits = self.lm_head(x).float()  # (B, T, vocab_size)
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


def get_lr(step, learning_rate, min_lr, warmup_iters, max_iters):
    """第 step 步（从 1 数起）的学习率：前 warmup_iters 步线性升到 learning_rate，之后沿余弦曲线降到 min_lr。"""
    if step <= warmup_iters:
        return learning_rate * step / warmup_iters
    progress = (step - warmup_iters) / max(1, max_iters - warmup_iters)  # 从 0 走到 1
    # cos 从 1 降到 -1，coeff 从 1 平滑地降到 0：开头和结尾降得慢，中间降得快
    coeff = 0.5 * (1 + math.cos(math.pi * progress))
    return min_lr + coeff * (learning_rate - min_lr)


def make_optimizer(model, learning_rate, weight_decay):
    """AdamW，参数分两组：矩阵做权重衰减；偏置、LayerNorm 的参数和嵌入表不做。"""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        # 权重衰减每步把参数往 0 拉一点，防止少数权重长得过大；偏置和 LayerNorm 只是平移和缩放，拉向 0 没有意义，
        # 嵌入表每步只有出现过的字收到梯度，衰减却作用于每一行，罕见字的向量会被一直拉向 0
        (decay if param.dim() >= 2 and "embedding" not in name else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate)


def save_checkpoint(path, checkpoint):
    """先写临时文件再 os.replace 改名：写到一半出错或被打断，旧的检查点也完好无损。"""
    tmp = f"{path}.tmp"
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)


def start_wandb(mode, project, config):
    """开始一次 wandb 运行并返回它；没装 wandb 或初始化失败时只打印警告，返回 None，训练照常进行。"""
    if wandb is None:
        print("警告：没有安装 wandb（pip install wandb），这次训练不做记录。", file=sys.stderr)
        return None
    if mode == "auto":
        # wandb login 把密钥写进 ~/.netrc；也可以用环境变量 WANDB_API_KEY 给出。都没有就离线记录
        try:
            logged_in = bool(os.environ.get("WANDB_API_KEY")) or netrc.netrc().authenticators("api.wandb.ai") is not None
        except (OSError, netrc.NetrcParseError):
            logged_in = False
        mode = "online" if logged_in else "offline"
    try:
        run = wandb.init(project=project, config=config, mode=mode)
    except Exception as e:  # 没有密钥、网络不通、wandb 自身出错……都不该让训练停下来
        print(f"警告：wandb 初始化失败（{type(e).__name__}: {e}），这次训练不做记录。", file=sys.stderr)
        return None
    if mode == "offline":
        print(f"wandb 离线记录在 {os.path.dirname(run.dir)}；联网并 wandb login 之后可以上传：wandb sync {os.path.dirname(run.dir)}")
    return run


def mixed_precision(device, dtype):
    """按 --dtype 选好精度，返回 (精度名, autocast 上下文, GradScaler)。"""
    if dtype == "auto":
        # bf16 和 float32 的指数位一样多，不会溢出；Ampere（计算能力 8.0）起的 GPU 才有 bf16 张量核
        if device == "cuda":
            dtype = "bfloat16" if torch.cuda.get_device_capability()[0] >= 8 else "float16"
        else:
            dtype = "float32"
    if device == "cuda":
        # TF32：float32 的矩阵乘法改用张量核、尾数只留 10 位，快好几倍，对训练几乎没有影响
        torch.backends.cuda.matmul.allow_tf32 = True
    # autocast 只把矩阵乘法这类算子换成 16 位；LayerNorm、softmax、损失等对精度敏感的仍用 float32
    autocast = contextlib.nullcontext() if dtype == "float32" else torch.autocast(device, dtype=getattr(torch, dtype))
    # float16 的指数位少，很小的梯度会变成 0：GradScaler 先把损失放大再反向传播，更新前再缩回来；别的精度不需要
    scaler = torch.amp.GradScaler(device, enabled=dtype == "float16")
    return dtype, autocast, scaler


def compile_model(model, choice, device):
    """按 --compile 返回编译过的模型（它只是包上一层，真正的编译发生在第一次前向），不编译时原样返回 model。"""
    if choice == "False" or (choice == "auto" and device != "cuda"):
        print("torch.compile：关")
        return model
    # GPU 上的内核由 triton 生成，CPU 上的由 C++ 编译器生成；MPS 还不支持
    if not hasattr(torch, "compile"):
        problem = f"torch {torch.__version__} 太旧，需要 2.0 以上"
    elif device == "mps":
        problem = "MPS 上还不支持"
    elif device == "cuda" and importlib.util.find_spec("triton") is None:
        problem = "没有安装 triton（Windows 上常见）"
    elif device == "cpu" and not any(shutil.which(cc) for cc in ("g++", "clang++", "cl")):
        problem = "找不到 C++ 编译器"
    else:
        try:
            compiled = torch.compile(model)
        except RuntimeError as e:  # 例如 Python 版本比这个 torch 支持的新
            problem = str(e).strip().splitlines()[0]
        else:
            print("torch.compile：开（第一次前向时才真正编译，要等几十秒）")
            return compiled
    print(f"torch.compile 不可用（{problem}），这次不编译，照常训练。")
    return model


@torch.no_grad()
def estimate_loss(model, splits, eval_iters, batch_size, block_size, device, autocast, world_size=1):
    """在每个数据集上平均 eval_iters 个批次的损失，比单个批次的损失稳定得多。多进程时每个进程评估各自的批次，再取平均。"""
    model.eval()
    out = {}
    for name, data in splits.items():
        losses = torch.zeros(eval_iters)
        for k in range(eval_iters):
            x, y = get_batch(data, batch_size // world_size, block_size, device)
            with autocast:
                _, loss = model(x, y)
            losses[k] = loss.item()
        mean = losses.mean().to(device)
        if world_size > 1:
            # 把各进程的平均损失加起来再除以进程数（gloo 不支持直接求平均）：所有进程拿到同一个数
            dist.all_reduce(mean)
            mean /= world_size
        out[name] = mean.item()
    model.train()
    return out


if __name__ == "__main__":
    # torchrun 给每个进程设好 RANK（第几个进程）、LOCAL_RANK（本机上第几个）和 WORLD_SIZE（一共几个）；python 直接运行时没有
    rank, local_rank, world_size = (int(os.environ.get(name, default)) for name, default in
                                    (("RANK", 0), ("LOCAL_RANK", 0), ("WORLD_SIZE", 1)))
    if rank != 0:
        # 只有 0 号进程打印，同样的话不必说 N 遍；出错信息走标准错误，哪个进程出事都看得到
        sys.stdout = open(os.devnull, "w", encoding="utf-8")
    overrides = apply_overrides(globals())
    device = pick_device(device)
    if preset == "cpu" or (preset == "auto" and device == "cpu"):
        changed = {name: value for name, value in CPU_PRESET.items() if name not in overrides}
        globals().update(changed)
        print("CPU 预设（--preset=full 可跑完整配置）：" + ", ".join(f"{k}={v}" for k, v in changed.items()))
    if n_embd % n_head != 0:
        fail(f"n_embd={n_embd} 必须能被 n_head={n_head} 整除（CPU 预设把 n_embd 换成了 {CPU_PRESET['n_embd']}）。")
    if batch_size % world_size != 0:
        if rank != 0:
            sys.exit(2)  # 每个进程都查出了同一个问题，只让 0 号进程说一次
        fail(f"batch_size={batch_size} 必须能被进程数 {world_size} 整除：每个进程算其中 batch_size / {world_size} 段，"
             f"进程数也不能多于 batch_size。")
    if world_size > 1:
        if device == "cuda":
            torch.cuda.set_device(local_rank)  # 每个进程用自己的那块 GPU，之后 "cuda" 指的就是它
        # GPU 之间用 nccl 通信，CPU 进程之间用 gloo；timeout：别的进程出了事时，最多等这么久就报错退出
        dist.init_process_group("nccl" if device == "cuda" else "gloo", timeout=timedelta(seconds=ddp_timeout))
        print(f"数据并行：{world_size} 个进程，每个进程每步算 {batch_size // world_size} 段")
    dtype, autocast, scaler = mixed_precision(device, dtype)
    print(f"训练精度：{dtype}" + ("（用 GradScaler 缩放损失）" if scaler.is_enabled() else ""))
    # 记录的是 CPU 预设和命令行覆盖之后真正用到的全部超参数
    config = {name: globals()[name] for name in hyperparameters(__file__)}
    run = start_wandb(wandb_mode, wandb_project, config) if rank == 0 else None  # 只有 0 号进程记录
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

    # 模型配置和词表都要跟着权重进检查点：采样时据此重建同样的模型，不再需要 ci.txt
    model_args = dict(vocab_size=tokenizer.vocab_size, n_embd=n_embd, n_head=n_head, n_layer=n_layer,
                      block_size=block_size, dropout=dropout)
    model = BabyGPT(**model_args).to(device)
    print(f"参数量：{sum(p.numel() for p in model.parameters()):,}")
    optimizer = make_optimizer(model, learning_rate, weight_decay)
    # DDP 在反向传播时把各进程的梯度 all_reduce 成平均值；要包在编译之前（torch.compile 的文档这样建议）
    train_model = DDP(model, device_ids=[local_rank] if device == "cuda" else None) if world_size > 1 else model
    # 训练和评估调用编译过的 train_model；它和 model 共用参数，存检查点、生成仍用 model，键名里就没有 _orig_mod. 前缀
    train_model = compile_model(train_model, compile, device)
    # 各进程用同一个种子初始化，参数本来就相同（DDP 开始时还会从 0 号进程广播一次）；
    # 之后换成 seed + rank，各进程的 dropout 和评估批次就各不相同
    torch.manual_seed(seed + rank)
    # 训练批次的下标由一个各进程种子都相同的发生器来抽：大家抽到同一组 batch_size 个下标，各取自己那一份，
    # 合起来正好是单进程时的那个批次
    data_rng = torch.Generator().manual_seed(seed)
    # 第一次评估用没编译的 model：编译的几十秒若算进评估用时，下面的预计总用时会偏长很多
    # 刚初始化的模型几乎是均匀乱猜，每个字的概率约 1/vocab_size，所以损失应接近 ln(vocab_size)
    eval_start = time.time()
    losses = estimate_loss(model, splits, eval_iters, batch_size, block_size, device, autocast, world_size)
    seconds_per_eval = time.time() - eval_start
    print(f"初始损失：train {losses['train']:.4f}，val {losses['val']:.4f}；ln(vocab_size) = {math.log(tokenizer.vocab_size):.4f}")

    start = time.time()
    eval_seconds = 0.0
    best_val_loss = float("inf")
    for step in range(1, max_iters + 1):
        xb, yb = get_batch(splits["train"], batch_size, block_size, device, data_rng)  # (B, T)
        xb, yb = xb.chunk(world_size)[rank], yb.chunk(world_size)[rank]  # (B / world_size, T)
        lr = get_lr(step, learning_rate, min_lr, warmup_iters, max_iters)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with autocast:
            _, loss = train_model(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        # 不用 float16 时 scaler 什么也不做：scale 原样返回损失，step 就是 optimizer.step()
        scaler.scale(loss).backward()
        if grad_clip > 0:
            # 先把 GradScaler 放大过的梯度缩回真实大小，再量全部梯度合起来的范数；偶尔一个很陡的批次不会把参数甩出去太远
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        scaler.step(optimizer)
        scaler.update()
        # 第 1 步有一次性的开销（分配内存等），不算在内：量第 2–11 步的速度，加上每次评估的实测用时，估计总用时
        if step == 1:
            warmed_up = time.time()
        elif step == min(11, max_iters):
            seconds_per_step = (time.time() - warmed_up) / (step - 1)
            total = seconds_per_step * max_iters + seconds_per_eval * math.ceil(max_iters / eval_interval)
            print(f"每步约 {seconds_per_step:.2f} 秒，预计总用时约 {total / 60:.1f} 分钟（含评估）")
        # 每 eval_interval 步和最后一步各评估一次；tokens/s 只算训练花的时间
        if step % eval_interval == 0 or step == max_iters:
            # GPU 上的计算是排队异步执行的：先等排好的训练步真正算完，再读时钟，tokens/s 才准
            if device == "cuda":
                torch.cuda.synchronize()
            eval_start = time.time()
            losses = estimate_loss(train_model, splits, eval_iters, batch_size, block_size, device, autocast, world_size)
            eval_seconds += time.time() - eval_start
            tokens_per_sec = step * batch_size * block_size / (time.time() - start - eval_seconds)
            print(f"step {step:5d} | train loss {losses['train']:.4f} | val loss {losses['val']:.4f} | {tokens_per_sec:,.0f} tokens/s")
            if run is not None:
                run.log({"train_loss": losses["train"], "val_loss": losses["val"], "tokens_per_sec": tokens_per_sec, "lr": lr,
                         "elapsed_seconds": time.time() - start}, step=step)
            if losses["val"] < best_val_loss:
                best_val_loss = losses["val"]
                # 各进程的参数一模一样，只让 0 号进程写；存的是没包过的 model，键名里没有 module. 前缀
                if rank == 0:
                    save_checkpoint(checkpoint, {"model": model.state_dict(), "model_args": model_args,
                                                 "chars": tokenizer.chars, "iter": step, "best_val_loss": best_val_loss})
                print(f"  验证损失创新低，已保存检查点 {checkpoint}")
    print(f"训练用时 {time.time() - start:.1f} 秒")
    if world_size > 1:
        dist.destroy_process_group()
        if rank != 0:
            sys.exit(0)  # 生成样本只需 0 号进程做一次

    # 用检查点里验证损失最低的那一步生成：和采样脚本读到的是同一个模型，而不是最后一步的模型
    if best_val_loss < float("inf"):
        model.load_state_dict(torch.load(checkpoint, map_location=device, weights_only=True)["model"])
    model.eval()
    rows = []
    for prompt, ids in zip(prompts, prompt_ids):
        print(f"--- {prompt} ---")
        context = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)
        sample_text = tokenizer.decode(model.generate(context, max_new_tokens)[0].tolist())
        print(sample_text)
        rows.append([prompt, sample_text])
    if run is not None:
        run.log({"samples": wandb.Table(columns=["prompt", "sample"], data=rows)})
        run.finish()
