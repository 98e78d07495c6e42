"""
babygpt_v20_resume.py —— 断点续训：训练被打断（Colab 断线、Ctrl-C、关机）后，从最近的检查点接着训练。
新概念：完整的训练状态。只存权重不够：AdamW 的两组动量、当前步数（决定学习率）、GradScaler 的缩放系数、
随机数发生器的状态（决定后面抽哪些批次、丢哪些激活）都要存。每次评估都写一次检查点，--resume=True 把它们全部读回来；
在 CPU 上，先训练 N 步、续训再 N 步，和一口气训练 2N 步得到的权重逐位相同。配置不同或是别的步骤写的检查点，一律拒绝。
用法：python babygpt_v20_resume.py --stop_at=1000   # 训练到第 1000 步存好检查点就停
      python babygpt_v20_resume.py --resume=True    # 从检查点接着训练到最后；torchrun 的用法和 v16 一样
笔记：notes/babygpt_v20_resume.md
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
checkpoint = "babygpt.pt"  # 检查点文件：每次评估都写入（续训从这里接着来），采样脚本 babygpt_sample.py 从这里读
preset = "auto"  # auto：GPU 上用上面的完整配置，CPU 上换成 CPU_PRESET，取值 {auto, full, cpu}
wandb_mode = "auto"  # auto：已登录 wandb 就 online，否则 offline，取值 {auto, online, offline, disabled}
wandb_project = "babygpt"  # wandb 里的项目名
dtype = "auto"  # 训练时矩阵乘法用的精度：auto 在 GPU 上用 bfloat16（老 GPU 用 float16），CPU 上用 float32，取值 {auto, float32, bfloat16, float16}
compile = "auto"  # 是否用 torch.compile：auto 只在 CUDA 上编译，True 在任何设备上都试，取值 {auto, True, False}
ddp_timeout = 300  # 多进程训练时最多等其他进程多少秒：某个进程出了事，其余进程到点报错退出，不会永远卡住，取值 [1, ∞)
resume = False  # True：从 checkpoint 接着训练（权重、优化器、步数、随机数状态都从那里读），配置必须和它一致
stop_at = 0  # 训练到这一步就评估、存好检查点然后停下，之后用 --resume=True 接着训练；0 表示不提前停，取值 [0, ∞)
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


def get_batch(data, batch_size, block_size, device, generator=None):
    """随机取 batch_size 段长 block_size 的文本；y 是 x 向右错开一位，即每个字的“下一个字”。"""
    ix = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    # unfold 把文本看成所有长 block_size+1 的窗口（不复制数据），再按 ix 一次取出 B 个窗口
    windows = data.unfold(0, block_size + 1, 1)[ix]  # (B, T+1)
    x, y = windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)
    return x.to(device), y.to(device)


class CausalSelfAttention(nn.Module):
    """所有头的因果自注意力一次算完：q 和 k 先按位置旋转（RoPE），再交给融合内核。"""

    def __init__(self, n_embd, n_head, block_size, dropout):
        super().__init__()
        assert n_embd % n_head == 0, f"n_embd={n_embd} 必须能被 n_head={n_head} 整除"
        assert (n_embd // n_head) % 2 == 0, f"RoPE 把维度两两配对：head_size={n_embd // n_head} 必须是偶数"
        self.n_head = n_head
        # 一个 n_embd → 3*n_embd 的线性层代替 3*n_head 个小线性层：输出依次是所有头的 query、key、value
        self.qkv = nn.Linear(n_embd, 3 * n_embd, bias=False)
        # 输出投影：把各头拼接的结果混合起来，再写回残差主干
        self.proj = nn.Linear(n_embd, n_embd)
        self.attn_dropout = dropout  # 注意力权重上的 dropout 比例，交给融合内核去做
        self.dropout = nn.Dropout(dropout)
        # 0 … block_size-1 每个位置的旋转角，算一次存起来；随时能重算，不进检查点
        self.register_buffer("angles", rope_angles(n_embd // n_head, torch.arange(block_size)), persistent=False)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=-1)  # 各 (B, T, C)
        # 把 C 拆成 n_head 个 head_size，再把头挪到第 1 维：每个头就像批次里独立的一份，一次矩阵乘法算完所有头
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, n_head, T, head_size)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, n_head, T, head_size)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, n_head, T, head_size)
        # 位置信息只在这里进入模型：q 和 k 按各自的位置旋转，v 不转（它是要取走的内容，与位置无关）
        q, k = apply_rope(q, self.angles[:T]), apply_rope(k, self.angles[:T])  # 各 (B, n_head, T, head_size)
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
        self.sa = CausalSelfAttention(n_embd, n_head, block_size, dropout)
        self.ffwd = FeedForward(n_embd, dropout)
        self.ln1 = nn.LayerNorm(n_embd)
        self.ln2 = nn.LayerNorm(n_embd)

    def forward(self, x):
        # 子层只学“在 x 上改多少”；梯度沿着加号直接流回前面的层
        x = x + self.sa(self.ln1(x))  # (B, T, C)
        x = x + self.ffwd(self.ln2(x))  # (B, T, C)
        return x


class BabyGPT(nn.Module):
    """字向量（不再加位置向量）经过 n_layer 个 Transformer 块，再用线性层算出“下一个字”的 logits。"""

    def __init__(self, vocab_size, n_embd, n_head, n_layer, block_size, dropout):
        super().__init__()
        self.block_size = block_size
        self.token_embedding_table = nn.Embedding(vocab_size, n_embd)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, block_size, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size)
        # 权重共享：lm_head 的权重就是字向量表这个张量本身（不是复制），两处的梯度加在一起更新它
        self.lm_head.weight = self.token_embedding_table.weight
        # nn.Embedding 默认按标准差 1 初始化，拿它当 lm_head，初始 logits 的标准差约 √n_embd，初始损失远高于 ln(vocab_size)。
        # 改用 GPT-2 的 0.02
        nn.init.normal_(self.token_embedding_table.weight, std=0.02)

    def forward(self, idx, targets=None):
        x = self.token_embedding_table(idx)  # (B, T, C)，位置由每层注意力里的旋转给出
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


# 续训时必须和检查点一致的超参数：它们决定模型的形状、每一步抽哪些数据和学习率是多少。评估、生成、设备、精度这些可以改
RESUME_MUST_MATCH = ("n_embd", "n_head", "n_layer", "block_size", "dropout", "batch_size", "max_iters", "learning_rate",
                     "warmup_iters", "min_lr", "weight_decay", "grad_clip", "train_ratio", "seed")


def load_for_resume(path, config, chars, device):
    """读续训用的检查点；找不到、读不出、不是本步写的或配置不同，都打印一句中文说明并以退出码 2 结束。"""
    if not os.path.exists(path):
        fail(f"--resume=True 但找不到检查点 {path}：先不加 --resume 训练（可以用 --stop_at 提前停下），或用 --checkpoint= 指定文件。")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:  # 截断、损坏、不是检查点……
        fail(f"{path} 读不出来（{type(e).__name__}），可能写到一半就断了或已经损坏，没法续训。")
    if not isinstance(ckpt, dict) or not {"optimizer", "config", "rng", "model"} <= ckpt.keys():
        # v11–v18 的检查点用学到的位置向量，v19 的没有优化器状态：都只能拿去采样，不能续训
        learned = isinstance(ckpt, dict) and "position_embedding_table.weight" in ckpt.get("model", {})
        fail(f"{path} 不是 babygpt_v20_resume.py 写的检查点（没有优化器和随机数状态"
             f"{'，而且用的是学到的位置向量，不是 RoPE' if learned else ''}），没法续训；去掉 --resume 从头训练。")
    different = [f"{name}={ckpt['config'].get(name)}（现在是 {config[name]}）" for name in RESUME_MUST_MATCH
                 if ckpt["config"].get(name) != config[name]]
    if ckpt["chars"] != chars:
        different.append("词表（训练文本不同）")
    if different:
        fail(f"{path} 是用另一种配置训练的，没法接着训练：{'，'.join(different)}。改回这些值，或去掉 --resume 从头训练。")
    return ckpt


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
    if (n_embd // n_head) % 2 != 0:
        fail(f"RoPE 把每个头的维度两两配对旋转：head_size = n_embd / n_head = {n_embd // n_head} 必须是偶数。")
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
    start_step, best_val_loss = 1, float("inf")
    if resume:
        state = load_for_resume(checkpoint, config, tokenizer.chars, device)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        start_step, best_val_loss = state["iter"] + 1, state["best_val_loss"]
        print(f"从 {checkpoint} 的第 {state['iter']} 步接着训练（学习率、优化器的动量和随机数状态都接上）")
    # 第一次评估用没编译的 model：编译的几十秒若算进评估用时，下面的预计总用时会偏长很多
    # 刚初始化的模型几乎是均匀乱猜，每个字的概率约 1/vocab_size，所以损失应接近 ln(vocab_size)
    eval_start = time.time()
    losses = estimate_loss(model, splits, eval_iters, batch_size, block_size, device, autocast, world_size)
    seconds_per_eval = time.time() - eval_start
    print(f"初始损失：train {losses['train']:.4f}，val {losses['val']:.4f}；ln(vocab_size) = {math.log(tokenizer.vocab_size):.4f}")
    if resume:
        # 上面的评估也用了随机数：评估之后再把随机数状态恢复成存检查点那一刻的，后面抽的批次和 dropout 才和没中断时一样
        data_rng.set_state(state["rng"]["data"].cpu())
        if world_size == 1:
            torch.set_rng_state(state["rng"]["torch"].cpu())
        else:
            # 检查点只存了 0 号进程的随机数状态：多进程续训时各进程重新播种，dropout 仍各不相同，但不再和没中断时逐位相同
            torch.manual_seed(seed + rank + start_step)
        if device == "cuda" and state["rng"]["cuda"] is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"].cpu())

    start = time.time()
    eval_seconds = 0.0
    for step in range(start_step, max_iters + 1):
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
        # 第 1 步有一次性的开销（分配内存等），不算在内：量之后 10 步的速度，加上每次评估的实测用时，估计（剩下的）总用时
        if step == start_step:
            warmed_up = time.time()
        elif step == min(start_step + 10, max_iters):
            seconds_per_step = (time.time() - warmed_up) / (step - start_step)
            remaining = max_iters - start_step + 1
            total = seconds_per_step * remaining + seconds_per_eval * math.ceil(remaining / eval_interval)
            print(f"每步约 {seconds_per_step:.2f} 秒，预计总用时约 {total / 60:.1f} 分钟（含评估）")
        # 每 eval_interval 步和最后一步各评估一次；tokens/s 只算训练花的时间
        if step % eval_interval == 0 or step == max_iters or step == stop_at:
            # GPU 上的计算是排队异步执行的：先等排好的训练步真正算完，再读时钟，tokens/s 才准
            if device == "cuda":
                torch.cuda.synchronize()
            eval_start = time.time()
            losses = estimate_loss(train_model, splits, eval_iters, batch_size, block_size, device, autocast, world_size)
            eval_seconds += time.time() - eval_start
            tokens_per_sec = (step - start_step + 1) * batch_size * block_size / (time.time() - start - eval_seconds)
            print(f"step {step:5d} | train loss {losses['train']:.4f} | val loss {losses['val']:.4f} | {tokens_per_sec:,.0f} tokens/s")
            if run is not None:
                run.log({"train_loss": losses["train"], "val_loss": losses["val"], "tokens_per_sec": tokens_per_sec, "lr": lr,
                         "elapsed_seconds": time.time() - start}, step=step)
            best_val_loss = min(best_val_loss, losses["val"])
            # 续训要从最近的一步接着来，所以每次评估都写，不再只在验证损失创新低时写；
            # 各进程的参数一模一样，只让 0 号进程写；存的是没包过的 model，键名里没有 module. 前缀
            if rank == 0:
                save_checkpoint(checkpoint, {"model": model.state_dict(), "model_args": model_args,
                                             "chars": tokenizer.chars, "iter": step, "best_val_loss": best_val_loss,
                                             # 以下是续训要用的：优化器的动量、GradScaler、全部超参数、此刻各随机数发生器的状态
                                             "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "config": config,
                                             "rng": {"torch": torch.get_rng_state(), "data": data_rng.get_state(),
                                                     "cuda": torch.cuda.get_rng_state() if device == "cuda" else None}})
            print(f"  已保存检查点 {checkpoint}")
            if step == stop_at:
                print(f"第 {step} 步按 --stop_at 停下；接着训练：加上 --resume=True 再运行一次（其他超参数不变）")
                break
    print(f"训练用时 {time.time() - start:.1f} 秒")
    if world_size > 1:
        dist.destroy_process_group()
        if rank != 0:
            sys.exit(0)  # 生成样本只需 0 号进程做一次

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
