"""
ladder.py —— 实验阶梯：在同样的条件下把 v1 到 v11 挨个跑一遍，看每个新概念到底让验证损失降了多少。
它不复制任何模型代码，而是把真正的脚本当作子进程运行（同样的批次、上下文、步数、种子和提示词），
从它们打印的“参数量”“初始损失”“step … | val loss …”和样本里读出结果，
写成一张 Markdown 表格（notes/experiment_ladder*.md）、一张图（.png）和原始数据（.json）。
三种预算：
  cpu（默认）：每一步都用 v1–v10 的默认设置（上下文 8 个字、32 维、学习率 1e-2），一个种子；
  context：上下文 32 个字、64 维、学习率 3e-3，每一步跑 3 个种子，报告均值和范围，结果写到 *_context.*；
  gpu：更大的批次和上下文，v11 用完整配置，结果写到 *_gpu.*；
  stage4：v11 对第四阶段第二部分的 v19，各用各的 CPU 预设（模型一样大：4 层、128 维、上下文 64），步数统一 2500，
          每一步 2 个种子，结果写到 *_stage4.*；--steps=v11,v16,v17,v18,v19 把中间各步也跑上（这台 2 核 CPU 上每次运行约半小时）。
          v20 只多了断点续训，训练过程和 v19 逐位相同（tests/test_stage4_part2.py 验证），不再单独跑。
笔记：notes/ladder.md（怎样读这些表）；结果：notes/experiment_ladder.md、notes/experiment_ladder_context.md（由本脚本生成）
"""
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import datetime
from pathlib import Path

from common import apply_overrides, hardware

