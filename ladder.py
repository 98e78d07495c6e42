"""
ladder.py —— 实验阶梯：在同样的条件下把 v1 到 v11 挨个跑一遍，看每个新概念到底让验证损失降了多少。
它不复制任何模型代码，而是把真正的脚本当作子进程运行（同样的批次、上下文、步数、种子和提示词），
从它们打印的“参数量”“初始损失”“step … | val loss …”和样本里读出结果，
写成一张 Markdown 表格（notes/experiment_ladder.md）、一张图（.png）和原始数据（.json）。
budget=cpu 时每一步都用 v1–v10 的默认设置，2 核 CPU 上实测约 18 分钟；budget=gpu 用更大的批次和上下文，结果写到 *_gpu.* 文件。
笔记：notes/ladder.md（怎样读这张表）；结果：notes/experiment_ladder.md（由本脚本生成）
"""
import json
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from common import apply_overrides, hardware

# ==================== 超参数（可用 --name=value 覆盖） ====================
budget = "cpu"  # cpu：每一步都用 v1–v10 的默认设置；gpu：更大的批次和上下文，v11 用完整配置，取值 {cpu, gpu}
max_iters = 0  # 每一步训练多少步；0 表示用 budget 里的值，取值 [0, ∞)
eval_iters = 0  # 估计损失时平均多少个批次；0 表示用 budget 里的值，取值 [0, ∞)
steps = ["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11"]  # 要跑的步骤，命令行里用逗号分隔
sample_steps = ["v1", "v3", "v7", "v10", "v11"]  # 这些步骤生成的文本并排放进笔记
prompt = "春江"  # 每一步生成时用的同一个提示词
max_new_tokens = 60  # 提示词后面生成多少个字，取值 [1, ∞)
data_path = "ci.txt"  # 训练文本（UTF-8）；相对路径以仓库目录为准
device = "auto"  # 计算设备：auto 会依次尝试 cuda、mps、cpu，取值 {auto, cpu, cuda, mps}
seed = 42  # 随机种子：每一步都用同一个
out_dir = "notes"  # .md、.png、.json 写到哪个目录；相对路径以仓库目录为准
checkpoint_dir = ""  # v11 的检查点写到哪个目录；空表示用临时目录、跑完就删，不碰你自己的 babygpt.pt
# ==========================================================================

REPO = Path(__file__).resolve().parent
# 短名字 -> (脚本, 这一步引入的新概念)
STEPS = {
    "v1": ("babygpt_v1.py", "神经 bigram：Embedding + Linear"),
    "v2": ("babygpt_v2_position.py", "位置嵌入"),
    "v3": ("babygpt_v3_self_attention.py", "单头自注意力"),
    "v4": ("babygpt_v4_multihead_attention.py", "多头注意力"),
    "v5": ("babygpt_v5_feedforward.py", "前馈网络"),
    "v6": ("babygpt_v6_block.py", "叠 3 个 Transformer 块（无残差）"),
    "v7": ("babygpt_v7_residual_connection.py", "残差连接"),
    "v8": ("babygpt_v8_projection.py", "投影"),
    "v9": ("babygpt_v9_layer_norm.py", "LayerNorm"),
    "v10": ("babygpt_v10_dropout.py", "Dropout"),
    "v11": ("babygpt_v11_hyper_params.py", "放大超参数"),
}
# 每种预算：所有步骤共用的训练设置，以及只给 v11 的参数。
# cpu 与 v1–v10 的默认值完全一样，所以这张表同时就是“v1–v10 默认设置”的实测；
# v11 再加上它的 CPU 预设，和 v10 相比只多了“模型变大”（4 层、4 头、128 维、dropout 0.1、学习率 1e-3）。
# gpu 给 v1–v10 更长的上下文和更大的批次，v11 则用它自己的完整配置（6 层、6 头、384 维、上下文 256）。
BUDGETS = {
    "cpu": {"shared": dict(batch_size=32, block_size=8, max_iters=5000, eval_interval=200, eval_iters=100),
            "v11": dict(preset="cpu")},
    "gpu": {"shared": dict(batch_size=64, block_size=64, max_iters=5000, eval_interval=200, eval_iters=100),
            "v11": dict(preset="full", block_size=256)},
}
CURVE_STEPS = ["v1", "v3", "v6", "v7", "v9", "v10", "v11"]  # 右图画出验证损失曲线的步骤

