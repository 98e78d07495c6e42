"""
bench_kvcache.py —— 基准测试（不是单元测试）：KV 缓存开与关时的生成速度，v11 完整配置大小的模型，batch 1。
分两段测：一直在 block_size 窗口之内（缓存一直有效），以及生成 500 个字。超过窗口以后，学到位置向量的模型（v11–v18）
每步都要整段重新预填充；RoPE 模型（v19 起）的缓存滚动着接着用，见 babygpt_sample_with_rope.py。
另外测这台机器复制内存的速度，算出“每生成一个字至少要把全部权重读一遍”给出的速度上限。
权重默认是随机的：速度只取决于形状，不取决于权重的值；也可以用 --checkpoint 指定训练好的检查点。
用法：python bench_kvcache.py
笔记：notes/babygpt_sample_with_kvcache.md、notes/babygpt_sample_with_rope.md
"""
import time

import torch

from babygpt_sample_with_rope import BabyGPT, load_checkpoint
from common import apply_overrides, hardware, pick_device

# ==================== 超参数（可用 --name=value 覆盖） ====================
checkpoint = ""  # 留空：用 v11 完整配置的形状随机初始化两个模型（学到的位置向量、RoPE）；也可以指定一个检查点
max_new_tokens = 500  # 第二段测试生成多少个字（超过 block_size 才能看到窗口滑动的代价），取值 [1, ∞)
repeats = 3  # 每种情况测几次，取最快的一次，取值 [1, ∞)
device = "auto"  # 计算设备：auto 会依次尝试 cuda、mps、cpu，取值 {auto, cpu, cuda, mps}
seed = 42  # 随机种子
# ==========================================================================

V11_SIZE = dict(vocab_size=6104, n_embd=384, n_head=6, n_layer=6, block_size=256, dropout=0.2)


def tokens_per_sec(model, n_tokens, use_kv_cache, device):
    """从一个字的提示词生成 n_tokens 个字，返回每秒多少个字（取 repeats 次里最快的一次）。"""
    best = float("inf")
    for _ in range(repeats):
        torch.manual_seed(seed)
        prompt = torch.zeros((1, 1), dtype=torch.long, device=device)  # (1, 1)
        start = time.perf_counter()
        model.generate(prompt, n_tokens, use_kv_cache=use_kv_cache)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return n_tokens / best


def copy_bandwidth(device, n_bytes=512 * 2**20):
    """复制一个 512 MiB 的张量，返回每秒复制多少字节（取 3 次里最快的）。"""
    src = torch.ones(n_bytes // 4, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        dst.copy_(src)
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return n_bytes / best


if __name__ == "__main__":
    apply_overrides(globals())
    device = pick_device(device)
    torch.manual_seed(seed)
    if checkpoint:
        models = [load_checkpoint(checkpoint, device)[0]]
    else:
        models = [BabyGPT(**V11_SIZE).to(device), BabyGPT(**V11_SIZE, rope=True).to(device)]
    model = models[0]
    # 解码一个字要读一遍除嵌入表以外的全部权重（嵌入表每次只读一行）
    embeddings = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding))
    weight_bytes = (sum(p.numel() for p in model.parameters()) - embeddings) * 4
    bandwidth = copy_bandwidth(device)
    window = model.block_size - 1

    print("# KV 缓存：生成速度\n")
    print(f"- 硬件：{hardware()}，设备 {device}")
    print(f"- 命令：`python bench_kvcache.py`；模型：{'检查点 ' + checkpoint if checkpoint else 'v11 完整配置（随机权重）'}，"
          f"block_size={model.block_size}，batch 1，从 1 个字的提示词开始，{repeats} 次取最快\n")
    print("| 位置编码 | 生成多少字 | 不用缓存 tokens/s | 用缓存 tokens/s | 加速 |")
    print("|---|---:|---:|---:|---:|")
    for model in models:
        model.eval()
        tokens_per_sec(model, 5, True, device)  # 热身：第一次调用有一次性的开销
        for n_tokens in (window, max_new_tokens):
            off = tokens_per_sec(model, n_tokens, False, device)
            on = tokens_per_sec(model, n_tokens, True, device)
            print(f"| {'RoPE（滚动缓存）' if model.rope else '学到的位置向量'} | {n_tokens} | {off:,.1f} | {on:,.1f} | {on / off:.1f}× |")
    print(f"\n- 每生成一个字要读的权重：{weight_bytes / 2**20:.1f} MiB（float32，不含嵌入表）")
    print(f"- 这台机器复制内存的速度：{bandwidth / 2**30:.1f} GiB/s")
    print(f"- 内存带宽给出的上限：约 {bandwidth / weight_bytes:,.0f} tokens/s（每个字把权重完整读一遍）")