# ==================== 超参数（可用 --name=value 覆盖） ====================
budget = "cpu"  # cpu：v1–v10 的默认设置；context：上下文 32、64 维、3 个种子；gpu：更大的批次和上下文；stage4：第四阶段第二部分对 v11，取值 {cpu, context, gpu, stage4}
max_iters = 0  # 每一步训练多少步；0 表示用 budget 里的值，取值 [0, ∞)
eval_iters = 0  # 估计损失时平均多少个批次；0 表示用 budget 里的值，取值 [0, ∞)
n_seeds = 0  # 每一步用几个种子（seed、seed+1、……）；0 表示用 budget 里的值（context 是 3，stage4 是 2，其余是 1），取值 [0, ∞)
steps = ["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11"]  # 要跑的步骤，命令行里用逗号分隔；不写时 context 预算只跑 v1–v10，stage4 只跑 v11 和 v19
sample_steps = ["v1", "v3", "v7", "v10", "v11"]  # 这些步骤生成的文本并排放进笔记（stage4 预算不写时是 v11 和 v19）
prompt = "春江"  # 每一步生成时用的同一个提示词
max_new_tokens = 60  # 提示词后面生成多少个字，取值 [1, ∞)
data_path = "ci.txt"  # 训练文本（UTF-8）；相对路径以仓库目录为准
device = "auto"  # 计算设备：auto 会依次尝试 cuda、mps、cpu，取值 {auto, cpu, cuda, mps}
seed = 42  # 随机种子：每一步都用同一个；n_seeds 大于 1 时依次用 seed、seed+1、……
jobs = 1  # 同时运行几个子进程；2 核 CPU 上配合 --threads=1 可以用 2，取值 [1, ∞)
threads = 0  # 给每个子进程设置的 OMP_NUM_THREADS（PyTorch 在 CPU 上用几个线程）；0 表示不设置，取值 [0, ∞)
out_dir = "notes"  # .md、.png、.json 写到哪个目录；相对路径以仓库目录为准
checkpoint_dir = ""  # v11 起各步的检查点（babygpt_v11_seed42.pt 这样的名字）写到哪个目录；空表示用临时目录、跑完就删，不碰你自己的 babygpt.pt
replot = False  # True：不训练，只用 out_dir 里这个预算已有的 .json 重新写表格和图
tag = ""  # 加在输出文件名末尾：--tag=steps 写出 experiment_ladder_stage4_steps.*，同一个预算换一组设置再跑时不覆盖上一次的结果
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
    "v16": ("babygpt_v16_ddp.py", "第四阶段第一部分的终点（训练方法同 v11）"),
    "v17": ("babygpt_v17_lr_schedule.py", "学习率调度、只衰减矩阵、梯度裁剪"),
    "v18": ("babygpt_v18_weight_tying.py", "权重共享"),
    "v19": ("babygpt_v19_rope.py", "RoPE"),
    "v20": ("babygpt_v20_resume.py", "断点续训"),
}
# v11 和它之后的步骤有检查点和 CPU 预设，按预算另加参数（BUDGETS 里的 "v11"）；v12 起还有 wandb，阶梯里关掉它
WITH_PRESET = ["v11", "v16", "v17", "v18", "v19", "v20"]
# 每种预算：所有步骤共用的训练设置、只给 v11 的参数，以及（可选）默认的种子数和步骤。
# cpu 与 v1–v10 的默认值完全一样，所以这张表同时就是“v1–v10 默认设置”的实测；
# v11 再加上它的 CPU 预设，和 v10 相比只多了“模型变大”（4 层、4 头、128 维、dropout 0.1、学习率 1e-3）。
# context 让上下文长到注意力有东西可看（32 个字），主干宽到 64 维；学习率各步统一用 3e-3，
# 比 v1–v10 默认的 1e-2 保守（这个值没有调过）。每一步 3 个种子，才分得清“变好了”和“运气好”；
# 每次评估平均 200 个批次（约 10 万个字），让评估本身的起伏小于种子之间的差异。
# 批次只有 16 段、3000 步，是为了让最慢的一步在 2 核 CPU 上也不超过 5 分钟。
# gpu 给 v1–v10 更长的上下文和更大的批次，v11 则用它自己的完整配置（6 层、6 头、384 维、上下文 256）。
BUDGETS = {
    "cpu": {"shared": dict(batch_size=32, block_size=8, max_iters=5000, eval_interval=200, eval_iters=100),
            "v11": dict(preset="cpu")},
    "context": {"shared": dict(batch_size=16, block_size=32, n_embd=64, learning_rate=3e-3,
                               max_iters=3000, eval_interval=500, eval_iters=200),
                "v11": dict(preset="cpu", n_embd=128),
                "n_seeds": 3,
                "steps": ["v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10"]},
    "gpu": {"shared": dict(batch_size=64, block_size=64, max_iters=5000, eval_interval=200, eval_iters=100),
            "v11": dict(preset="full", block_size=256)},
    # stage4：模型大小、批次、上下文和步数都是 v11 的 CPU 预设；学习率、dropout 等各用各的预设（v17 起峰值学习率 3e-3，
# 而且 v17 起预设只有 2000 步，这里统一成 v11 的 2500 步）。
    # 每 500 步评估一次、每次 50 个批次（约 10 万个字）
    "stage4": {"shared": dict(max_iters=2500, eval_interval=500, eval_iters=50),
               "v11": dict(preset="cpu"),
               "n_seeds": 2,
               "steps": ["v11", "v19"],
               "sample_steps": ["v11", "v19"]},
}
CURVE_STEPS = ["v1", "v3", "v6", "v7", "v9", "v10", "v11", "v16", "v17", "v18", "v19", "v20"]  # 右图画出验证损失曲线的步骤

DEVICE_LINE = re.compile(r"^使用设备：(\w+)$", re.MULTILINE)
PARAMS_LINE = re.compile(r"^参数量：([\d,]+)$", re.MULTILINE)
INITIAL_LINE = re.compile(r"^初始损失：train (\S+)，val (\S+)；", re.MULTILINE)
STEP_LINE = re.compile(r"^step +(\d+) \| train loss (\S+) \| val loss (\S+) \| ([\d,]+) tokens/s$", re.MULTILINE)

