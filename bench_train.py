"""
bench_train.py —— 基准测试（不是单元测试）：v11、v12 和第四阶段的每一步在同一台机器、同一个设备上各训练固定的步数，比训练速度。
每一行在自己的子进程里跑（v16 多进程那一行用 torchrun 起几个进程）：先热身几步（分配内存、torch.compile 编译都在这里），
再计时 steps 步；整张表跑 repeats 轮、轮流交错，每行取最快的一轮。打印 tokens/s、相对 v11 的倍数、每步毫秒数、峰值内存，
以及按“≈ 6 × 矩阵参数量 + 注意力”估出的每秒浮点运算次数，和这台机器上 torch.mm 实测的矩阵乘法峰值放在一起。
训练数据是随机的字编号（词表大小与 ci.txt 相同）：速度只取决于形状，不取决于数据。CUDA 上用完整配置，CPU 上用 CPU 预设。
用法：python bench_train.py            # 结果同时写进 notes/bench_train_<设备>.md
笔记：notes/bench_train_cpu.md
"""
import contextlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from common import apply_overrides, fail, hardware, pick_device

# ==================== 超参数（可用 --name=value 覆盖） ====================
steps = 20  # 每一行计时多少个训练步，取值 [1, ∞)
warmup = 3  # 计时前先跑几步：第一步要分配内存，torch.compile 要编译，取值 [1, ∞)
repeats = 3  # 整张表跑几轮（各行轮流交错），每行取最快的一轮，取值 [1, ∞)
max_seconds = 15.0  # 单进程的一行计时超过这么多秒、且已算完 2 步，就提前停下（没有 bf16 指令的 CPU 上 bf16 一步要好几秒），取值 (0, ∞)
preset = "auto"  # auto：GPU 上用完整配置，CPU 上用各脚本的 CPU_PRESET，取值 {auto, full, cpu}
only = []  # 只跑这几行（写行名，逗号分隔，例如 v11,v13）；留空跑全部
output = ""  # 结果写到哪个文件；留空：notes/bench_train_<设备>.md
device = "auto"  # 计算设备：auto 会依次尝试 cuda、mps、cpu，取值 {auto, cpu, cuda, mps}
seed = 42  # 随机种子
worker = ""  # 内部用：子进程只跑这一行，最后打印一行 JSON
# ==========================================================================

REPO = Path(__file__).resolve().parent
VOCAB_SIZE = 6104  # ci.txt 的词表大小
# (行名, 脚本, 覆盖的超参数, 进程数)；进程数 0 表示“每块 GPU 一个，只有 CPU 时 2 个”
ROWS = [
    ("v11", "babygpt_v11_hyper_params.py", {}, 1),
    ("v12", "babygpt_v12_wandb.py", {}, 1),
    ("v13", "babygpt_v13_flash_attention.py", {}, 1),
    ("v14", "babygpt_v14_mixed_precision.py", {}, 1),
    ("v14_bf16", "babygpt_v14_mixed_precision.py", {"dtype": "bfloat16"}, 1),
    ("v15", "babygpt_v15_compile.py", {}, 1),
    ("v15_compile", "babygpt_v15_compile.py", {"compile": "True"}, 1),
    ("v16", "babygpt_v16_ddp.py", {}, 1),
    ("v16_torchrun", "babygpt_v16_ddp.py", {}, 0),
]


def sync(device):
    """GPU 上的计算是异步的：读时钟之前先等它算完。"""
    if device == "cuda":
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def matmul_peak(device, dtype, n):
    """n×n 的 torch.mm 每秒能做多少浮点运算（2n³ 次一次），取最多 5 次里最快的（累计超过 5 秒就不再多测），单位 GFLOP/s。"""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    best, total = float("inf"), 0.0
    for _ in range(5):
        sync(device)
        start = time.perf_counter()
        torch.mm(a, b)
        sync(device)
        best, total = min(best, time.perf_counter() - start), total + time.perf_counter() - start
        if total > 5:
            break
    return 2 * n**3 / best / 1e9


def cpu_instructions():
    """bf16 在 CPU 上快不快，要看它有没有这些指令；从 /proc/cpuinfo 读出有哪些、缺哪些（读不到时返回空字符串）。"""
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16")
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return ""
    have = [name for name in wanted if name in flags]
    lacks = [name for name in wanted if name not in flags]
    return f"有 {'、'.join(have) or '（都没有）'}；没有 {'、'.join(lacks) or '（都有）'}"