DEVICE_LINE = re.compile(r"^使用设备：(\w+)$", re.MULTILINE)
PARAMS_LINE = re.compile(r"^参数量：([\d,]+)$", re.MULTILINE)
INITIAL_LINE = re.compile(r"^初始损失：train (\S+)，val (\S+)；", re.MULTILINE)
STEP_LINE = re.compile(r"^step +(\d+) \| train loss (\S+) \| val loss (\S+) \| ([\d,]+) tokens/s$", re.MULTILINE)


def fail(script, why, stderr):
    """子进程出了问题：给一句中文说明，再附上它标准错误的最后几行，不打印 ladder 自己的 traceback。"""
    tail = "\n".join(stderr.strip().splitlines()[-15:])
    sys.exit(f"错误：{script} {why}。它的标准错误最后几行：\n{tail}")


def step_args(name, settings, checkpoint):
    """一步要传给脚本的全部 --name=value 参数。"""
    args = {**settings, "prompts": prompt, "max_new_tokens": max_new_tokens,
            "data_path": data_path, "device": device, "seed": seed}
    if name == "v11":
        args.update(BUDGETS[budget]["v11"], checkpoint=checkpoint)
    return [f"--{key}={value}" for key, value in args.items()]


def run_step(name, args):
    """运行一步的脚本，从它的输出里读出参数量、损失、速度、损失曲线和样本；墙钟时间由这里自己量。"""
    script = STEPS[name][0]
    start = time.perf_counter()
    result = subprocess.run([sys.executable, script, *args], cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        fail(script, f"运行失败（退出码 {result.returncode}）", result.stderr)
    out = result.stdout
    used, params, initial = DEVICE_LINE.search(out), PARAMS_LINE.search(out), INITIAL_LINE.search(out)
    curve = STEP_LINE.findall(out)
    if not (used and params and initial and curve):
        fail(script, "的输出里找不到设备、参数量、初始损失或 step 行", result.stderr)
    # 样本是 “--- 提示词 ---” 那一行之后的文字，直到下一个样本或输出结束
    sample = out.partition(f"--- {prompt} ---\n")[2].split("\n--- ")[0].rstrip("\n")
    return {
        "script": script,
        "concept": STEPS[name][1],
        "device": used.group(1),
        "params": int(params.group(1).replace(",", "")),
        "initial_train_loss": float(initial.group(1)),
        "initial_val_loss": float(initial.group(2)),
        "train_loss": float(curve[-1][1]),
        "val_loss": float(curve[-1][2]),
        "tokens_per_sec": int(curve[-1][3].replace(",", "")),
        "wall_seconds": round(wall, 1),
        "curve": [[int(step), float(train), float(val)] for step, train, val, _ in curve],
        "sample": sample,
    }


def plot(results, path):
    """左：每一步最终的 train/val loss；右：几步的 val loss 随训练步数的变化。标签全用英文，免得缺中文字体时显示成方框。"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    names = list(results)
    left.plot(names, [r["train_loss"] for r in results.values()], "o--", color="gray", label="train loss")
    left.plot(names, [r["val_loss"] for r in results.values()], "o-", color="C0", label="val loss")
    for name, r in results.items():
        left.annotate(f"{r['val_loss']:.2f}", (name, r["val_loss"]), textcoords="offset points", xytext=(0, 7), ha="center")
    left.set(title="Final loss per step", xlabel="step", ylabel="loss")
    left.margins(y=0.15)
    left.legend()
    for name in [n for n in CURVE_STEPS if n in results]:
        curve = results[name]["curve"]
        right.plot([c[0] for c in curve], [c[2] for c in curve], ".-", label=name)
    right.set(title="Validation loss during training", xlabel="iteration", ylabel="val loss")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(report, png_name):
    """把结果写成笔记里引用的 Markdown：命令、硬件、表格、并排的样本和图。"""
    results = report["results"]
    v11_extra = " ".join(f"--{k}={v}" for k, v in report["v11_extra"].items())
    lines = [
        f"# 实验阶梯：v1 → v11（budget={report['budget']}）\n",
        f"- 命令：`{report['command']}`",
        f"- 硬件：{report['hardware']}",
        f"- 日期：{report['date']}",
        "- 每一步的训练设置：" + ", ".join(f"{k}={v}" for k, v in report["settings"].items())
        + f"，seed={report['seed']}，提示词“{report['prompt']}”；v11 另加 `{v11_extra}`",
        "- 最终损失取最后一行 step；tokens/s 是脚本自己算的（只算训练）；用时是整个子进程的墙钟时间（含启动、评估和生成）。\n",
        "| 步骤 | 新概念 | 参数量 | 初始损失 | 最终 train loss | 最终 val loss | tokens/s | 用时 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['concept']} | {r['params']:,} | {r['initial_val_loss']:.4f} | {r['train_loss']:.4f} "
                     f"| {r['val_loss']:.4f} | {r['tokens_per_sec']:,} | {r['wall_seconds']:.1f} 秒 |")
    shown = [name for name in sample_steps if name in results]
    if shown:
        lines += [f"\n## 同一个提示词“{prompt}”、同一个种子生成的 {max_new_tokens} 个字\n",
                  "| 步骤 | 生成的文本（<br> 是换行） |", "|---|---|"]
        lines += [f"| {name} | {results[name]['sample'].replace('|', '｜').replace(chr(10), '<br>')} |" for name in shown]
    best = min(results, key=lambda name: results[name]["val_loss"])
    lines += [f"\n![每一步的最终损失和验证损失曲线]({png_name})\n",
              f"左图：每一步最终的 train/val loss；右图：{', '.join(n for n in CURVE_STEPS if n in results)} 的 val loss 曲线。"
              f"val loss 最低的是 {best}（{results[best]['val_loss']:.4f}）。"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    apply_overrides(globals())
    if budget not in BUDGETS:
        sys.exit(f"错误：budget 只能是 {' 或 '.join(BUDGETS)}，收到的是 {budget!r}。")
    unknown = [name for name in [*steps, *sample_steps] if name not in STEPS]
    if unknown or not steps:
        problem = f"不认识的步骤 {', '.join(unknown)}" if unknown else "--steps 不能为空"
        sys.exit(f"错误：{problem}。可选：{', '.join(STEPS)}")
    settings = dict(BUDGETS[budget]["shared"])
    settings.update({key: value for key, value in (("max_iters", max_iters), ("eval_iters", eval_iters)) if value > 0})

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = REPO / (checkpoint_dir or tmp) / "babygpt.pt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        for i, name in enumerate(steps, 1):
            args = step_args(name, settings, checkpoint)
            print(f"[{i}/{len(steps)}] python {STEPS[name][0]} {' '.join(args)}", flush=True)
            r = results[name] = run_step(name, args)
            print(f"    用时 {r['wall_seconds']:.0f} 秒，val loss {r['val_loss']:.4f}", flush=True)

    used_device = results[steps[0]]["device"]
    if used_device == "cuda":
        import torch

        used_device += f"（{torch.cuda.get_device_name(0)}）"
    report = {
        "command": " ".join(["python ladder.py", *sys.argv[1:]]),
        "hardware": f"{hardware()}，设备 {used_device}",
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "budget": budget,
        "settings": settings,
        "v11_extra": BUDGETS[budget]["v11"],
        "prompt": prompt,
        "seed": seed,
        "results": results,
    }
    out = REPO / out_dir
    out.mkdir(parents=True, exist_ok=True)
    stem = "experiment_ladder" + ("" if budget == "cpu" else f"_{budget}")
    plot(results, out / f"{stem}.png")
    (out / f"{stem}.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    (out / f"{stem}.md").write_text(markdown(report, f"{stem}.png"), encoding="utf-8")
    print(f"已写出 {out / stem}.md、.png、.json")