# 图上的文字：找得到能显示中文的字体就用中文，找不到就用英文，免得显示成一个个方框
LABELS = {
    "zh": dict(final="每一步最终的损失", step="步骤", loss="损失", train="训练集 train loss", val="验证集 val loss",
               curves="训练过程中的验证损失", iteration="训练步数",
               final_seeds="每一步最终的 val loss（{n} 个种子：点是均值，竖线是最小到最大）",
               mean="val loss 均值", one_seed="单个种子", train_mean="train loss 均值",
               curves_seeds="验证损失曲线（{n} 个种子的均值，阴影是最小到最大）"),
    "en": dict(final="Final loss per step", step="step", loss="loss", train="train loss", val="val loss",
               curves="Validation loss during training", iteration="iteration",
               final_seeds="Final val loss per step ({n} seeds: dot = mean, bar = min to max)",
               mean="val loss (mean)", one_seed="one seed", train_mean="train loss (mean)",
               curves_seeds="Validation loss ({n} seeds: line = mean, band = min to max)"),
}
# 名字像中文字体的先试；写明简体中文的（SC、CN、GB）最先，无衬线体先于衬线体和等宽体
CJK_HINTS = ("cjk", "hei", "song", "kai", "ming", "han sans", "han serif", "hiragino", "pingfang", "yahei",
             "wenquanyi", "droid sans fallback", "arial unicode")
SIMPLIFIED_HINTS = (" sc", " cn", " gb", "hans", "simhei", "simsun", "yahei", "wenquanyi")


class StepFailed(Exception):
    """某一步的脚本失败了；消息里有中文说明和它标准错误的最后几行。"""


def step_failed(script, why, stderr):
    """子进程出了问题：给一句中文说明，再附上它标准错误的最后几行，不打印 ladder 自己的 traceback。"""
    tail = "\n".join(stderr.strip().splitlines()[-15:])
    return StepFailed(f"错误：{script} {why}。它的标准错误最后几行：\n{tail}")


def step_args(name, settings, run_seed, checkpoint):
    """一步要传给脚本的全部 --name=value 参数。"""
    args = {**settings, "prompts": prompt, "max_new_tokens": max_new_tokens,
            "data_path": data_path, "device": device, "seed": run_seed}
    if name in WITH_PRESET:
        args.update(BUDGETS[budget]["v11"], checkpoint=checkpoint)
    if name in WITH_PRESET[1:]:
        args["wandb_mode"] = "disabled"
    return [f"--{key}={value}" for key, value in args.items()]


def run_measured(command, env):
    """在仓库目录里运行 command，返回 (退出码, 标准输出, 标准错误, 它用掉的 CPU 时间)。
    CPU 时间（用户态 + 内核态，秒）来自 os.wait4。别的程序抢 CPU 时墙钟时间会变长，CPU 时间却基本不变，
    所以单线程（--threads=1）时它约等于这一步在空闲机器的一个核上要跑多久。没有 os.wait4 的系统（Windows）上是 None。"""
    if not hasattr(os, "wait4"):
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env)
        return result.returncode, result.stdout, result.stderr, None
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    with ThreadPoolExecutor(max_workers=2) as readers:  # 两个管道同时读，免得一个写满了卡住子进程
        out, err = readers.submit(proc.stdout.read), readers.submit(proc.stderr.read)
        out, err = out.result(), err.result()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # 已经由 wait4 收尾，告诉 Popen 不必再等
    proc.stdout.close()
    proc.stderr.close()
    return proc.returncode, out, err, round(usage.ru_utime + usage.ru_stime, 1)


