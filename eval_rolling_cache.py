"""
eval_rolling_cache.py —— 实测：RoPE 模型用滚动的 KV 缓存逐字往下读，和每一步把最近 block_size 个字整段重算，交叉熵差多少。
同样几段验证集的文字（语料最后 1 - train_ratio 那部分），逐字打分：每个位置的交叉熵 = −ln P(真实的下一个字)。
  整段重算：预测第 t+1 个字时只看最近的 block_size 个字，位置从 0 数起，正是训练时模型见过的样子（不用缓存的采样也是这样）；
  滚动缓存：一个字一个字喂进去，缓存里只留最近 block_size 个位置，babygpt_sample_with_rope.py 生成时就是这样。
前 block_size 个位置两者完全相同；之后，多层模型缓存里较早的 key 和 value 是在它们还看得见更早的字时算的，两者不再相同。
用法：python eval_rolling_cache.py --checkpoint=babygpt.pt
笔记：notes/babygpt_sample_with_rope.md
"""
import math
import sys

import torch
from torch.nn import functional as F

from babygpt_sample_with_rope import load_checkpoint
from common import apply_overrides, hardware, pick_device, read_text

# ==================== 超参数（可用 --name=value 覆盖） ====================
checkpoint = "babygpt.pt"  # RoPE 模型的检查点（babygpt_v19_rope.py 或 babygpt_v20_resume.py 写出）
data_path = "ci.txt"  # 训练时用的语料；验证集是它的最后一部分
train_ratio = 0.9  # 和训练时一样：前 90% 是训练集，其余是验证集，取值 (0, 1)
n_chars = 1024  # 每段打分多少个字（至少 2 × block_size 才看得到窗口外），取值 [2, ∞)
n_segments = 4  # 从验证集里均匀地取几段，取值 [1, ∞)
device = "auto"  # 计算设备：auto 会依次尝试 cuda、mps、cpu，取值 {auto, cpu, cuda, mps}
# ==========================================================================


@torch.no_grad()
def recompute_losses(model, ids):
    """整段重算：第 t 个位置的交叉熵只用 ids[t-block_size+1 … t] 算，返回 (len(ids)-1,)。"""
    bs = model.block_size
    head = model(ids[None, :bs])[0][0]  # (bs, vocab)：窗口还没装满时，一次前向就是每个位置的答案
    logits = [head[:len(ids) - 1]]
    # 之后每个位置一个满窗口：unfold 取出所有长 bs 的窗口，只留每个窗口最后一个位置的 logits
    windows = ids[:-1].unfold(0, bs, 1)[1:]  # (len(ids)-bs, bs)
    for chunk in windows.split(256):
        logits.append(model(chunk)[0][:, -1])  # (chunk, vocab)
    return F.cross_entropy(torch.cat(logits), ids[1:], reduction="none")


@torch.no_grad()
def rolling_losses(model, ids):
    """滚动缓存：从头一个字一个字喂进去（位置一直往上数），返回每个位置的交叉熵 (len(ids)-1,)。"""
    model.reset_cache()
    logits = [model(ids[None, t:t + 1], use_cache=True, start_pos=t)[0][0, -1] for t in range(len(ids) - 1)]
    return F.cross_entropy(torch.stack(logits), ids[1:], reduction="none")


if __name__ == "__main__":
    apply_overrides(globals())
    device = pick_device(device)
    model, tokenizer = load_checkpoint(checkpoint, device)
    model.eval()
    if not model.rope:
        sys.exit(f"错误：{checkpoint} 用的是学到的位置向量，缓存超过窗口就作废，没有“滚动缓存”可比。请用 babygpt_v19_rope.py 或 babygpt_v20_resume.py 的检查点。")
    if n_chars < 2 * model.block_size:
        sys.exit(f"错误：n_chars={n_chars} 太短：至少要 2 × block_size = {2 * model.block_size} 个字，窗口外才有东西可比。")
    text = read_text(data_path)
    val = text[int(train_ratio * len(text)):]
    if len(val) < n_chars + 1:
        sys.exit(f"错误：验证集只有 {len(val)} 个字，不够打分 n_chars={n_chars} 个字。")
    try:
        ids = torch.tensor(tokenizer.encode(val), dtype=torch.long, device=device)
    except ValueError as e:
        sys.exit(f"错误：{e}。这份语料和检查点的词表对不上。")
    bs = model.block_size
    starts = [round(i * (len(ids) - n_chars - 1) / max(1, n_segments - 1)) for i in range(n_segments)]
    full, rolling = [], []
    for start in starts:
        segment = ids[start:start + n_chars + 1]
        full.append(recompute_losses(model, segment))
        rolling.append(rolling_losses(model, segment))
    full, rolling = torch.stack(full), torch.stack(rolling)  # (n_segments, n_chars)
    inside, outside = slice(0, bs - 1), slice(bs - 1, None)  # 预测第 2…bs 个字时窗口还没装满；之后窗口在滑动

    print("# RoPE：滚动 KV 缓存与整段重算的交叉熵\n")
    print(f"- 硬件：{hardware()}，设备 {device}")
    print(f"- 命令：`{' '.join(['python eval_rolling_cache.py', *sys.argv[1:]])}`")
    print(f"- 模型：{checkpoint}（block_size={bs}）；"
          f"验证集里均匀取 {n_segments} 段，每段 {n_chars} 个字\n")
    print("| 位置 | 字数 | 整段重算 | 滚动缓存 | 差（滚动 − 重算） |")
    print("|---|---:|---:|---:|---:|")
    for name, part in ((f"窗口内（第 2–{bs} 个字）", inside), (f"窗口外（第 {bs + 1} 个字起）", outside), ("全部", slice(None))):
        a, b = full[:, part].mean().item(), rolling[:, part].mean().item()
        print(f"| {name} | {full[:, part].numel():,} | {a:.4f} | {b:.4f} | {b - a:+.4f} |")
    gap = (rolling[:, outside] - full[:, outside]).mean().item()
    worst = (rolling[:, outside] - full[:, outside]).mean(dim=1)
    print(f"\n- 窗口外各段的差：{', '.join(f'{g:+.4f}' for g in worst.tolist())}")
    print(f"- 窗口内两者的最大差：{(rolling[:, inside] - full[:, inside]).abs().max().item():.2e}（应当只是浮点误差）")
    print(f"- 窗口外的差 {gap:+.4f}，相当于困惑度乘以 {math.exp(gap):.3f}")