def load_module(script):
    """按文件导入一个教程脚本；__name__ 不是 "__main__"，所以不会训练。"""
    spec = importlib.util.spec_from_file_location(Path(script).stem, REPO / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_row(script, overrides, device, full):
    """在这个进程里把一行跑完：按脚本自己的类和函数搭好模型、精度、编译和 DDP，热身后计时，返回结果字典。"""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    module = load_module(script)
    config = {name: getattr(module, name) for name in ("batch_size", "block_size", "n_embd", "n_head", "n_layer",
                                                         "dropout", "learning_rate")}
    if not full:
        config.update({k: v for k, v in module.CPU_PRESET.items() if k in config})
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if world_size > 1:
        if device == "cuda":
            torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    torch.manual_seed(seed + rank)
    model = module.BabyGPT(VOCAB_SIZE, config["n_embd"], config["n_head"], config["n_layer"], config["block_size"],
                           config["dropout"]).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["learning_rate"])
    # 第四阶段的概念都写在脚本自己的函数里，这里直接调用它们：测的就是脚本里的那份代码
    autocast, scaler, dtype = contextlib.nullcontext(), torch.amp.GradScaler(device, enabled=False), "float32"
    if hasattr(module, "mixed_precision"):
        dtype, autocast, scaler = module.mixed_precision(device, overrides.get("dtype", module.dtype))
    train_model = DDP(model, device_ids=[torch.cuda.current_device()] if device == "cuda" else None) if world_size > 1 else model
    if hasattr(module, "compile_model"):
        with contextlib.redirect_stdout(sys.stderr):  # 它打印的“torch.compile：开/关”不进结果
            train_model = module.compile_model(train_model, overrides.get("compile", module.compile), device)
    data = torch.randint(VOCAB_SIZE, (1_000_000,))
    batch = config["batch_size"] // world_size

    def train_step():
        xb, yb = module.get_batch(data, batch, config["block_size"], device)
        with autocast:
            _, loss = train_model(xb, yb)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    sync(device)
    start = time.perf_counter()
    train_step()  # 第一步：分配内存；编译的话还要等编译
    sync(device)
    first_step = time.perf_counter() - start
    for _ in range(warmup - 1):
        train_step()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    timed = 0
    while timed < steps:
        train_step()
        timed += 1
        # 多进程时各进程必须走同样多步（否则有人会在 all_reduce 里一直等），所以只在单进程时提前停
        if world_size == 1 and timed >= 2 and time.perf_counter() - start > max_seconds:
            sync(device)
            if time.perf_counter() - start > max_seconds:
                break
    sync(device)
    seconds = time.perf_counter() - start
    if world_size > 1:
        dist.destroy_process_group()
    # 每个字的训练运算量 ≈ 6 × 参与矩阵乘法的参数量（前向 2 次、反向 4 次）+ 注意力的 12 × n_layer × n_embd × block_size；
    # 两张嵌入表只是查表，不算
    embeddings = model.token_embedding_table.weight.numel() + model.position_embedding_table.weight.numel()
    matmul_params = sum(p.numel() for p in model.parameters()) - embeddings
    flops_per_token = 6 * matmul_params + 12 * config["n_layer"] * config["n_embd"] * config["block_size"]
    peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"tokens_per_sec": timed * config["batch_size"] * config["block_size"] / seconds, "ms_per_step": 1000 * seconds / timed, "steps": timed,
            "peak_mib": peak, "first_step_s": first_step, "flops_per_token": flops_per_token, "dtype": dtype, "world_size": world_size,
            "compiled": train_model is not model and not isinstance(train_model, DDP), "config": config}


def launch(row, device, full):
    """在子进程里跑一行（多进程那一行用 torchrun），返回结果字典；失败时返回 {"error": 最后几行输出}。"""
    name, script, overrides, procs = row
    args = [f"--worker={name}", f"--device={device}", f"--steps={steps}", f"--warmup={warmup}", f"--max_seconds={max_seconds}",
            f"--preset={'full' if full else 'cpu'}", f"--seed={seed}"]
    if procs == 0:
        procs = torch.cuda.device_count() if device == "cuda" and torch.cuda.device_count() > 1 else 2
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    else:
        command = [sys.executable]
    result = subprocess.run(command + [str(REPO / "bench_train.py"), *args], capture_output=True, text=True,
                            cwd=REPO, env={**os.environ, "WANDB_MODE": "disabled"})
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        return {"error": (result.stderr.strip().splitlines() or ["（没有输出）"])[-1]}
    return json.loads(lines[-1])