def run_step(name, args, env):
    """运行一步的脚本，从它的输出里读出参数量、损失、速度、损失曲线和样本；墙钟时间由这里自己量。"""
    script = STEPS[name][0]
    start = time.perf_counter()
    returncode, out, err, cpu = run_measured([sys.executable, script, *args], env)
    wall = time.perf_counter() - start
    if returncode != 0:
        raise step_failed(script, f"运行失败（退出码 {returncode}）", err)
    used, params, initial = DEVICE_LINE.search(out), PARAMS_LINE.search(out), INITIAL_LINE.search(out)
    curve = STEP_LINE.findall(out)
    if not (used and params and initial and curve):
        raise step_failed(script, "的输出里找不到设备、参数量、初始损失或 step 行", err)
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
        "cpu_seconds": cpu,
        "curve": [[int(step), float(train), float(val)] for step, train, val, _ in curve],
        "sample": sample,
    }


def say(text):
    """从几个线程里打印一整行：一次写完，两行不会交错在一起。"""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def run_all(plan, settings, checkpoint_dir_path, single):
    """按 plan（[(步骤, 种子), …]）运行全部子进程，最多 jobs 个同时跑；返回 {(步骤, 种子): 结果}。
    任何一个失败：不再启动新的，等正在跑的结束，然后只打印那一步的中文错误。"""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)} if threads > 0 else None
    done_runs = {}

    def start(i, name, run_seed):
        """在线程池里：先打印要运行的命令，再运行它。"""
        # 每一步、每个种子各写各的文件：同时运行的几个子进程不会写到同一个文件上
        checkpoint = checkpoint_dir_path / (f"babygpt_{name}.pt" if single else f"babygpt_{name}_seed{run_seed}.pt")
        args = step_args(name, settings, run_seed, checkpoint)
        say(f"[{i}/{len(plan)}] python {STEPS[name][0]} {' '.join(args)}")
        return run_step(name, args, env)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(start, i, name, run_seed): (name, run_seed) for i, (name, run_seed) in enumerate(plan, 1)}
        try:
            for future in as_completed(futures):
                name, run_seed = futures[future]
                r = done_runs[name, run_seed] = future.result()
                say(f"    {name}（seed={run_seed}）用时 {r['wall_seconds']:.0f} 秒，val loss {r['val_loss']:.4f}")
        except StepFailed as e:
            pool.shutdown(cancel_futures=True)
            sys.exit(str(e))
    return done_runs


def summarize(name, runs):
    """把同一步几个种子的结果合成一条：均值、标准差（样本标准差）、最小、最大，以及每个种子自己的结果。"""
    vals = [r["val_loss"] for r in runs]
    first = runs[0]
    return {
        "script": first["script"],
        "concept": first["concept"],
        "device": first["device"],
        "params": first["params"],
        "seeds": [r["seed"] for r in runs],
        "val_losses": vals,
        "val_loss_mean": round(statistics.mean(vals), 4),
        "val_loss_std": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0,
        "val_loss_min": min(vals),
        "val_loss_max": max(vals),
        "train_loss_mean": round(statistics.mean(r["train_loss"] for r in runs), 4),
        "initial_val_loss_mean": round(statistics.mean(r["initial_val_loss"] for r in runs), 4),
        "tokens_per_sec_mean": round(statistics.mean(r["tokens_per_sec"] for r in runs)),
        "wall_seconds_max": max(r["wall_seconds"] for r in runs),
        "cpu_seconds_max": max((r["cpu_seconds"] or 0) for r in runs) or None,
        "runs": runs,
    }


def compare(before, after):
    """after 这一步比 before 那一步：均值变化了多少，以及变化是否超出种子之间的差异。
    “超出”的标准：两步各自几个种子的范围（最小到最大）完全不重叠。每步 3 个种子时，如果两步其实一样好，
    6 个数随机排列，两组恰好完全分开（不论哪一组在下面）的概率是 2/C(6, 3) = 1/10。"""
    change = after["val_loss_mean"] - before["val_loss_mean"]
    if after["val_loss_max"] < before["val_loss_min"]:
        verdict = "是，降低"
    elif after["val_loss_min"] > before["val_loss_max"]:
        verdict = "是，升高"
    else:
        verdict = "否（范围重叠）"
    return change, verdict


def cjk_font(text):
    """在已安装的字体里找一个能显示 text 里每个汉字的，返回它的名字；一个都没有就返回 None。
    名字像中文字体的（Noto Sans CJK SC、文泉驿、黑体、宋体……）先试；判断标准是字体里真的有这些字的字形。"""
    from matplotlib import font_manager, ft2font

    needed = {ord(c) for c in text if ord(c) >= 0x2E80}
    def preference(entry):
        name = entry.name.lower()
        return (not any(hint in name for hint in SIMPLIFIED_HINTS), not any(hint in name for hint in CJK_HINTS),
                "mono" in name, "sans" not in name and "hei" not in name, entry.weight != 400)

    entries = sorted(font_manager.fontManager.ttflist, key=preference)
    for entry in entries:
        try:
            try:
                font = ft2font.FT2Font(entry.fname, face_index=getattr(entry, "index", 0))
            except TypeError:  # 旧版 matplotlib 没有 face_index
                font = ft2font.FT2Font(entry.fname)
        except (OSError, RuntimeError, ValueError):
            continue
        glyphs = [font.get_char_index(c) for c in needed]
        # 每个字都要有字形，而且字形各不相同：matplotlib 自带的 Last Resort 字体给所有汉字画同一个方框
        if all(glyphs) and len(set(glyphs)) == len(glyphs) and "last resort" not in entry.name.lower():
            return entry.name
    return None


def plot_style():
    """选图上的语言和字体：返回 ("zh" 或 "en", matplotlib 的 rc 设置)，并说一句用了哪个。"""
    font = cjk_font("".join(LABELS["zh"].values()))
    if font is None:
        print("没找到能显示中文的字体，图上的文字改用英文（装一个中文字体，例如 fonts-noto-cjk，"
              f"再运行 python ladder.py --budget={budget} --replot 就能换成中文）。")
        return "en", {}
    print(f"图上的中文用字体 {font}。")
    return "zh", {"font.family": "sans-serif", "font.sans-serif": [font, "DejaVu Sans"], "axes.unicode_minus": False}


def save(fig, path):
    """两张图共用的收尾：加网格，排版，写成 PNG，关掉图。"""
    import matplotlib.pyplot as plt

    for ax in fig.axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot(results, path):
    """一个种子时：左图是每一步最终的 train/val loss，右图是几步的 val loss 曲线。返回图上用的语言。"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lang, rc = plot_style()
    text = LABELS[lang]
    with plt.rc_context(rc):
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
        names = list(results)
        left.plot(names, [r["train_loss"] for r in results.values()], "o--", color="gray", label=text["train"])
        left.plot(names, [r["val_loss"] for r in results.values()], "o-", color="C0", label=text["val"])
        for name, r in results.items():
            left.annotate(f"{r['val_loss']:.2f}", (name, r["val_loss"]), textcoords="offset points", xytext=(0, 7), ha="center")
        left.set(title=text["final"], xlabel=text["step"], ylabel=text["loss"])
        left.margins(y=0.15)
        left.legend()
        for name in [n for n in CURVE_STEPS if n in results]:
            curve = results[name]["curve"]
            right.plot([c[0] for c in curve], [c[2] for c in curve], ".-", label=name)
        right.set(title=text["curves"], xlabel=text["iteration"], ylabel="val loss")
        right.legend()
        save(fig, path)
    return lang


def plot_seeds(results, path):
    """几个种子时：左图是每一步最终 val loss 的均值和误差棒（最小到最大），右图是几步的 val loss 曲线（均值和范围）。返回图上用的语言。"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lang, rc = plot_style()
    text = LABELS[lang]
    n = len(next(iter(results.values()))["seeds"])
    with plt.rc_context(rc):
        fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
        names = list(results)
        x = range(len(names))
        means = [r["val_loss_mean"] for r in results.values()]
        below = [r["val_loss_mean"] - r["val_loss_min"] for r in results.values()]
        above = [r["val_loss_max"] - r["val_loss_mean"] for r in results.values()]
        left.plot(x, [r["train_loss_mean"] for r in results.values()], "o--", color="gray", label=text["train_mean"])
        left.errorbar(x, means, yerr=[below, above], fmt="o-", color="C0", capsize=5, label=text["mean"])
        for i, r in enumerate(results.values()):
            left.plot([i] * len(r["val_losses"]), r["val_losses"], "_", color="C3", markersize=10,
                      label=text["one_seed"] if i == 0 else None)
            left.annotate(f"{r['val_loss_mean']:.2f}", (i, r["val_loss_max"]), textcoords="offset points",
                          xytext=(0, 6), ha="center")
        left.set_xticks(list(x), names)
        left.set(title=text["final_seeds"].format(n=n), xlabel=text["step"], ylabel=text["loss"])
        left.margins(y=0.15)
        left.legend()
        for k, name in enumerate(n_ for n_ in CURVE_STEPS if n_ in results):
            curves = [run["curve"] for run in results[name]["runs"]]
            iters = [c[0] for c in curves[0]]
            vals = [[c[j][2] for c in curves] for j in range(len(iters))]
            right.plot(iters, [statistics.mean(v) for v in vals], ".-", color=f"C{k}", label=name)
            right.fill_between(iters, [min(v) for v in vals], [max(v) for v in vals], color=f"C{k}", alpha=0.2)
        right.set(title=text["curves_seeds"].format(n=n), xlabel=text["iteration"], ylabel="val loss")
        right.legend()
        save(fig, path)
    return lang