def table(results, device, peaks, full):
    """把结果排成 Markdown，返回整篇文字。"""
    base = results.get("v11", {}).get("tokens_per_sec")
    config = next(r["config"] for r in results.values() if "config" in r)
    memory = "峰值显存 MiB" if device == "cuda" else "峰值内存 MiB（进程 RSS）"
    lines = [f"# 训练速度：v11、v12 与第四阶段（{device}）", "",
             f"- 硬件：{hardware()}，设备 {device}",
             *([f"- CPU 指令：{cpu_instructions()}"] if device == "cpu" and cpu_instructions() else []),
             f"- 命令：`python bench_train.py`；{'完整配置' if full else 'CPU 预设'}：n_layer={config['n_layer']}，n_head={config['n_head']}，"
             f"n_embd={config['n_embd']}，block_size={config['block_size']}，batch_size={config['batch_size']}，dropout={config['dropout']}；"
             f"随机数据，词表 {VOCAB_SIZE}；热身 {warmup} 步后计时 {steps} 步（单进程的一行超过 {max_seconds:g} 秒、已算完 2 步就提前停，"
             f"实际步数见“计时步数”一列），{repeats} 轮交错取最快",
             "- 矩阵乘法峰值（torch.mm，" + "；".join(f"{k}，{n}×{n}：{v:,.0f} GFLOP/s" for k, (n, v) in peaks.items()) + "）", "",
             f"| 行 | 精度 | 编译 | 进程 | tokens/s | 相对 v11 | 毫秒/步 | 计时步数 | 第一步 秒 | {memory} | GFLOP/s | 占 float32 峰值 |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fp32_peak = peaks["float32"][1]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | 失败：{r['error']} | | | | | | | | | | |")
            continue
        gflops = r["tokens_per_sec"] * r["flops_per_token"] / 1e9
        ratio = f"{r['tokens_per_sec'] / base:.2f}×" if base else "—"
        lines.append(f"| {name} | {r['dtype']} | {'是' if r['compiled'] else '否'} | {r['world_size']} | {r['tokens_per_sec']:,.0f} | "
                     f"{ratio} | {r['ms_per_step']:,.1f} | {r['steps']} | {r['first_step_s']:,.1f} | {r['peak_mib']:,.0f} | {gflops:,.1f} | {gflops / fp32_peak:.0%} |")
    flops = next(r["flops_per_token"] for r in results.values() if "flops_per_token" in r)
    lines += ["", f"- 每个字的训练运算量按 6 × 矩阵参数量 + 12 × n_layer × n_embd × block_size 估算：约 {flops / 1e6:.1f} MFLOP。"
              "GFLOP/s = tokens/s × 这个数；16 位精度那几行也拿 float32 的峰值来比。"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    overrides = apply_overrides(globals())
    if worker:
        sys.stdout = sys.stderr  # 子进程里别的输出都不进结果，结果只有最后那一行 JSON
        row = next(r for r in ROWS if r[0] == worker)
        result = run_row(row[1], row[2], device, preset == "full")
        if int(os.environ.get("RANK", 0)) == 0:
            print(json.dumps(result, ensure_ascii=False), file=sys.__stdout__, flush=True)
        sys.exit(0)
    device = pick_device(device)
    full = preset == "full" or (preset == "auto" and device != "cpu")
    unknown = [name for name in only if name not in [r[0] for r in ROWS]]
    if unknown:
        fail(f"--only 里有不认识的行：{'、'.join(unknown)}。可用的行：{', '.join(r[0] for r in ROWS)}")
    rows = [r for r in ROWS if not only or r[0] in only]
    if device == "cuda":
        # GPU 上 auto 已经是 bf16 加编译，单独的 bf16、compile 两行和 v14、v15 重复；只有一块 GPU 时多进程那一行也和 v16 重复
        rows = [r for r in rows if r[0] not in ("v14_bf16", "v15_compile")
                and not (r[3] == 0 and torch.cuda.device_count() < 2)]
    # CPU 上 bf16 用小一号的矩阵：没有 bf16 指令的 CPU 上 2048×2048 的 bf16 乘法一次要十几秒
    sizes = {torch.float32: 2048, torch.bfloat16: 1024} if device == "cpu" else {torch.float32: 8192, torch.bfloat16: 8192}
    peaks = {"float32": (sizes[torch.float32], matmul_peak(device, torch.float32, sizes[torch.float32]))}
    if device != "mps":
        peaks["bfloat16"] = (sizes[torch.bfloat16], matmul_peak(device, torch.bfloat16, sizes[torch.bfloat16]))
    print(f"矩阵乘法峰值：" + "，".join(f"{k} {v:,.0f} GFLOP/s" for k, (_, v) in peaks.items()))
    results = {}
    for round_ in range(1, repeats + 1):
        for row in rows:
            result = launch(row, device, full)
            best = results.get(row[0])
            if best is None or "error" in best or ("error" not in result and result["tokens_per_sec"] > best["tokens_per_sec"]):
                results[row[0]] = result
            shown = result.get("error") or f"{result['tokens_per_sec']:,.0f} tokens/s"
            print(f"第 {round_} 轮 {row[0]:>12}：{shown}", flush=True)
    text = table(results, device, peaks, full)
    print("\n" + text)
    path = Path(output) if output else REPO / "notes" / f"bench_train_{device}.md"
    path.write_text(text, encoding="utf-8")
    print(f"已写入 {path}")