def sample_table(results, sample_of, heading):
    """并排的生成样本（只放 sample_steps 里的、这次跑了的步骤）。"""
    shown = [name for name in sample_steps if name in results]
    if not shown:
        return []
    lines = [heading, "| 步骤 | 生成的文本（<br> 是换行） |", "|---|---|"]
    lines += [f"| {name} | {sample_of(results[name]).replace('|', '｜').replace(chr(10), '<br>')} |" for name in shown]
    return lines


def preset_args(report):
    """设置那一行的结尾：哪些步骤另加了哪些参数（v11 起的脚本有 CPU 预设和检查点）；没有这样的步骤时是空字符串。"""
    names = [name for name in report["results"] if name in WITH_PRESET]
    v11_extra = " ".join(f"--{k}={v}" for k, v in report["v11_extra"].items())
    return f"；{'、'.join(names)} 另加 `{v11_extra}`" if names else ""


def markdown(report, png_name):
    """一个种子时的 Markdown：命令、硬件、表格、并排的样本和图。"""
    results = report["results"]
    names = list(results)
    lines = [
        f"# 实验阶梯：{names[0]} → {names[-1]}（budget={report['budget']}）\n",
        f"- 命令：`{report['command']}`",
        f"- 硬件：{report['hardware']}",
        f"- 日期：{report['date']}",
        "- 每一步的训练设置：" + ", ".join(f"{k}={v}" for k, v in report["settings"].items())
        + f"，seed={report['seed']}，提示词“{report['prompt']}”" + preset_args(report),
        "- 最终损失取最后一行 step；tokens/s 是脚本自己算的（只算训练）；用时是整个子进程的墙钟时间（含启动、评估和生成）。\n",
        "| 步骤 | 新概念 | 参数量 | 初始损失 | 最终 train loss | 最终 val loss | tokens/s | 用时 |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['concept']} | {r['params']:,} | {r['initial_val_loss']:.4f} | {r['train_loss']:.4f} "
                     f"| {r['val_loss']:.4f} | {r['tokens_per_sec']:,} | {r['wall_seconds']:.1f} 秒 |")
    lines += sample_table(results, lambda r: r["sample"],
                          f"\n## 同一个提示词“{report['prompt']}”、同一个种子生成的 {report.get('max_new_tokens', max_new_tokens)} 个字\n")
    best = min(results, key=lambda name: results[name]["val_loss"])
    lines += [f"\n![每一步的最终损失和验证损失曲线]({png_name})\n",
              f"左图：每一步最终的 train/val loss；右图：{', '.join(n for n in CURVE_STEPS if n in results)} 的 val loss 曲线。"
              f"val loss 最低的是 {best}（{results[best]['val_loss']:.4f}）。"]
    return "\n".join(lines) + "\n"


def markdown_seeds(report, png_name):
    """几个种子时的 Markdown：每一步最终 val loss 的均值、标准差、范围，和上一步比的变化是否超出种子之间的差异。"""
    results = report["results"]
    names = list(results)
    seeds = report["seeds"]
    parallel = f"同时运行 {report['jobs']} 个子进程" + (f"，每个 OMP_NUM_THREADS={report['threads']}" if report["threads"] else "")
    lines = [
        f"# 实验阶梯：{names[0]} → {names[-1]}（budget={report['budget']}，{len(seeds)} 个种子）\n",
        f"- 命令：`{report['command']}`",
        f"- 硬件：{report['hardware']}",
        f"- 日期：{report['date']}",
        "- 每一步的训练设置：" + ", ".join(f"{k}={v}" for k, v in report["settings"].items())
        + f"，种子 {', '.join(map(str, seeds))}，提示词“{report['prompt']}”"
        + preset_args(report),
        "- 最终 val loss 取每次运行最后一行 step。均值和标准差（样本标准差，除以 n−1）都是对这几个种子算的；"
        "范围是最小到最大，也就是图里误差棒的两端。",
        "- “比上一步”是这一步的均值减上一步的均值（负数表示降低）。“超出噪声？”：两步各自的范围完全不重叠才算“是”。"
        f"每步 {len(seeds)} 个种子时，如果两步其实一样好，{2 * len(seeds)} 个数随机排列，两组恰好完全分开的机会是 "
        f"2/C({2 * len(seeds)}, {len(seeds)}) = 1/{math.comb(2 * len(seeds), len(seeds)) // 2}。",
        f"- 用时是整个子进程（含启动、评估和生成）的墙钟时间和 CPU 时间，{parallel}；表里是这一步几个种子里最大的一次。"
        "同时还有别的程序在跑时墙钟时间会变长，CPU 时间基本不变；单线程时 CPU 时间约等于在空闲机器的一个核上要跑多久。"
        f"整个阶梯的墙钟时间是 {report['total_wall_seconds'] / 60:.1f} 分钟。\n",
        "| 步骤 | 新概念 | 参数量 | 各种子的最终 val loss | 均值 | 标准差 | 范围 | 比上一步 | 超出噪声？ | train loss 均值 | 墙钟 / CPU 时间 |",
        "|---|---|---:|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for i, (name, r) in enumerate(results.items()):
        change, verdict = compare(results[names[i - 1]], r) if i else (None, "—")
        lines.append(
            f"| {name} | {r['concept']} | {r['params']:,} | {' / '.join(f'{v:.4f}' for v in r['val_losses'])} "
            f"| {r['val_loss_mean']:.4f} | {r['val_loss_std']:.4f} | {r['val_loss_min']:.4f}–{r['val_loss_max']:.4f} "
            f"| {'—' if change is None else f'{change:+.4f}'} | {verdict} | {r['train_loss_mean']:.4f} "
            f"| {r['wall_seconds_max']:.0f} / {'—' if r['cpu_seconds_max'] is None else format(r['cpu_seconds_max'], '.0f')} 秒 |")
    first, last = names[0], names[-1]
    if len(names) > 1:
        drop = results[first]["val_loss_mean"] - results[last]["val_loss_mean"]
        lines.append(f"\n{last} 的均值比 {first} {'低' if drop >= 0 else '高'} {abs(drop):.4f}。")
    lines += sample_table(results, lambda r: r["runs"][0]["sample"],
                          f"\n## 同一个提示词“{report['prompt']}”、第一个种子（{seeds[0]}）生成的 {report.get('max_new_tokens', max_new_tokens)} 个字\n")
    best = min(results, key=lambda name: results[name]["val_loss_mean"])
    lines += [f"\n![每一步最终 val loss 的均值和范围，以及验证损失曲线]({png_name})\n",
              f"左图：每一步最终 val loss 的均值（点）、{len(seeds)} 个种子的范围（误差棒）和每个种子（短横线），灰色虚线是 train loss 均值；"
              f"右图：{', '.join(n for n in CURVE_STEPS if n in results)} 的 val loss 曲线，线是均值、阴影是范围。"
              f"val loss 均值最低的是 {best}（{results[best]['val_loss_mean']:.4f}）。"]
    return "\n".join(lines) + "\n"


def write_outputs(report, out, stem):
    """写 .json、.png、.md 三个文件；几个种子和一个种子的表格、图不一样。"""
    multi = len(report.get("seeds", [report["seed"]])) > 1
    (out / f"{stem}.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    (plot_seeds if multi else plot)(report["results"], out / f"{stem}.png")
    (out / f"{stem}.md").write_text((markdown_seeds if multi else markdown)(report, f"{stem}.png"), encoding="utf-8")
    print(f"已写出 {out / stem}.md、.png、.json")


if __name__ == "__main__":
    overrides = apply_overrides(globals())
    if budget not in BUDGETS:
        sys.exit(f"错误：budget 只能是 {' 或 '.join(BUDGETS)}，收到的是 {budget!r}。")
    if "steps" not in overrides and "steps" in BUDGETS[budget]:
        steps = BUDGETS[budget]["steps"]
    if "sample_steps" not in overrides and "sample_steps" in BUDGETS[budget]:
        sample_steps = BUDGETS[budget]["sample_steps"]
    unknown = [name for name in [*steps, *sample_steps] if name not in STEPS]
    if unknown or not steps:
        problem = f"不认识的步骤 {', '.join(unknown)}" if unknown else "--steps 不能为空"
        sys.exit(f"错误：{problem}。可选：{', '.join(STEPS)}")
    out = REPO / out_dir
    stem = "experiment_ladder" + ("" if budget == "cpu" else f"_{budget}") + (f"_{tag}" if tag else "")
    if replot:
        try:
            saved = json.loads((out / f"{stem}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            sys.exit(f"错误：--replot 要读 {out / stem}.json，但读不了（{e}）。先不带 --replot 运行一次。")
        write_outputs(saved, out, stem)
        sys.exit(0)

    settings = dict(BUDGETS[budget]["shared"])
    settings.update({key: value for key, value in (("max_iters", max_iters), ("eval_iters", eval_iters)) if value > 0})
    seeds = [seed + i for i in range(n_seeds or BUDGETS[budget].get("n_seeds", 1))]
    plan = [(name, run_seed) for name in steps for run_seed in seeds]

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoints = REPO / (checkpoint_dir or tmp)
        checkpoints.mkdir(parents=True, exist_ok=True)
        done_runs = run_all(plan, settings, checkpoints, single=len(seeds) == 1)
    total_wall = time.perf_counter() - start

    if len(seeds) == 1:
        results = {name: done_runs[name, seeds[0]] for name in steps}
    else:
        results = {name: summarize(name, [{"seed": s, **done_runs[name, s]} for s in seeds]) for name in steps}
    used_device = done_runs[plan[0]]["device"]
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
    }
    if len(seeds) > 1:
        report["max_new_tokens"] = max_new_tokens
        report.update(seeds=seeds, jobs=jobs, threads=threads, total_wall_seconds=round(total_wall, 1))
    report["results"] = results
    out.mkdir(parents=True, exist_ok=True)
    write_outputs(report, out, stem)
